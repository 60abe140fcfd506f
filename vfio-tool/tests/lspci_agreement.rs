//! The capability lists `vfio info` decodes agree with `lspci -vvv`
//! (pciutils) on the same config bytes.
//!
//! For every config space it can reach, the test writes a dump in
//! `lspci -xxx` format, runs `lspci -vvv -F DUMP`, and checks that:
//! - the capability lines (offset, id, name and the fields on that line)
//!   are lspci's, in lspci's order, standard then extended;
//! - every detail line printed under a capability is one lspci prints
//!   under it, and where the capability is decoded in full
//!   (`details_complete`), the detail lines are lspci's, all of them, in
//!   lspci's order;
//! - the `Control:` and `Status:` lines are lspci's.
//!
//! The config spaces: every PCI device of this machine
//! (`/sys/bus/pci/devices/*/config`; root reads all of it, others only the
//! header, and a device with fewer than 256 bytes is left out and said so),
//! every device of vfio-mock's QEMU guest, the dumps in
//! `tests/config-dumps/`, what `vfio-mock/profiles/` holds (the profiles
//! captured in the QEMU guest through vfio-pci, and each guest's
//! `sysfs-config.txt`: every PCI function there as its sysfs `config` reads),
//! and every file named by `VFIO_TOOL_CONFIG_DUMPS`
//! (paths separated by `:`, each a file or a directory of files): a `.txt`
//! file is a dump in `lspci -xxx` format (one or more devices), a `.json`
//! file a device profile (vfio-profile's format, from `vfio capture`),
//! whose config bytes are checked.
//!
//! Each config space is given to lspci twice, as the function at 00:00.0
//! and at 00:01.0 (lspci words an endpoint's link registers by where it
//! is), and decoded for the same place each time.
//!
//! lspci runs with no ID database (an empty `-i` file, and udev's hwdb
//! off where it has one), as `info` names no vendors: the Subsystem
//! capability's line then names IDs as both print them.
//!
//! lspci must be installed (Debian's `pciutils`; `cargo xtask ci` installs it).

use std::path::{Path, PathBuf};
use std::process::Command;
use vfio_tool::{dump, pci};

/// A config space to check, with where it came from.
struct Source {
    origin: String,
    config: Vec<u8>,
}

/// lspci's output for one device: the Control and Status lines, and each
/// capability's line with the detail lines under it (all trimmed).
#[derive(Debug, Default)]
struct LspciDevice {
    control: Option<String>,
    status: Option<String>,
    caps: Vec<(String, Vec<String>)>,
}

fn parse_lspci(text: &str) -> LspciDevice {
    let mut dev = LspciDevice::default();
    let mut in_cap = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("\t\t") {
            if in_cap {
                if let Some((_, details)) = dev.caps.last_mut() {
                    details.push(rest.trim().to_owned());
                }
            }
            continue;
        }
        let Some(rest) = line.strip_prefix('\t') else {
            continue;
        };
        in_cap = false;
        if rest.starts_with("Capabilities: ") {
            dev.caps.push((rest.trim().to_owned(), Vec::new()));
            in_cap = true;
        } else if rest.starts_with("Control: ") {
            dev.control = Some(rest.trim().to_owned());
        } else if rest.starts_with("Status: ") {
            dev.status = Some(rest.trim().to_owned());
        }
    }
    dev
}

/// Where lspci is told each config space is: device 0 and device 1 of
/// bus 0.
const PLACES: [(u8, &str); 2] = [(0, "00:00.0"), (1, "00:01.0")];

/// Whether this lspci can be told not to look names up in udev's hwdb
/// (pciutils built with hwdb support knows the `hwdb.disable` parameter).
fn lspci_has_hwdb() -> bool {
    Command::new("lspci")
        .args(["-O", "help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("hwdb.disable"))
}

fn run_lspci(dir: &Path, config: &[u8], place: &str) -> String {
    let file = dir.join("dump.txt");
    std::fs::write(&file, dump::device_dump(place, "checked device", config)).unwrap();
    // No ID database: `info` names no vendors or devices, and lspci words
    // IDs it has no names for as `Device 8086:7000`.
    let no_names = dir.join("empty.ids");
    std::fs::write(&no_names, "").unwrap();
    let mut lspci = Command::new("lspci");
    lspci.arg("-i").arg(&no_names);
    if lspci_has_hwdb() {
        lspci.args(["-O", "hwdb.disable=1"]);
    }
    let out = lspci
        .arg("-vvv")
        .arg("-F")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run lspci ({e}): install pciutils (apt-get install pciutils)")
        });
    assert!(out.status.success(), "lspci failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// What differs between our decoding and lspci's for one config space, the
/// function at `device`.0 of its bus.
fn disagreements(config: &[u8], device: u8, lspci: &LspciDevice) -> Vec<String> {
    let mut problems = Vec::new();
    let list = pci::decode_at(config, device, 0);
    if let Some(e) = &list.standard_error {
        problems.push(format!("our standard list did not walk: {e}"));
    }
    if let Some(e) = &list.extended_error {
        problems.push(format!("our extended list did not walk: {e}"));
    }
    let ours: Vec<&pci::Capability> = list.standard.iter().chain(&list.extended).collect();
    if ours.len() != lspci.caps.len() {
        problems.push(format!(
            "{} capabilities here, {} in lspci: {:?} vs {:?}",
            ours.len(),
            lspci.caps.len(),
            ours.iter().map(|c| c.header_line()).collect::<Vec<_>>(),
            lspci.caps.iter().map(|c| &c.0).collect::<Vec<_>>()
        ));
    }
    for (cap, (their_line, their_details)) in ours.iter().zip(&lspci.caps) {
        let line = cap.header_line();
        let same = if cap.name_is_prefix {
            their_line.starts_with(&line)
        } else {
            *their_line == line
        };
        if !same {
            problems.push(format!("capability line `{line}`, lspci `{their_line}`"));
            continue;
        }
        if cap.details.len() != cap.detail_indents.len() {
            problems.push(format!(
                "under `{line}`: details and indents differ in length"
            ));
        }
        if cap.details_complete {
            if cap.details != *their_details {
                problems.push(format!(
                    "under `{line}`, decoded in full: {:?}, lspci {their_details:?}",
                    cap.details
                ));
            }
            continue;
        }
        for d in &cap.details {
            if !their_details.contains(d) {
                problems.push(format!(
                    "under `{line}`: `{d}` is not among lspci's {their_details:?}"
                ));
            }
        }
    }
    match pci::header(config) {
        Some(h) => {
            if lspci.control.as_deref() != Some(h.control_line.as_str()) {
                problems.push(format!("`{}`, lspci {:?}", h.control_line, lspci.control));
            }
            if lspci.status.as_deref() != Some(h.status_line.as_str()) {
                problems.push(format!("`{}`, lspci {:?}", h.status_line, lspci.status));
            }
        }
        None => problems.push("no header".into()),
    }
    problems
}

fn machine_sources(skipped: &mut Vec<String>) -> Vec<Source> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/bus/pci/devices") else {
        skipped.push("this machine has no /sys/bus/pci/devices".into());
        return out;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for dir in paths {
        let origin = format!("this machine's {}", dir.display());
        match std::fs::read(dir.join("config")) {
            Ok(config) if config.len() >= 256 => out.push(Source { origin, config }),
            Ok(config) => skipped.push(format!(
                "{origin}: only {} bytes of config space readable (not root?)",
                config.len()
            )),
            Err(e) => skipped.push(format!("{origin}: {e}")),
        }
    }
    out
}

/// The mock guest's devices: each one's sysfs `config`, and for those
/// bound to vfio-pci also config space as the config region gives it
/// (what `vfio info` decodes).
fn mock_sources() -> Vec<Source> {
    let host = vfio_mock::profiles::qemu_guest().build().unwrap();
    let backend = host.backend();
    let paths = host.paths().clone();
    let mut out: Vec<Source> = vfio_tool::sysfs::pci_devices(&paths)
        .into_iter()
        .map(|a| Source {
            origin: format!("the mock's sysfs {a}"),
            config: std::fs::read(paths.pci_device_dir(&a).join("config")).unwrap(),
        })
        .collect();
    for a in vfio_tool::sysfs::vfio_pci_devices(&paths) {
        match vfio_tool::commands::config::config(&backend, &a, None) {
            Ok(c) => out.push(Source {
                origin: format!("the mock's config region of {a}"),
                config: c.bytes,
            }),
            // The edu behind the bridge shares a group that is not viable.
            Err(e) => assert!(e.to_string().contains("is not viable"), "{a}: {e}"),
        }
    }
    out
}

/// The `.txt` dumps and `.json` profiles at `path`: the file itself, or
/// those under the directory and its subdirectories (the committed profiles
/// are kept a directory per kernel), sorted.
fn dump_files(path: &Path) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).unwrap().filter_map(|e| e.ok()) {
        let p = entry.path();
        if p.is_dir() {
            files.extend(dump_files(&p));
        } else if p.extension().is_some_and(|e| e == "txt" || e == "json") {
            files.push(p);
        }
    }
    files.sort();
    files
}

fn dump_sources() -> Vec<Source> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut roots = vec![manifest.join("tests/config-dumps")];
    // The device profiles the workspace commits, where it has any.
    let committed = manifest.join("../vfio-mock/profiles");
    if committed.is_dir() {
        roots.push(committed);
    }
    if let Ok(list) = std::env::var("VFIO_TOOL_CONFIG_DUMPS") {
        roots.extend(list.split(':').filter(|s| !s.is_empty()).map(PathBuf::from));
    }
    let mut out = Vec::new();
    for root in roots {
        for file in dump_files(&root) {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if file.extension().is_some_and(|e| e == "json") {
                let profile = vfio_profile::DeviceProfile::from_json(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                out.push(Source {
                    origin: format!("profile {}", file.display()),
                    config: profile.config.bytes.as_slice().to_vec(),
                });
                continue;
            }
            let devices = dump::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for d in devices {
                out.push(Source {
                    origin: format!("{} {}", file.display(), d.address),
                    config: d.config,
                });
            }
        }
    }
    out
}

#[test]
fn capability_lists_agree_with_lspci() {
    let dir = tempfile::tempdir().unwrap();
    let mut skipped = Vec::new();
    let mut sources = machine_sources(&mut skipped);
    let machine = sources.len();
    sources.extend(mock_sources());
    let mock = sources.len() - machine;
    sources.extend(dump_sources());
    let dumps = sources.len() - machine - mock;
    assert!(
        mock >= 18,
        "the mock guest: ten devices in sysfs, eight in viable groups; found {mock}"
    );
    assert!(dumps > 0, "tests/config-dumps holds dumps");
    let mut failures = Vec::new();
    let mut caps_checked = 0;
    let mut lines_checked = 0;
    for s in &sources {
        for (device, place) in PLACES {
            let lspci = parse_lspci(&run_lspci(dir.path(), &s.config, place));
            caps_checked += lspci.caps.len();
            lines_checked += lspci.caps.iter().map(|c| c.1.len()).sum::<usize>();
            for p in disagreements(&s.config, device, &lspci) {
                failures.push(format!("{} at {place}: {p}", s.origin));
            }
        }
    }
    for s in &skipped {
        eprintln!("left out: {s}");
    }
    eprintln!(
        "checked {} config spaces ({machine} of this machine, {mock} of the mock, {dumps} from dumps), \
         {caps_checked} capabilities with {lines_checked} detail lines (each at two places)",
        sources.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_tampered_capability_is_caught() {
    // The check itself must see a difference: rename the mock edu's MSI
    // capability line and expect a complaint.
    let config = mock_sources()
        .into_iter()
        .find(|s| s.origin.ends_with("0000:00:02.0"))
        .unwrap()
        .config;
    let dir = tempfile::tempdir().unwrap();
    let mut lspci = parse_lspci(&run_lspci(dir.path(), &config, "00:01.0"));
    assert!(disagreements(&config, 1, &lspci).is_empty());
    lspci.caps[0].0.push('!');
    assert_eq!(disagreements(&config, 1, &lspci).len(), 1);
    lspci.caps[0].1.clear();
    lspci.caps[0].0.pop();
    assert!(!disagreements(&config, 1, &lspci).is_empty());
}
