//! The kernel configuration fragment: `CONFIG_NAME=value` lines applied on top of
//! `tinyconfig`, and the check that `olddefconfig` kept every one of them.

use anyhow::{Result, bail};

/// One `CONFIG_NAME=value` line of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The option, with its `CONFIG_` prefix.
    pub name: String,
    /// The value as written (`y`, a number, a quoted string).
    pub value: String,
}

/// Parses a fragment: blank lines and `#` comments are skipped; every other line must be
/// `CONFIG_NAME=value`, each option at most once.
pub fn parse(text: &str) -> Result<Vec<Setting>> {
    let mut settings: Vec<Setting> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            bail!("line {}: `{line}` is not CONFIG_NAME=value", n + 1);
        };
        let valid_name = name.strip_prefix("CONFIG_").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        if !valid_name || value.is_empty() {
            bail!("line {}: `{line}` is not CONFIG_NAME=value", n + 1);
        }
        if settings.iter().any(|s| s.name == name) {
            bail!("line {}: {name} is set twice", n + 1);
        }
        settings.push(Setting {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    if settings.is_empty() {
        bail!("the fragment sets no options");
    }
    Ok(settings)
}

/// `config` (a `.config` file's text) with `settings` applied: each option's old line
/// (`CONFIG_X=...` or `# CONFIG_X is not set`) removed and the new lines appended, which
/// is what `olddefconfig` then resolves.
pub fn apply(config: &str, settings: &[Setting]) -> String {
    let mut out: String = config
        .lines()
        .filter(|line| !settings.iter().any(|s| mentions(line, &s.name)))
        .flat_map(|line| [line, "\n"])
        .collect();
    for s in settings {
        out.push_str(&format!("{}={}\n", s.name, s.value));
    }
    out
}

/// Whether a `.config` line sets or unsets `name`.
fn mentions(line: &str, name: &str) -> bool {
    line.strip_prefix(name)
        .is_some_and(|rest| rest.starts_with('='))
        || line == format!("# {name} is not set")
}

/// The settings of `settings` that `config` (the resolved `.config`) does not have as
/// written, each with what `config` says instead.
pub fn missing(config: &str, settings: &[Setting]) -> Vec<String> {
    settings
        .iter()
        .filter_map(|s| {
            let want = format!("{}={}", s.name, s.value);
            if config.lines().any(|line| line == want) {
                return None;
            }
            let got = config
                .lines()
                .find(|line| mentions(line, &s.name))
                .unwrap_or("absent (its dependencies are not met)");
            Some(format!("{want} (.config: {got})"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_and_skips_comments() {
        let s = parse("# c\n\nCONFIG_VFIO=y\n  CONFIG_NR_CPUS=8\n").unwrap();
        assert_eq!(
            s,
            [
                Setting {
                    name: "CONFIG_VFIO".into(),
                    value: "y".into()
                },
                Setting {
                    name: "CONFIG_NR_CPUS".into(),
                    value: "8".into()
                }
            ]
        );
    }

    #[test]
    fn rejects_malformed_and_repeated_lines() {
        for bad in [
            "VFIO=y",
            "CONFIG_VFIO",
            "CONFIG_=y",
            "CONFIG_vfio=y",
            "CONFIG_VFIO=",
            "CONFIG_VFIO=y\nCONFIG_VFIO=m",
            "# only a comment",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn apply_replaces_old_lines_of_the_same_options_only() {
        let settings = parse("CONFIG_VFIO=y\nCONFIG_NR_CPUS=8").unwrap();
        let config = "CONFIG_NR_CPUS=2\n# CONFIG_VFIO is not set\n# CONFIG_VFIO_PCI is not set\nCONFIG_NR_CPUS_RANGE_END=8\n";
        assert_eq!(
            apply(config, &settings),
            "# CONFIG_VFIO_PCI is not set\nCONFIG_NR_CPUS_RANGE_END=8\nCONFIG_VFIO=y\nCONFIG_NR_CPUS=8\n"
        );
    }

    #[test]
    fn missing_names_each_setting_the_config_lost() {
        let settings =
            parse("CONFIG_VFIO=y\nCONFIG_NR_CPUS=8\nCONFIG_PVH=y\nCONFIG_SMP=y").unwrap();
        let config = "CONFIG_VFIO=y\nCONFIG_NR_CPUS=2\nCONFIG_SMP=y\n";
        assert_eq!(
            missing(config, &settings),
            [
                "CONFIG_NR_CPUS=8 (.config: CONFIG_NR_CPUS=2)",
                "CONFIG_PVH=y (.config: absent (its dependencies are not met))",
            ]
        );
        assert!(missing("CONFIG_VFIO=y\n", &settings[..1]).is_empty());
    }

    #[test]
    fn the_committed_fragment_parses() {
        let settings = parse(super::super::FRAGMENT).unwrap();
        for name in ["CONFIG_VFIO_PCI", "CONFIG_IOMMUFD", "CONFIG_I6300ESB_WDT"] {
            assert!(
                settings.iter().any(|s| s.name == name && s.value == "y"),
                "{name}"
            );
        }
    }
}
