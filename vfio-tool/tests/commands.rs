//! The commands on the mock: their output, and every kind of bad input
//! refused with a clear message, a non-zero exit and nothing written.

use clap::Parser;
use vfio_core::{Errno, Operation};
use vfio_mock::{MockHost, profiles};
use vfio_tool::cli::Cli;
use vfio_tool::error::{EXIT_OK, EXIT_USAGE, EXIT_VFIO};

/// Runs `vfio ARGS` as the binary would: exit code, stdout, stderr.
fn vfio(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = vfio_tool::run(
        std::iter::once("vfio").chain(args.iter().copied()),
        &mut out,
        &mut err,
    );
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Runs `vfio ARGS` on a mock host the test holds, so it can look at the
/// device before and after, and plan faults.
fn vfio_on(host: &MockHost, args: &[&str]) -> Result<String, vfio_tool::error::ToolError> {
    let cli = Cli::try_parse_from(std::iter::once("vfio").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let context = vfio_tool::HostContext {
        kernel_release: host.kernel().series().to_owned(),
        replayed: None,
    };
    vfio_tool::run_on(&host.backend(), &cli, &context, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn list_shows_groups_viability_and_nodes() {
    let (code, out, err) = vfio(&["--mock", "list"]);
    assert_eq!((code, err.as_str()), (EXIT_OK, ""));
    assert_eq!(
        out,
        "\
0000:00:02.0 [1234:11e8] class 00ff00  group 1, viable
    group node: /dev/vfio/1
0000:00:03.0 [1b36:0010] class 010802  group 2, viable
    group node: /dev/vfio/2
0000:00:05.0 [1b36:0010] class 010802  group 4, viable
    group node: /dev/vfio/4
0000:00:06.0 [8086:10d3] class 020000  group 5, viable
    group node: /dev/vfio/5
0000:00:07.0 [1af4:1000] class 020000  group 6, viable
    group node: /dev/vfio/6
0000:00:08.0 [1b36:000d] class 0c0330  group 7, viable
    group node: /dev/vfio/7
0000:00:09.0 [1af4:1110] class 050000  group 8, viable
    group node: /dev/vfio/8
0000:00:0a.0 [1b36:0005] class 00ff00  group 9, viable
    group node: /dev/vfio/9
0000:01:01.0 [1234:11e8] class 00ff00  group 3, not viable: 0000:01:02.0 is bound to i6300ESB timer
    group node: /dev/vfio/3
"
    );
    let (code, out, _) = vfio(&["--mock", "--kernel", "6.12", "--json", "list"]);
    assert_eq!(code, EXIT_OK);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let devices = doc["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 9);
    assert_eq!(devices[0]["address"], "0000:00:02.0");
    assert_eq!(devices[0]["group"], 1);
    assert_eq!(devices[0]["viable"], true);
    assert_eq!(devices[0]["cdev_node"], "/dev/vfio/devices/vfio0");
    assert_eq!(devices[8]["viable"], false);
    assert_eq!(devices[8]["blockers"][0]["address"], "0000:01:02.0");
    assert_eq!(devices[8]["blockers"][0]["driver"], "i6300ESB timer");
}

#[test]
fn info_decodes_regions_irqs_and_capabilities() {
    let (code, out, err) = vfio(&["--mock", "info", "00:03.0"]);
    assert_eq!((code, err.as_str()), (EXIT_OK, ""), "{out}");
    for line in [
        "0000:00:03.0 (opened with type1)",
        "  config  size 0x1000 at file offset 0x70000000000 [read write]",
        "  MSI-X  count 65 [eventfd noresize]",
        "  Capabilities: [40] MSI-X: Enable- Count=65 Masked-",
        "      Vector table: BAR=0 offset=00002000",
        "  Capabilities: [80] Express (v2) Root Complex Integrated Endpoint, MSI 00",
        "  Capabilities: [60] Power Management version 3",
    ] {
        assert!(out.lines().any(|l| l == line), "no `{line}` in\n{out}");
    }
    let (code, out, _) = vfio(&["--mock", "--json", "info", "00:02.0"]);
    assert_eq!(code, EXIT_OK);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["regions"][0]["name"], "bar0");
    assert_eq!(doc["regions"][0]["size"], 0x100000);
    assert_eq!(
        doc["regions"][0]["flag_names"],
        serde_json::json!(["read", "write", "mmap"])
    );
    assert_eq!(doc["irqs"][1]["name"], "MSI");
    assert_eq!(doc["capabilities"]["standard"][0]["id"], 5);
    assert_eq!(doc["header"]["vendor_id"], 0x1234);
}

#[test]
fn config_dumps_in_lspci_format_and_decodes_the_header() {
    let (code, out, _) = vfio(&["--mock", "config", "00:02.0"]);
    assert_eq!(code, EXIT_OK);
    assert!(out.starts_with("0000:00:02.0 unclassified device [1234:11e8]\n00: 34 12 e8 11"));
    let dumped = vfio_tool::dump::parse(&out).unwrap();
    assert_eq!(dumped[0].config.len(), 256);
    assert!(out.contains("\nBAR0 memory at 0xfea00000\n"), "{out}");
    assert!(out.contains("\ninterrupt pin INTA line 11\n"), "{out}");
}

#[test]
fn read_and_write_go_through_the_mapping_or_the_device_file() {
    let host = profiles::qemu_guest().build().unwrap();
    assert_eq!(
        vfio_on(&host, &["read", "00:02.0", "bar0", "0"]).unwrap(),
        "bar0[0x0] = 0x010000ed (4 bytes, mmap)\n"
    );
    assert_eq!(
        vfio_on(&host, &["write", "00:02.0", "bar0", "4", "4", "0x0f0f0f0f"]).unwrap(),
        "bar0[0x4] <- 0x0f0f0f0f (4 bytes, mmap)\n"
    );
    // edu's liveness register reads back the inverse of what was written.
    assert_eq!(
        vfio_on(&host, &["read", "00:02.0", "bar0", "0x4"]).unwrap(),
        "bar0[0x4] = 0xf0f0f0f0 (4 bytes, mmap)\n"
    );
    assert_eq!(
        vfio_on(&host, &["read", "00:02.0", "config", "0", "2"]).unwrap(),
        "config[0x0] = 0x1234 (2 bytes, file)\n"
    );
    let out = vfio_on(&host, &["--json", "read", "00:03.0", "0", "0x8", "4"]).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["region"], "bar0");
    assert_eq!(doc["via"], "mmap");
    assert_eq!(doc["value"], 0x0001_0400, "NVMe 1.4 in VS");
}

#[test]
fn irq_prints_each_triggered_vector_with_its_linux_irq() {
    let (code, out, err) = vfio(&[
        "--mock",
        "irq",
        "00:03.0",
        "msix",
        "--count",
        "2",
        "--trigger",
    ]);
    assert_eq!((code, err.as_str()), (EXIT_OK, ""));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines[0].starts_with("bound MSI-X vector 0 (irq "), "{out}");
    assert!(lines[2].starts_with("interrupt: vector 0 (irq "), "{out}");
    assert_eq!(lines[4], "MSI-X vector 0: 1 interrupt(s)");
    assert_eq!(lines[5], "MSI-X vector 1: 1 interrupt(s)");
    let (code, out, _) = vfio(&["--mock", "--json", "irq", "00:02.0", "msi", "--trigger"]);
    assert_eq!(code, EXIT_OK);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["arrivals"][0]["vector"], 0);
    assert_eq!(doc["arrivals"][0]["count"], 1);
    assert_eq!(doc["arrivals"][0]["irq"], doc["vectors"][0]["irq"]);
    // Without a trigger, nothing arrives in a short watch.
    let (code, out, _) = vfio(&["--mock", "irq", "00:02.0", "msi", "--for", "0.05"]);
    assert_eq!(code, EXIT_OK);
    assert!(out.ends_with("MSI vector 0: 0 interrupt(s)\n"), "{out}");
}

#[test]
fn a_device_not_bound_to_vfio_pci_is_refused() {
    let (code, out, err) = vfio(&["--mock", "info", "01:02.0"]);
    assert_eq!((code, out.as_str()), (EXIT_VFIO, ""));
    assert_eq!(
        err,
        "vfio: open device failed for 0000:01:02.0 (not found): the device is bound to driver \
         i6300ESB timer, not vfio-pci: bind it with driver_override and drivers_probe first \
         [kind: NotFound, errno: none]\n"
    );
    let (code, _, err) = vfio(&["--mock", "read", "00:1e.0", "bar0", "0"]);
    assert_eq!(code, EXIT_VFIO);
    assert!(err.contains("no PCI device 0000:00:1e.0"), "{err}");
}

#[test]
fn a_group_that_is_not_viable_is_refused_naming_the_device_on_another_driver() {
    let (code, out, err) = vfio(&["--mock", "config", "01:01.0"]);
    assert_eq!((code, out.as_str()), (EXIT_VFIO, ""));
    assert_eq!(
        err,
        "vfio: get group status failed for 0000:01:01.0 (busy): IOMMU group 3 is not viable: \
         0000:01:02.0 is bound to i6300ESB timer [kind: Busy, errno: none]\n"
    );
}

#[test]
fn no_permission_on_the_group_node_names_eacces() {
    let host = profiles::qemu_guest().build().unwrap();
    host.fail_next(Operation::OpenGroup, Errno::EACCES, 1);
    let e = vfio_on(&host, &["info", "00:02.0"]).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_VFIO);
    let text = e.to_string();
    assert!(text.starts_with("open group failed"), "{text}");
    assert!(
        text.ends_with("(permission denied) [kind: PermissionDenied, errno: EACCES]"),
        "{text}"
    );
    host.assert_faults_consumed();
    // In `list`, the same refusal is the group's viability left unknown.
    host.fail_next(Operation::OpenGroup, Errno::EACCES, 1);
    let out = vfio_on(&host, &["list"]).unwrap();
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("group 1, viability unknown: open group failed"),
        "{out}"
    );
}

/// The edu's liveness register (0x04) before and after a refused write.
fn refused_write_leaves_liveness(args: &[&str], message: &str) {
    let host = profiles::qemu_guest().build().unwrap();
    vfio_on(&host, &["write", "00:02.0", "bar0", "4", "4", "0x11111111"]).unwrap();
    let before = vfio_on(&host, &["read", "00:02.0", "bar0", "4"]).unwrap();
    let e = vfio_on(&host, args).unwrap_err();
    assert_eq!(e.exit_code(), EXIT_USAGE, "{e}");
    assert_eq!(e.to_string(), message);
    assert_eq!(
        vfio_on(&host, &["read", "00:02.0", "bar0", "4"]).unwrap(),
        before
    );
}

#[test]
fn bad_offsets_widths_and_values_are_refused_before_anything_is_written() {
    refused_write_leaves_liveness(
        &["write", "00:02.0", "bar0", "4", "1", "0x100"],
        "value 0x100 does not fit in 1 byte",
    );
    refused_write_leaves_liveness(
        &["write", "00:02.0", "bar0", "4", "3", "1"],
        "width `3` is not 1, 2, 4 or 8",
    );
    refused_write_leaves_liveness(
        &["write", "00:02.0", "bar0", "0x100000", "4", "1"],
        "offset 0x100000 + 4 is past the end of bar0 (0x100000 bytes)",
    );
    refused_write_leaves_liveness(
        &["write", "00:02.0", "bar0", "0xfffffffffffffffc", "8", "1"],
        "offset 0xfffffffffffffffc + 8 is past the end of bar0 (0x100000 bytes)",
    );
    refused_write_leaves_liveness(
        &["write", "00:02.0", "bar0", "6", "4", "1"],
        "offset 0x6 is not aligned to the width (4 bytes)",
    );
    refused_write_leaves_liveness(
        &["write", "00:02.0", "bar2", "0", "4", "1"],
        "region bar2 is absent on this device (size 0)",
    );
    refused_write_leaves_liveness(
        &["write", "00:02.0", "bar0", "4", "4", "twelve"],
        "value `twelve` is not a number (decimal, or hex with 0x)",
    );
    refused_write_leaves_liveness(
        &["write", "00:02.0", "bar9", "4", "4", "1"],
        "no region `bar9`: BARs are bar0..bar5",
    );
    let (code, _, err) = vfio(&["--mock", "read", "00:02.0", "bar0", "0", "16"]);
    assert_eq!(
        (code, err.as_str()),
        (EXIT_USAGE, "vfio: width `16` is not 1, 2, 4 or 8\n")
    );
    let (code, _, err) = vfio(&["--mock", "read", "00:02.0", "config", "0x100", "4"]);
    assert_eq!(code, EXIT_USAGE);
    assert_eq!(
        err,
        "vfio: offset 0x100 + 4 is past the end of config (0x100 bytes)\n"
    );
    let (code, _, err) = vfio(&["--mock", "irq", "00:02.0", "msi", "--count", "2"]);
    assert_eq!(code, EXIT_USAGE);
    assert_eq!(
        err,
        "vfio: 0000:00:02.0 has 1 MSI vector; --count 2 asks for more\n"
    );
}

#[test]
fn usage_errors_exit_2_and_help_names_the_exit_codes() {
    let (code, _, err) = vfio(&["--mock", "frobnicate"]);
    assert_eq!(code, EXIT_USAGE);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
    let (code, _, err) = vfio(&["--mock", "info", "00:99.0"]);
    assert_eq!(code, EXIT_USAGE);
    assert!(err.contains("invalid value '00:99.0'"), "{err}");
    let (code, out, _) = vfio(&["--help"]);
    assert_eq!(code, EXIT_OK);
    assert!(
        out.contains("Exit codes:\n  0  the command did what it was asked"),
        "{out}"
    );
    assert!(out.contains("--mock[=<PROFILE>]"), "{out}");
}

#[test]
fn capture_then_replay_gives_the_same_profile_back() {
    let dir = tempfile::tempdir().unwrap();
    for (device, kernel) in [("00:02.0", "6.1"), ("00:03.0", "6.12")] {
        let first = dir.path().join(format!("{device}-{kernel}.json"));
        let second = dir.path().join("again.json");
        let first_arg = first.to_str().unwrap();
        let (code, out, err) = vfio(&[
            "--mock", "--kernel", kernel, "capture", device, "-o", first_arg,
        ]);
        assert_eq!((code, err.as_str()), (EXIT_OK, ""));
        assert!(
            out.starts_with(&format!("captured 0000:{device} into {first_arg}: ")),
            "{out}"
        );
        let mock = format!("--mock={first_arg}");
        // The replayed device answers info as the captured one did.
        let (_, captured_info, _) = vfio(&["--mock", "--kernel", kernel, "info", device]);
        let (code, replayed_info, err) = vfio(&[&mock, "info", device]);
        assert_eq!((code, err.as_str()), (EXIT_OK, ""));
        assert_eq!(replayed_info, captured_info);
        let (code, _, err) = vfio(&[&mock, "capture", device, "-o", second.to_str().unwrap()]);
        assert_eq!((code, err.as_str()), (EXIT_OK, ""));
        assert_eq!(
            std::fs::read_to_string(&first).unwrap(),
            std::fs::read_to_string(&second).unwrap(),
            "{device} on {kernel}"
        );
    }
}

/// A profile of the mock's edu, its JSON text changed by `edit`, given to
/// `--mock=`: the exit code and stderr.
fn with_edited_profile(edit: impl Fn(String) -> String) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edu.json");
    let path = path.to_str().unwrap();
    assert_eq!(
        vfio(&["--mock", "capture", "00:02.0", "-o", path]).0,
        EXIT_OK
    );
    let text = std::fs::read_to_string(path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(path, edited).unwrap();
    vfio(&[&format!("--mock={path}"), "list"])
}

#[test]
fn a_bad_profile_is_refused_with_exit_2() {
    let (code, out, err) = with_edited_profile(|t| t.replace("\"version\": 1,", "\"version\": 2,"));
    assert_eq!((code, out.as_str()), (EXIT_USAGE, ""));
    assert!(err.starts_with("vfio: profile "), "{err}");
    assert!(
        err.ends_with(
            "is refused: profile version 2 is not supported: this library reads version 1\n"
        ),
        "{err}"
    );
    // MSI at 0x40 pointing back at itself: a capability chain that loops.
    let (code, _, err) = with_edited_profile(|t| t.replace("\"040: 05 00 80", "\"040: 05 40 80"));
    assert_eq!(code, EXIT_USAGE);
    assert!(
        err.contains("is refused: PCI capability list broken at 0x41: points back to 0x40: loop"),
        "{err}"
    );
    let (code, _, err) =
        with_edited_profile(|t| t.replace("vfio-device-profile", "something-else"));
    assert_eq!(code, EXIT_USAGE);
    assert!(err.contains("not a device profile"), "{err}");
    let (code, _, err) = vfio(&["--mock=/nonexistent/edu.json", "list"]);
    assert_eq!(code, EXIT_USAGE);
    assert!(
        err.starts_with("vfio: cannot read profile /nonexistent/edu.json: "),
        "{err}"
    );
}

#[test]
fn capture_to_a_file_that_cannot_be_written_fails_with_exit_1() {
    let (code, out, err) = vfio(&[
        "--mock",
        "capture",
        "00:02.0",
        "-o",
        "/nonexistent/dir/p.json",
    ]);
    assert_eq!((code, out.as_str()), (EXIT_VFIO, ""));
    assert!(
        err.starts_with("vfio: writing the output failed: /nonexistent/dir/p.json: "),
        "{err}"
    );
}

#[test]
fn mode_picks_the_mock_guest_of_that_mode() {
    let (code, out, _) = vfio(&["--mock", "--mode", "noiommu", "list"]);
    assert_eq!(code, EXIT_OK);
    assert!(
        out.starts_with(
            "0000:00:02.0 [1234:11e8] class 00ff00  group 0, viable\n    group node: /dev/vfio/noiommu-0\n"
        ),
        "{out}"
    );
    let (code, out, _) = vfio(&[
        "--mock", "--mode", "noiommu", "read", "00:02.0", "bar0", "0",
    ]);
    assert_eq!(
        (code, out.as_str()),
        (EXIT_OK, "bar0[0x0] = 0x010000ed (4 bytes, mmap)\n")
    );
    let (code, out, _) = vfio(&["--mock", "--mode", "iommufd", "info", "00:03.0"]);
    assert_eq!(code, EXIT_OK);
    assert!(
        out.starts_with("0000:00:03.0 (opened with iommufd)\n"),
        "{out}"
    );
    // On 6.1 there is no /dev/iommu to open.
    let (code, _, err) = vfio(&[
        "--mock", "--mode", "iommufd", "--kernel", "6.1", "info", "00:03.0",
    ]);
    assert_eq!(code, EXIT_VFIO);
    assert!(err.contains("[kind: NotFound, errno: "), "{err}");
}

#[test]
fn the_binary_exits_with_the_documented_codes() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vfio"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = run(&["--mock", "read", "00:02.0", "bar0", "0"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(out, "bar0[0x0] = 0x010000ed (4 bytes, mmap)\n");
    let (code, out, err) = run(&["--mock", "info", "01:02.0"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.ends_with("[kind: NotFound, errno: none]\n"), "{err}");
    let (code, out, err) = run(&["--mock", "write", "00:02.0", "bar0", "4", "2", "0x10000"]);
    assert_eq!((code, out.as_str()), (Some(2), ""));
    assert_eq!(err, "vfio: value 0x10000 does not fit in 2 bytes\n");
}
