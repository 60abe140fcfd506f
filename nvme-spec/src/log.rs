//! Log pages (SMART / Health, Error Information) and the Asynchronous Event
//! Request completion.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The SMART / Health Information log page (log identifier 0x02).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SmartLog {
    /// Critical Warning bits.
    pub critical_warning: u8,
    /// Composite Temperature in kelvin (little-endian, unaligned).
    pub temperature: [u8; 2],
    /// Available Spare, percent.
    pub available_spare: u8,
    /// Available Spare Threshold, percent.
    pub available_spare_threshold: u8,
    /// Percentage Used.
    pub percentage_used: u8,
    /// Endurance Group Critical Warning Summary.
    pub endurance_group_warning: u8,
    /// Reserved.
    pub rsvd7: [u8; 25],
    /// Data Units Read (thousands of 512-byte units, 128-bit).
    pub data_units_read: [u8; 16],
    /// Data Units Written.
    pub data_units_written: [u8; 16],
    /// Host Read Commands.
    pub host_read_commands: [u8; 16],
    /// Host Write Commands.
    pub host_write_commands: [u8; 16],
    /// Controller Busy Time (minutes).
    pub controller_busy_time: [u8; 16],
    /// Power Cycles.
    pub power_cycles: [u8; 16],
    /// Power On Hours.
    pub power_on_hours: [u8; 16],
    /// Unsafe Shutdowns.
    pub unsafe_shutdowns: [u8; 16],
    /// Media and Data Integrity Errors.
    pub media_errors: [u8; 16],
    /// Number of Error Information Log Entries.
    pub error_log_entries: [u8; 16],
    /// Warning Composite Temperature Time (minutes).
    pub warning_temperature_time: u32,
    /// Critical Composite Temperature Time (minutes).
    pub critical_temperature_time: u32,
    /// Temperature Sensors 1 to 8 (kelvin).
    pub temperature_sensors: [u16; 8],
    /// Thermal Management Temperature 1 and 2 transition counts.
    pub thermal_transition_counts: [u32; 2],
    /// Total time in thermal management temperatures 1 and 2.
    pub thermal_total_times: [u32; 2],
    /// Reserved.
    pub rsvd232: [u8; 280],
}

const _: () = assert!(size_of::<SmartLog>() == 512);

impl SmartLog {
    /// The composite temperature in kelvin.
    pub fn temperature_kelvin(&self) -> u16 {
        u16::from_le_bytes(self.temperature)
    }
}

/// A 128-bit little-endian counter of a log page, as a `u128`.
pub fn counter(bytes: [u8; 16]) -> u128 {
    u128::from_le_bytes(bytes)
}

/// One entry of the Error Information log page (log identifier 0x01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ErrorLogEntry {
    /// Error Count: unique and increasing; 0 marks an unused entry.
    pub error_count: u64,
    /// Submission Queue ID of the failed command.
    pub sq_id: u16,
    /// Command ID of the failed command.
    pub cid: u16,
    /// Status Field of the failed command (with the phase tag bit).
    pub status: u16,
    /// Parameter Error Location.
    pub parameter_error_location: u16,
    /// LBA of the first failed block.
    pub lba: u64,
    /// Namespace.
    pub nsid: u32,
    /// Vendor Specific Information Available.
    pub vendor_specific: u8,
    /// Transport Type.
    pub transport_type: u8,
    /// Reserved.
    pub rsvd30: [u8; 2],
    /// Command Specific Information.
    pub command_specific: u64,
    /// Transport Type Specific Information.
    pub transport_specific: u16,
    /// Reserved.
    pub rsvd42: [u8; 22],
}

const _: () = assert!(size_of::<ErrorLogEntry>() == 64);

/// The Firmware Slot Information log page (log identifier 0x03).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct FirmwareSlotLog {
    /// Active Firmware Info: the running slot (bits 2:0) and the slot
    /// activated at the next reset (bits 6:4).
    pub afi: u8,
    /// Reserved.
    pub rsvd1: [u8; 7],
    /// Firmware Revision of slots 1 to 7 (ASCII, space-padded).
    pub frs: [[u8; 8]; 7],
    /// Reserved.
    pub rsvd64: [u8; 448],
}

const _: () = assert!(size_of::<FirmwareSlotLog>() == 512);

/// The result (dword 0) of an Asynchronous Event Request's completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncEvent(pub u32);

impl AsyncEvent {
    /// Asynchronous Event Type (bits 2:0): 0 error, 1 SMART/health,
    /// 2 notice, 6 I/O command set specific, 7 vendor specific.
    pub const fn event_type(self) -> u8 {
        (self.0 & 0x7) as u8
    }
    /// Asynchronous Event Information (bits 15:8).
    pub const fn info(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// The log page to read to clear the event (bits 23:16).
    pub const fn log_page(self) -> u8 {
        (self.0 >> 16) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn smart_and_error_log_fields_are_at_the_specification_offsets() {
        assert_eq!(offset_of!(SmartLog, data_units_read), 32);
        assert_eq!(offset_of!(SmartLog, error_log_entries), 176);
        assert_eq!(offset_of!(SmartLog, warning_temperature_time), 192);
        assert_eq!(offset_of!(SmartLog, temperature_sensors), 200);
        assert_eq!(offset_of!(SmartLog, thermal_total_times), 224);
        assert_eq!(offset_of!(ErrorLogEntry, status), 12);
        assert_eq!(offset_of!(ErrorLogEntry, nsid), 24);
        assert_eq!(offset_of!(ErrorLogEntry, command_specific), 32);
        let e = AsyncEvent(0x0002_0101);
        assert_eq!((e.event_type(), e.info(), e.log_page()), (1, 1, 2));
        assert_eq!(
            counter([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            (1 << 120) | 1
        );
    }
}
