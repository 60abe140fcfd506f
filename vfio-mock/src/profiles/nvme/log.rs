//! Get Log Page (`nvme_get_log`): Error Information, SMART / Health,
//! Firmware Slot, Changed Namespaces and Commands Supported and Effects.

use super::Ctrl;
use super::admin::{TEMPERATURE, c2h, pad};
use super::events::{self, AER_ERROR, AER_NOTICE, AER_SMART};
use super::io::{self, BROADCAST};
use super::queues::Todo;
use crate::model::DeviceContext;
use nvme_spec::log::{FirmwareSlotLog, SmartLog};
use nvme_spec::{Command, Status};
use zerocopy::{FromZeros, IntoBytes};

/// Get Log Page: offsets must be dword-aligned and the length within MDTS
/// (both Invalid Field with DNR); an offset past the page is Invalid Field.
pub(super) fn get_log(
    c: &mut Ctrl,
    ctx: &DeviceContext<'_>,
    cmd: &Command,
    todo: &mut Todo,
) -> Status {
    let lid = (cmd.cdw10 & 0xff) as u8;
    let rae = cmd.cdw10 & (1 << 15) != 0;
    // QEMU computes the length in 32 bits: NUMD FFFFFFFFh wraps to 0 bytes
    // (and succeeds, transferring nothing).
    let numd = (cmd.cdw10 >> 16) | ((cmd.cdw11 & 0xffff) << 16);
    let len = u64::from(numd.wrapping_add(1) << 2);
    let off = u64::from(cmd.cdw12) | (u64::from(cmd.cdw13) << 32);
    if off % 4 != 0 {
        return Status::INVALID_FIELD.with_dnr();
    }
    if let Err(s) = io::check_mdts(c, len) {
        return s;
    }
    let page: Vec<u8> = match lid {
        0x01 => {
            if !rae {
                events::clear_events(c, AER_ERROR, todo);
            }
            // QEMU keeps no errors: one zeroed entry, copied from its start
            // whatever the offset.
            if off >= 64 {
                return Status::INVALID_FIELD.with_dnr();
            }
            let n = (64 - off).min(len) as usize;
            return c2h(c, ctx, cmd, &vec![0u8; n]);
        }
        0x02 => {
            let nsid = cmd.nsid;
            if off >= 512 {
                return Status::INVALID_FIELD.with_dnr();
            }
            // NSID 0 is Invalid Namespace in QEMU 7.2; the specification
            // reads it as "the controller".
            if nsid != BROADCAST && nsid != 1 {
                return Status::INVALID_NAMESPACE.with_dnr();
            }
            let mut smart = SmartLog::new_zeroed();
            smart.temperature = TEMPERATURE.to_le_bytes();
            if TEMPERATURE >= c.features.temp_over || TEMPERATURE <= c.features.temp_under {
                smart.critical_warning |= 1 << 1;
            }
            let units = |bytes: u64| ((bytes >> 9).div_ceil(1000)).to_le_bytes();
            smart.data_units_read[..8].copy_from_slice(&units(c.stats.bytes_read));
            smart.data_units_written[..8].copy_from_slice(&units(c.stats.bytes_written));
            smart.host_read_commands[..8].copy_from_slice(&c.stats.reads.to_le_bytes());
            smart.host_write_commands[..8].copy_from_slice(&c.stats.writes.to_le_bytes());
            let hours = ctx.now().as_secs() / 3600;
            smart.power_on_hours[..8].copy_from_slice(&hours.to_le_bytes());
            if !rae {
                events::clear_events(c, AER_SMART, todo);
            }
            smart.as_bytes().to_vec()
        }
        0x03 => {
            if off >= 512 {
                return Status::INVALID_FIELD.with_dnr();
            }
            let mut fw = FirmwareSlotLog::new_zeroed();
            fw.afi = 1;
            pad(&mut fw.frs[0], "1.0");
            fw.as_bytes().to_vec()
        }
        0x04 => {
            if off >= 4096 {
                return Status::INVALID_FIELD.with_dnr();
            }
            if !rae {
                events::clear_events(c, AER_NOTICE, todo);
            }
            vec![0u8; 4096]
        }
        0x05 => {
            if off >= 4096 {
                return Status::INVALID_FIELD.with_dnr();
            }
            let mut log = vec![0u8; 4096];
            let mut set = |index: usize, v: u32| {
                log[index * 4..index * 4 + 4].copy_from_slice(&v.to_le_bytes());
            };
            for op in [
                0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0c, 0x1c, 0x7c,
            ] {
                set(op, 1);
            }
            set(0x15, 1 | (1 << 3));
            set(0x80, 1 | (1 << 1));
            let css = (c.regs.get32(super::reg::CC) >> 4) & 7;
            let csi = cmd.cdw14 >> 24;
            if css == 0 || (css == 6 && (csi == 0 || csi == 2)) {
                for (op, eff) in [
                    (0x00, 3),
                    (0x08, 3),
                    (0x01, 3),
                    (0x02, 1),
                    (0x09, 3),
                    (0x0c, 1),
                    (0x19, 3),
                    (0x05, 1),
                ] {
                    set(256 + op, eff);
                }
                if css == 6 && csi == 2 {
                    set(256 + 0x7d, 3);
                    set(256 + 0x79, 3);
                    set(256 + 0x7a, 1);
                }
            }
            log
        }
        _ => return Status::INVALID_FIELD.with_dnr(),
    };
    let from = off as usize;
    let n = (page.len() - from).min(len as usize);
    c2h(c, ctx, cmd, &page[from..from + n])
}
