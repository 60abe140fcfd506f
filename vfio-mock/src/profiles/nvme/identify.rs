//! Identify (`nvme_identify` and its CNS handlers): the controller's and
//! the namespace's data, namespace lists and descriptors, and the
//! structures a controller without a subsystem or SR-IOV answers.

use super::admin::{AERL, FIRMWARE_REVISION, TEMPERATURE_CRITICAL, TEMPERATURE_WARNING, c2h, pad};
use super::io::{self, BROADCAST, MAX_NSID, MDTS, nsid_valid};
use super::{Ctrl, IO_QUEUE_PAIRS, Shared};
use crate::model::DeviceContext;
use nvme_spec::identify::IdentifyController;
use nvme_spec::{Command, Status};
use zerocopy::{FromZeros, IntoBytes};

/// The Identify Controller data QEMU 7.2 gives this controller.
fn identify_controller(shared: &Shared) -> IdentifyController {
    let mut id = IdentifyController::new_zeroed();
    id.vid = 0x1b36;
    id.ssvid = 0x1af4;
    pad(&mut id.sn, &shared.fixed.serial);
    pad(&mut id.mn, "QEMU NVMe Ctrl");
    pad(&mut id.fr, FIRMWARE_REVISION);
    id.rab = 6;
    id.ieee = [0x00, 0x54, 0x52];
    id.mdts = MDTS;
    id.cntlid = 0;
    id.ver = super::VS;
    id.oaes = 1 << 8;
    id.ctratt = 1 << 15;
    id.cntrltype = 1;
    // Namespace Management, Format NVM and Doorbell Buffer Config, as QEMU
    // advertises them (its Namespace Management opcode is not implemented).
    id.oacs = (1 << 3) | (1 << 1) | (1 << 8);
    id.acl = 3;
    id.aerl = AERL;
    // One slot, slot 1 read-only.
    id.frmw = (1 << 1) | 1;
    id.lpa = 0x7;
    id.wctemp = TEMPERATURE_WARNING;
    id.cctemp = TEMPERATURE_CRITICAL;
    id.sqes = 0x66;
    id.cqes = 0x44;
    id.nn = MAX_NSID;
    // Compare, DSM, Write Zeroes, Save/Select in features, Timestamp, Copy.
    id.oncs = 0x1 | 0x4 | 0x8 | 0x10 | 0x40 | 0x100;
    // A volatile write cache; Flush accepts the broadcast NSID.
    id.vwc = 0x1 | (3 << 1);
    id.ocfs = 0x3;
    id.sgls = 0x1;
    let nqn = format!("nqn.2019-08.org.qemu:{}", shared.fixed.serial);
    let n = nqn.len().min(id.subnqn.len() - 1);
    id.subnqn[..n].copy_from_slice(&nqn.as_bytes()[..n]);
    // Power state 0: 25 W, entry latency 16 us, exit latency 4 us.
    id.psd[0][0..2].copy_from_slice(&0x9c4u16.to_le_bytes());
    id.psd[0][4..8].copy_from_slice(&0x10u32.to_le_bytes());
    id.psd[0][8..12].copy_from_slice(&0x4u32.to_le_bytes());
    id
}

pub(super) fn identify(
    shared: &Shared,
    c: &mut Ctrl,
    ctx: &DeviceContext<'_>,
    cmd: &Command,
) -> Status {
    let cns = cmd.cdw10 & 0xff;
    let csi = cmd.cdw11 >> 24;
    let nsid = cmd.nsid;
    let mut page = vec![0u8; 4096];
    // Namespace-returning CNS values: a valid NSID with no namespace gets
    // a zeroed structure, success.
    let ns_check = |page: &mut Vec<u8>, fill: &dyn Fn(&mut Vec<u8>)| -> Result<(), Status> {
        if !nsid_valid(nsid) || nsid == BROADCAST {
            return Err(Status::INVALID_NAMESPACE.with_dnr());
        }
        if nsid == 1 {
            fill(page);
        }
        Ok(())
    };
    let status = match cns {
        // Namespace, active or allocated (there is no subsystem).
        0x00 | 0x11 => ns_check(&mut page, &|p| {
            p.copy_from_slice(c.ns.identify().as_bytes());
        }),
        0x01 => {
            page.copy_from_slice(identify_controller(shared).as_bytes());
            Ok(())
        }
        // Active / allocated namespace ID lists.
        0x02 | 0x10 => {
            if nsid >= BROADCAST - 1 {
                Err(Status::INVALID_NAMESPACE.with_dnr())
            } else {
                if nsid < 1 {
                    page[0..4].copy_from_slice(&1u32.to_le_bytes());
                }
                Ok(())
            }
        }
        0x03 => {
            if !nsid_valid(nsid) || nsid == BROADCAST {
                Err(Status::INVALID_NAMESPACE.with_dnr())
            } else if nsid != 1 {
                // QEMU: Invalid Field, where the specification asks for
                // Invalid Namespace.
                Err(Status::INVALID_FIELD.with_dnr())
            } else {
                // No UUID or EUI-64 (QEMU sets them only for nvme-ns
                // devices): the Command Set Identifier alone, NVM.
                page[0] = 0x04;
                page[1] = 0x01;
                Ok(())
            }
        }
        // I/O command set specific namespace (NVM: all zero here).
        0x05 | 0x1b => {
            if !nsid_valid(nsid) || nsid == BROADCAST {
                Err(Status::INVALID_NAMESPACE.with_dnr())
            } else if nsid != 1 || csi == 0 {
                Ok(())
            } else {
                Err(Status::INVALID_FIELD.with_dnr())
            }
        }
        // I/O command set specific controller.
        0x06 => match csi {
            0 => {
                page[0] = io::VSL;
                page[4..8].copy_from_slice(&io::dmrsl(c.ns.block_size).to_le_bytes());
                Ok(())
            }
            2 => Ok(()),
            _ => Err(Status::INVALID_FIELD.with_dnr()),
        },
        // I/O command set specific active / allocated namespace lists.
        0x07 | 0x1a => {
            if nsid >= BROADCAST - 1 {
                Err(Status::INVALID_NAMESPACE.with_dnr())
            } else if csi != 0 && csi != 2 {
                Err(Status::INVALID_FIELD.with_dnr())
            } else {
                if nsid < 1 && csi == 0 {
                    page[0..4].copy_from_slice(&1u32.to_le_bytes());
                }
                Ok(())
            }
        }
        // Controller lists need a subsystem, which this controller lacks.
        0x12 | 0x13 => Err(Status::INVALID_FIELD.with_dnr()),
        // Primary controller capabilities.
        0x14 => {
            // CRT: queue and interrupt resources; VQPRT: 65 queues and
            // VIPRT: every vector, both private; granularity 1; nothing
            // flexible (no SR-IOV).
            page[4] = 0x3;
            page[42..44].copy_from_slice(&(IO_QUEUE_PAIRS as u16 + 1).to_le_bytes());
            page[46..48].copy_from_slice(&1u16.to_le_bytes());
            page[74..76].copy_from_slice(&shared.fixed.vectors.to_le_bytes());
            page[78..80].copy_from_slice(&1u16.to_le_bytes());
            Ok(())
        }
        // Secondary controller list: empty.
        0x15 => Ok(()),
        // I/O command set combinations: NVM and Zoned.
        0x1c => {
            page[0] = 0x1 | 0x4;
            Ok(())
        }
        _ => Err(Status::INVALID_FIELD.with_dnr()),
    };
    match status {
        Ok(()) => c2h(c, ctx, cmd, &page),
        Err(s) => s,
    }
}
