//! BAR access while memory decode is off (the command register's Memory
//! Space bit cleared through config space).

use crate::Env;
use anyhow::{Result, ensure};
use vfio_core::{Device, Errno, ErrorKind, MappedRegion, VfioBackend, region};

fn is_eio(e: &vfio_core::Error) -> bool {
    e.kind() == ErrorKind::Io && e.errno() == Some(Errno::EIO)
}

/// With memory decode off, reading or writing a BAR through the device file
/// fails with EIO (vfio-pci does not answer all-ones); with decode back on
/// the same read sees the registers.
pub fn bar_file_access_with_memory_decode_off_is_eio<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let d = &o.device;
    d.write_config(0x04, &[0x04, 0x00])?;
    let mut buf = [0u8; 4];
    let e = d
        .read_region(region::BAR0, 0, &mut buf)
        .expect_err("BAR read with decode off");
    ensure!(is_eio(&e), "read: {e} ({:?})", e.errno());
    ensure!(buf == [0; 4], "the failed read filled {buf:x?}");
    let e = d
        .write_region(region::BAR0, 0x04, &[1, 2, 3, 4])
        .expect_err("BAR write with decode off");
    ensure!(is_eio(&e), "write: {e} ({:?})", e.errno());
    d.write_config(0x04, &[0x06, 0x00])?;
    d.read_region(region::BAR0, 0, &mut buf)?;
    ensure!(u32::from_le_bytes(buf) == 0x0100_00ed, "id {buf:x?}");
    Ok(())
}

/// With memory decode off, a mapped BAR refuses reads and writes with EIO
/// (`ErrorKind::Io`) instead of touching the mapping, where Linux 6.1 would
/// raise SIGBUS; with decode back on the mapping works again, and a write
/// refused while decode was off never reached the device.
pub fn mapped_bar_access_with_memory_decode_off_is_eio<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let d = &o.device;
    let bar = d.map_region(region::BAR0)?;
    bar.write_u32(0x04, 0x0f0f_0f0f)?;
    d.write_config(0x04, &[0x00, 0x00])?;
    let e = bar.read_u32(0x00).expect_err("read with decode off");
    ensure!(is_eio(&e), "read: {e} ({:?})", e.errno());
    let e = bar
        .write_u32(0x04, 0x1234_5678)
        .expect_err("write with decode off");
    ensure!(is_eio(&e), "write: {e} ({:?})", e.errno());
    d.set_bus_master(true)?;
    let e = bar.read_u8(0x00).expect_err("read with only bus master on");
    ensure!(is_eio(&e), "read after bus master: {e} ({:?})", e.errno());
    d.write_config(0x04, &[0x06, 0x00])?;
    let id = bar.read_u32(0x00)?;
    ensure!(id == 0x0100_00ed, "id {id:#x}");
    let liveness = bar.read_u32(0x04)?;
    ensure!(liveness == !0x0f0f_0f0f, "liveness {liveness:#x}");
    Ok(())
}

/// A reset with memory decode off leaves it off, and a mapped BAR still
/// refuses access with EIO afterwards (where Linux would raise SIGBUS);
/// decode back on, the mapping reaches the registers.
pub fn mapped_bar_access_after_a_reset_with_decode_off_is_eio<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let d = &o.device;
    let bar = d.map_region(region::BAR0)?;
    d.write_config(0x04, &[0x00, 0x00])?;
    d.reset()?;
    let e = bar.read_u32(0x08).expect_err("read after the reset");
    ensure!(is_eio(&e), "read: {e} ({:?})", e.errno());
    d.write_config(0x04, &[0x02, 0x00])?;
    let vs = bar.read_u32(0x08)?;
    ensure!(vs == 0x0001_0400, "VS {vs:#x}");
    Ok(())
}
