//! Get and Set Features (`nvme_get_feature`, `nvme_set_feature`): the
//! features QEMU answers, their capabilities, and the values it keeps.

use super::admin::{Outcome, TEMPERATURE, TEMPERATURE_WARNING, c2h, done, h2c};
use super::events::{self, AER_SMART};
use super::io::{BROADCAST, nsid_valid};
use super::queues::Todo;
use super::{Ctrl, IO_QUEUE_PAIRS};
use crate::model::DeviceContext;
use nvme_spec::opcode::feature;
use nvme_spec::{Command, Status};
use std::time::Duration;

/// Host Behavior Support feature.
const HOST_BEHAVIOR_SUPPORT: u8 = 0x16;
/// I/O Command Set Profile feature.
const COMMAND_SET_PROFILE: u8 = 0x19;

/// Features the controller keeps across resets (QEMU's `features` and its
/// timestamp).
#[derive(Debug)]
pub(super) struct Features {
    pub(super) temp_over: u16,
    pub(super) temp_under: u16,
    async_config: u32,
    err_rec: u32,
    write_cache: bool,
    pub(super) host_behavior: Box<[u8; 512]>,
    host_timestamp: u64,
    timestamp_set_at: Duration,
}

impl Default for Features {
    fn default() -> Self {
        Self {
            temp_over: TEMPERATURE_WARNING,
            temp_under: 0,
            async_config: 0,
            err_rec: 0,
            write_cache: true,
            host_behavior: Box::new([0; 512]),
            host_timestamp: 0,
            timestamp_set_at: Duration::ZERO,
        }
    }
}

impl Features {
    /// `nvme_set_timestamp`.
    pub(super) fn set_timestamp(&mut self, ts: u64, now: Duration) {
        self.host_timestamp = ts;
        self.timestamp_set_at = now;
    }
}

/// What Set/Get Features know of a feature: supported, and its
/// capabilities (bit 0 saveable, 1 namespace-specific, 2 changeable).
fn feature_caps(fid: u8) -> Option<u32> {
    const CHANGE: u32 = 1 << 2;
    const NS: u32 = 1 << 1;
    Some(match fid {
        feature::ARBITRATION
        | feature::POWER_MANAGEMENT
        | feature::NUMBER_OF_QUEUES
        | feature::INTERRUPT_COALESCING
        | feature::INTERRUPT_VECTOR_CONFIG
        | feature::WRITE_ATOMICITY => {
            if fid == feature::NUMBER_OF_QUEUES {
                CHANGE
            } else {
                0
            }
        }
        feature::TEMPERATURE_THRESHOLD
        | feature::VOLATILE_WRITE_CACHE
        | feature::ASYNC_EVENT_CONFIG
        | feature::TIMESTAMP
        | HOST_BEHAVIOR_SUPPORT
        | COMMAND_SET_PROFILE => CHANGE,
        feature::ERROR_RECOVERY => CHANGE | NS,
        _ => return None,
    })
}

pub(super) fn get_features(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Outcome {
    let fid = (cmd.cdw10 & 0xff) as u8;
    let sel = (cmd.cdw10 >> 8) & 0x7;
    let dw11 = cmd.cdw11;
    let nsid = cmd.nsid;
    let Some(caps) = feature_caps(fid) else {
        return done(Status::INVALID_FIELD.with_dnr());
    };
    if caps & 2 != 0 {
        if !nsid_valid(nsid) || nsid == BROADCAST {
            return done(Status::INVALID_NAMESPACE.with_dnr());
        }
        if nsid != 1 {
            return done(Status::INVALID_FIELD.with_dnr());
        }
    }
    let current = match sel {
        0 => true,
        // Saved reads the defaults (nothing is saveable).
        1 | 2 => false,
        3 => return Some((Status::SUCCESS, caps)),
        // 4 to 7 are reserved; QEMU treats them as "current".
        _ => true,
    };
    let composite = (dw11 >> 16) & 0xf == 0;
    let thsel = (dw11 >> 20) & 0x3;
    if current {
        match fid {
            feature::TEMPERATURE_THRESHOLD => {
                if !composite {
                    return Some((Status::SUCCESS, 0));
                }
                return match thsel {
                    0 => Some((Status::SUCCESS, c.features.temp_over.into())),
                    1 => Some((Status::SUCCESS, c.features.temp_under.into())),
                    _ => done(Status::INVALID_FIELD.with_dnr()),
                };
            }
            feature::ERROR_RECOVERY => return Some((Status::SUCCESS, c.features.err_rec)),
            feature::VOLATILE_WRITE_CACHE => {
                return Some((Status::SUCCESS, u32::from(c.features.write_cache)));
            }
            feature::ASYNC_EVENT_CONFIG => {
                return Some((Status::SUCCESS, c.features.async_config));
            }
            feature::TIMESTAMP => {
                let elapsed = ctx.now().saturating_sub(c.features.timestamp_set_at);
                let ms = c
                    .features
                    .host_timestamp
                    .wrapping_add(elapsed.as_millis() as u64);
                let mut ts = ms & ((1 << 48) - 1);
                if c.features.host_timestamp != 0 {
                    ts |= 1 << 49;
                }
                return done(c2h(c, ctx, cmd, &ts.to_le_bytes()));
            }
            HOST_BEHAVIOR_SUPPORT => {
                let hbs = *c.features.host_behavior;
                return done(c2h(c, ctx, cmd, &hbs));
            }
            _ => {}
        }
    }
    let result = match fid {
        feature::TEMPERATURE_THRESHOLD if composite && thsel == 0 => TEMPERATURE_WARNING.into(),
        // Both counts are always the maximum, 64 I/O queues (0's based).
        feature::NUMBER_OF_QUEUES => (IO_QUEUE_PAIRS - 1) | ((IO_QUEUE_PAIRS - 1) << 16),
        feature::INTERRUPT_VECTOR_CONFIG => {
            let iv = dw11 & 0xffff;
            if iv > IO_QUEUE_PAIRS {
                return done(Status::INVALID_FIELD.with_dnr());
            }
            // Coalescing disable is reported for the admin CQ's vector, 0.
            if iv == 0 { iv | (1 << 16) } else { iv }
        }
        // Arbitration: no burst limit.
        feature::ARBITRATION => 0x7,
        _ => 0,
    };
    Some((Status::SUCCESS, result))
}

pub(super) fn set_features(
    c: &mut Ctrl,
    ctx: &DeviceContext<'_>,
    cmd: &Command,
    todo: &mut Todo,
) -> Outcome {
    let fid = (cmd.cdw10 & 0xff) as u8;
    let save = cmd.cdw10 >> 31 != 0;
    let dw11 = cmd.cdw11;
    let nsid = cmd.nsid;
    let caps = feature_caps(fid);
    if save && caps.unwrap_or(0) & 1 == 0 {
        return done(Status::FEATURE_NOT_SAVEABLE.with_dnr());
    }
    let Some(caps) = caps else {
        return done(Status::INVALID_FIELD.with_dnr());
    };
    if caps & 2 != 0 {
        if nsid != BROADCAST {
            if !nsid_valid(nsid) {
                return done(Status::INVALID_NAMESPACE.with_dnr());
            }
            if nsid != 1 {
                return done(Status::INVALID_FIELD.with_dnr());
            }
        }
    } else if nsid != 0 && nsid != BROADCAST {
        if !nsid_valid(nsid) {
            return done(Status::INVALID_NAMESPACE.with_dnr());
        }
        return done(Status::FEATURE_NOT_NS_SPECIFIC.with_dnr());
    }
    if caps & 4 == 0 {
        return done(Status::FEATURE_NOT_CHANGEABLE.with_dnr());
    }
    match fid {
        feature::TEMPERATURE_THRESHOLD => {
            if (dw11 >> 16) & 0xf == 0 {
                match (dw11 >> 20) & 0x3 {
                    0 => c.features.temp_over = dw11 as u16,
                    1 => c.features.temp_under = dw11 as u16,
                    _ => return done(Status::INVALID_FIELD.with_dnr()),
                }
                if TEMPERATURE >= c.features.temp_over || TEMPERATURE <= c.features.temp_under {
                    // A SMART temperature event, if the host enabled it.
                    if c.features.async_config & (1 << 1) != 0 {
                        events::enqueue_event(c, AER_SMART, 0x01, 0x02, todo);
                    }
                }
            }
        }
        // Error recovery is stored (the namespace supports DULBE), but
        // the check it enables is not modelled.
        feature::ERROR_RECOVERY => c.features.err_rec = dw11,
        feature::VOLATILE_WRITE_CACHE => c.features.write_cache = dw11 & 1 != 0,
        feature::NUMBER_OF_QUEUES => {
            if c.qs_created {
                return done(Status::COMMAND_SEQUENCE_ERROR.with_dnr());
            }
            if dw11 & 0xffff == 0xffff || dw11 >> 16 == 0xffff {
                return done(Status::INVALID_FIELD.with_dnr());
            }
            // Whatever was asked, the controller allocates its maximum.
            return Some((
                Status::SUCCESS,
                (IO_QUEUE_PAIRS - 1) | ((IO_QUEUE_PAIRS - 1) << 16),
            ));
        }
        feature::ASYNC_EVENT_CONFIG => c.features.async_config = dw11,
        feature::TIMESTAMP => {
            let mut ts = [0u8; 8];
            let s = h2c(c, ctx, cmd, &mut ts);
            if !s.is_success() {
                return done(s);
            }
            c.features.set_timestamp(u64::from_le_bytes(ts), ctx.now());
        }
        HOST_BEHAVIOR_SUPPORT => {
            let mut hbs = [0u8; 512];
            let s = h2c(c, ctx, cmd, &mut hbs);
            if s.is_success() {
                *c.features.host_behavior = hbs;
            }
            return done(s);
        }
        COMMAND_SET_PROFILE => {
            if dw11 & 0x1ff != 0 {
                return done(Status::COMMAND_SET_COMBINATION_REJECTED.with_dnr());
            }
        }
        _ => return done(Status::FEATURE_NOT_CHANGEABLE.with_dnr()),
    }
    done(Status::SUCCESS)
}
