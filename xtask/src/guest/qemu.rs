//! Booting the guest under QEMU (TCG), streaming its serial console and enforcing the
//! timeout.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::console::{Console, strip_control};
use super::{BRIDGE, GuestDevice, Slot};
use crate::cmd;

/// How long to wait for QEMU to exit after the guest printed its exit marker.
const POWER_OFF_GRACE: Duration = Duration::from_secs(30);

/// The guest kernel's command line. `panic=-1` reboots at once on a panic, which
/// `-no-reboot` turns into QEMU exiting; `cryptomgr.notests` skips the crypto self-tests
/// (half a second under TCG).
const KERNEL_CMDLINE: &str = "console=ttyS0 intel_iommu=on panic=-1 quiet cryptomgr.notests";

/// The command line without an IOMMU: vfio (built in) gives devices with no IOMMU
/// no-IOMMU groups.
const KERNEL_CMDLINE_NOIOMMU: &str =
    "console=ttyS0 vfio.enable_unsafe_noiommu_mode=1 panic=-1 quiet cryptomgr.notests";

/// What to boot.
#[derive(Debug)]
pub struct Machine<'a> {
    /// The kernel image.
    pub kernel: &'a Path,
    /// The initramfs (an uncompressed cpio archive).
    pub initrd: &'a Path,
    /// Where each device's drive image is, as `<drive id>.img`.
    pub drive_dir: &'a Path,
    /// The PCI devices to attach, at their fixed slots ([`BRIDGE`] comes too when any
    /// of them sits behind it).
    pub devices: &'a [GuestDevice],
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// Whether the machine has an IOMMU (emulated VT-d, with interrupt remapping).
    /// Without one, the kernel enables vfio's no-IOMMU mode.
    pub iommu: bool,
    /// The IOMMU's address width (`aw-bits`: 39, QEMU 7.2's default, or 48).
    pub iommu_address_bits: u32,
}

/// How a boot ended.
#[derive(Debug)]
pub struct Boot {
    /// Wall time from starting QEMU until it exited (or was killed).
    pub elapsed: Duration,
    /// QEMU's exit status; `None` if it was killed on timeout.
    pub status: Option<ExitStatus>,
}

impl Machine<'_> {
    /// The full QEMU command line.
    pub fn command(&self) -> Command {
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args([
            "-accel",
            "tcg",
            "-M",
            "q35,kernel-irqchip=split",
            "-cpu",
            "max",
        ])
        .arg("-smp")
        .arg(self.cpus.to_string())
        .args(["-m", "1024", "-nographic", "-no-reboot", "-vga", "none"])
        // No default NIC: it only adds an iPXE ROM to the boot and a device to the bus.
        .args(["-nic", "none"]);
        if self.iommu {
            // The IOMMU must come before the devices it translates for.
            qemu.arg("-device").arg(format!(
                "intel-iommu,intremap=on,caching-mode=on,aw-bits={}",
                self.iommu_address_bits
            ));
        }
        for id in self.devices.iter().filter_map(|d| d.drive) {
            let image = self.drive_dir.join(format!("{id}.img"));
            qemu.arg("-drive").arg(format!(
                "file={},if=none,id={id},format=raw",
                qemu_escape(&image)
            ));
        }
        for (option, value) in self.devices.iter().filter_map(|d| d.backend) {
            qemu.arg(option).arg(value);
        }
        // A bridge must come before the devices on its bus.
        if self
            .devices
            .iter()
            .any(|device| matches!(device.slot, Slot::Bridged(_)))
        {
            qemu.arg("-device").arg(BRIDGE.qemu_arg());
        }
        for device in self.devices {
            qemu.arg("-device").arg(device.qemu_arg(self.iommu));
        }
        qemu.arg("-kernel")
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            .arg("-append")
            .arg(if self.iommu {
                KERNEL_CMDLINE
            } else {
                KERNEL_CMDLINE_NOIOMMU
            });
        qemu
    }

    /// Boots the machine, feeding every console line to `console` and echoing it to
    /// stdout, until QEMU exits or `timeout` passes.
    pub fn boot(&self, console: &mut Console, timeout: Duration) -> Result<Boot> {
        let mut qemu = self.command();
        qemu.stdin(Stdio::null()).stdout(Stdio::piped());
        eprintln!("xtask: {}", cmd::display(&qemu));
        let start = Instant::now();
        let mut child = qemu
            .spawn()
            .with_context(|| format!("could not start `{}`", cmd::display(&qemu)))?;
        let stdout = child.stdout.take().context("QEMU has no stdout pipe")?;
        let (lines, received) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match stdout.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if lines.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });

        let result = pump(&mut child, &received, console, start + timeout);
        let status = match result {
            Ok(status) => status,
            Err(err) => {
                kill(&mut child);
                return Err(err);
            }
        };
        let elapsed = start.elapsed();
        // QEMU has exited or been killed, so the pipe is closed and the reader ends.
        let _ = reader.join();
        Ok(Boot { elapsed, status })
    }
}

/// Moves console lines from the reader thread to `console` and stdout until QEMU exits.
/// Returns `None` if QEMU had to be killed at the deadline.
fn pump(
    child: &mut Child,
    received: &mpsc::Receiver<Vec<u8>>,
    console: &mut Console,
    deadline: Instant,
) -> Result<Option<ExitStatus>> {
    let mut stdout = std::io::stdout();
    let mut deadline = deadline;
    let mut seen_exit = false;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(wait) {
            Ok(line) => {
                let line = strip_control(&line);
                stdout.write_all(&line)?;
                stdout.flush()?;
                let text = String::from_utf8_lossy(&line);
                console.feed(text.trim_end_matches('\n'))?;
                if !seen_exit && (console.exit_code.is_some() || console.setup_failed.is_some()) {
                    seen_exit = true;
                    deadline = deadline.min(Instant::now() + POWER_OFF_GRACE);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Ok(Some(child.wait().context("waiting for QEMU")?));
            }
            Err(RecvTimeoutError::Timeout) => {
                kill(child);
                return Ok(None);
            }
        }
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Escapes a path for a QEMU option value (commas are doubled).
fn qemu_escape(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// Creates the NVMe backing file: blank and sparse, `size` bytes.
pub fn create_disk(path: &Path, size: u64) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(size)
        .with_context(|| format!("sizing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::DEVICES;

    #[test]
    fn command_line_puts_iommu_and_bridge_first_and_pins_slots() {
        let machine = Machine {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            drive_dir: Path::new("/a,b"),
            devices: &DEVICES,
            cpus: 2,
            iommu: true,
            iommu_address_bits: 48,
        };
        let line = cmd::display(&machine.command());
        let iommu = line.find("intel-iommu").unwrap();
        assert!(line.contains("caching-mode=on,aw-bits=48"), "{line}");
        let edu = line.find("edu,addr=02.0").unwrap();
        let nvme = line
            .find("nvme,serial=vfio0001,drive=nvm,addr=03.0")
            .unwrap();
        let bridge = line
            .find("pci-bridge,chassis_nr=1,shpc=off,id=br0,addr=04.0")
            .unwrap();
        let shared = line.find("edu,bus=br0,addr=01.0").unwrap();
        let watchdog = line.find("i6300esb,bus=br0,addr=02.0").unwrap();
        assert!(iommu < edu && iommu < nvme && iommu < bridge, "{line}");
        assert!(bridge < shared && bridge < watchdog, "{line}");
        assert!(line.contains("file=/a,,b/nvm.img,if=none,id=nvm"), "{line}");
        assert!(
            line.contains("file=/a,,b/nvm2.img,if=none,id=nvm2"),
            "{line}"
        );
        let big = line.find("msix_qsize=2048,addr=05.0").unwrap();
        assert!(iommu < big, "{line}");
        assert!(line.contains("-accel tcg"), "{line}");
    }

    #[test]
    fn without_an_iommu_the_kernel_enables_noiommu_and_edu_gets_a_wide_mask() {
        let machine = Machine {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            drive_dir: Path::new("/"),
            devices: &DEVICES,
            cpus: 2,
            iommu: false,
            iommu_address_bits: 39,
        };
        let line = cmd::display(&machine.command());
        assert!(!line.contains("intel-iommu"), "{line}");
        assert!(!line.contains("intel_iommu=on"), "{line}");
        assert!(line.contains("vfio.enable_unsafe_noiommu_mode=1"), "{line}");
        assert!(
            line.contains("edu,dma_mask=0xffffffffffffffff,addr=02.0"),
            "{line}"
        );
        assert!(
            line.contains("edu,dma_mask=0xffffffffffffffff,bus=br0,addr=01.0"),
            "{line}"
        );
        assert!(
            line.contains("nvme,serial=vfio0001,drive=nvm,addr=03.0"),
            "{line}"
        );
    }

    #[test]
    fn no_bridge_without_bridged_devices() {
        let machine = Machine {
            kernel: Path::new("/k"),
            initrd: Path::new("/i"),
            drive_dir: Path::new("/"),
            devices: &DEVICES[..2],
            cpus: 1,
            iommu: true,
            iommu_address_bits: 39,
        };
        let line = cmd::display(&machine.command());
        assert!(!line.contains("bridge"), "{line}");
    }
}
