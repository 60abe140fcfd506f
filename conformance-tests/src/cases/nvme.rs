//! The NVMe driver on QEMU's NVMe controller: what it identifies as, data
//! that reads back as written across PRP and queue boundaries, one vector
//! per queue, and the exact status QEMU completes each bad command with.
//!
//! The values pinned here are those QEMU 7.2's NVMe (`-device
//! nvme,serial=vfio0001` with a 64 MiB raw drive) returns through Linux
//! 6.1's vfio-pci in the guest.

use crate::{Env, IommuFaultRecord, Mode, not_applicable};
use anyhow::{Context, Result, bail, ensure};
use nvme::{CompletionMode, DmaBuffer, Nvme, NvmeError, Options};
use nvme_spec::identify::{CNS_CONTROLLER, IdentifyController, IdentifyNamespace};
use nvme_spec::opcode::{admin, feature, nvm};
use nvme_spec::{Command, Status};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vfio_core::{DmaMemory, Interrupt, VfioBackend};

/// How long a command may take in the cases: QEMU under TCG answers in
/// milliseconds.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The driver on the guest's NVMe, in the run's mode (it holds the
/// device's IOMMU context, and with it the group or iommufd).
struct Driven<B: VfioBackend> {
    nvme: Nvme<B>,
}

impl<B: VfioBackend> std::ops::Deref for Driven<B> {
    type Target = Nvme<B>;
    fn deref(&self) -> &Nvme<B> {
        &self.nvme
    }
}

impl<B: VfioBackend> std::ops::DerefMut for Driven<B> {
    fn deref_mut(&mut self) -> &mut Nvme<B> {
        &mut self.nvme
    }
}

/// Brings the NVMe controller up with `io_queues` queue pairs of `depth`
/// entries.
fn driven<B: VfioBackend>(env: &Env<B>, io_queues: u16, depth: u16) -> Result<Driven<B>> {
    let crate::Opened { device, dma } = env.open_nvme()?;
    let options = Options {
        io_queues,
        queue_depth: depth,
        admin_timeout: TIMEOUT,
        io_timeout: TIMEOUT,
        ..Options::default()
    };
    let nvme = Nvme::new(&env.backend, device, Arc::new(dma), options)
        .context("bringing the NVMe controller up")?;
    Ok(Driven { nvme })
}

/// A pattern that differs from block to block and byte to byte.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i % 253) as u8)
                .wrapping_add(seed)
                .wrapping_add((i / 512) as u8)
        })
        .collect()
}

/// The status a failed driver call completed with.
fn status_of<T: std::fmt::Debug>(what: &str, r: nvme::Result<T>) -> Result<Status> {
    match r {
        Err(NvmeError::Command { status, .. }) => Ok(status),
        Err(e) => bail!("{what}: want an error status, got {e}"),
        Ok(v) => bail!("{what}: want an error status, got success ({v:?})"),
    }
}

/// Checks that `got` is `want`, type, code and the DNR and More bits.
fn expect_status(what: &str, got: Status, want: Status) -> Result<()> {
    ensure!(
        got == want,
        "{what}: want {want} {want:?}, got {got} {got:?}"
    );
    Ok(())
}

/// ASCII, space padded, trimmed.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_owned()
}

/// The controller fields the driver and a simulated controller rely on, one
/// `name=value` per field.
fn controller_fields(c: &IdentifyController, cap: u64, vs: u32) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "cap={cap:#018x} vs={vs:#x} vid={:#06x} ssvid={:#06x} sn={:?} mn={:?} fr={:?} rab={} \
         ieee={:02x?} cmic={:#x} mdts={} cntlid={} ver={:#x} oaes={:#x} ctratt={:#x} \
         cntrltype={} oacs={:#06x} acl={} aerl={} frmw={:#x} lpa={:#x} elpe={} npss={} \
         wctemp={} cctemp={} sqes={:#04x} cqes={:#04x} maxcmd={} nn={} oncs={:#06x} \
         fuses={:#x} fna={:#x} vwc={:#x} awun={} awupf={} sgls={:#x} subnqn={:?}",
        c.vid,
        c.ssvid,
        text(&c.sn),
        text(&c.mn),
        text(&c.fr),
        c.rab,
        c.ieee,
        c.cmic,
        c.mdts,
        c.cntlid,
        c.ver,
        c.oaes,
        c.ctratt,
        c.cntrltype,
        c.oacs,
        c.acl,
        c.aerl,
        c.frmw,
        c.lpa,
        c.elpe,
        c.npss,
        c.wctemp,
        c.cctemp,
        c.sqes,
        c.cqes,
        c.maxcmd,
        c.nn,
        c.oncs,
        c.fuses,
        c.fna,
        c.vwc,
        c.awun,
        c.awupf,
        c.sgls,
        text(&c.subnqn),
    );
    s
}

/// The namespace fields, one `name=value` per field.
fn namespace_fields(ns: &IdentifyNamespace) -> String {
    let formats = &ns.lbaf[..=usize::from(ns.nlbaf).min(63)];
    format!(
        "nsze={} ncap={} nuse={} nsfeat={:#x} nlbaf={} flbas={:#x} mc={:#x} dpc={:#x} dps={:#x} \
         nmic={:#x} rescap={:#x} dlfeat={:#x} nawun={} nawupf={} npwg={} npwa={} npdg={} \
         npda={} nows={} mssrl={} mcl={} msrc={} anagrpid={} nguid={:02x?} eui64={:02x?} \
         lbaf={formats:x?}",
        ns.nsze,
        ns.ncap,
        ns.nuse,
        ns.nsfeat,
        ns.nlbaf,
        ns.flbas,
        ns.mc,
        ns.dpc,
        ns.dps,
        ns.nmic,
        ns.rescap,
        ns.dlfeat,
        ns.nawun,
        ns.nawupf,
        ns.npwg,
        ns.npwa,
        ns.npdg,
        ns.npda,
        ns.nows,
        ns.mssrl,
        ns.mcl,
        ns.msrc,
        ns.anagrpid,
        ns.nguid,
        ns.eui64,
    )
}

/// What QEMU's controller identifies as.
const QEMU_CONTROLLER: &str = "cap=0x004018200f0107ff vs=0x10400 vid=0x1b36 ssvid=0x1af4 \
    sn=\"vfio0001\" mn=\"QEMU NVMe Ctrl\" fr=\"7.2.22\" rab=6 ieee=[00, 54, 52] cmic=0x0 mdts=7 \
    cntlid=0 ver=0x10400 oaes=0x100 ctratt=0x8000 cntrltype=1 oacs=0x010a acl=3 aerl=3 \
    frmw=0x3 lpa=0x7 elpe=0 npss=0 wctemp=343 cctemp=373 sqes=0x66 cqes=0x44 maxcmd=0 nn=256 \
    oncs=0x015d fuses=0x0 fna=0x0 vwc=0x7 awun=0 awupf=0 sgls=0x1 \
    subnqn=\"nqn.2019-08.org.qemu:vfio0001\"";
/// What QEMU's namespace 1 identifies as.
const QEMU_NAMESPACE: &str = "nsze=131072 ncap=131072 nuse=131072 nsfeat=0x14 nlbaf=7 \
    flbas=0x0 mc=0x3 dpc=0x1f dps=0x0 nmic=0x0 rescap=0x0 dlfeat=0x1 nawun=0 nawupf=0 npwg=0 \
    npwa=0 npdg=7 npda=7 nows=0 mssrl=0 mcl=0 msrc=0 anagrpid=0 \
    nguid=[00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00, 00] \
    eui64=[00, 00, 00, 00, 00, 00, 00, 00] \
    lbaf=[90000, 90008, 90010, 90040, c0000, c0008, c0010, c0040]";

/// Identify Controller and Identify Namespace return QEMU's values, field
/// by field, and the driver derives its block size, namespace size and
/// longest transfer from them.
pub fn nvme_identify_returns_qemus_controller_and_namespace<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let controller = controller_fields(nvme.identify_controller(), nvme.cap().0, nvme.version());
    let namespace = namespace_fields(nvme.identify_namespace());
    ensure!(
        controller == QEMU_CONTROLLER && namespace == QEMU_NAMESPACE,
        "identify controller:\n want {QEMU_CONTROLLER}\n got  {controller}\n\
         identify namespace:\n want {QEMU_NAMESPACE}\n got  {namespace}"
    );
    let ns = nvme.namespace();
    ensure!(
        (ns.nsid, ns.blocks, ns.block_size) == (1, 131_072, 512),
        "{ns:?}"
    );
    ensure!(nvme.max_transfer() == 512 << 10, "{}", nvme.max_transfer());
    // The structure comes back the same through a second, raw Identify.
    let raw = nvme.identify_raw(CNS_CONTROLLER, 0)?;
    ensure!(
        raw == zerocopy::IntoBytes::as_bytes(nvme.identify_controller()),
        "a second Identify differs"
    );
    Ok(())
}

/// Identify of what is not namespace 1, as QEMU answers it (the status,
/// and the data's non-zero bytes as offset:value): namespace 2 (a valid
/// identifier, nothing attached) succeeds with all zeroes; namespaces 0,
/// 257 (past QEMU's 256) and the broadcast identifier are Invalid
/// Namespace or Format with DNR; the active namespace list from 0 holds
/// namespace 1 alone, and from 1 is empty; namespace 1's identification
/// descriptor list is one 4-byte descriptor of type 4 (the command set
/// identifier, 0: NVM) with nothing else, and namespace 2's is Invalid
/// Field with DNR.
pub fn nvme_identify_of_other_namespaces_is_what_qemu_returns<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let page = nvme.alloc_buffer(&env.backend, 4096)?;
    let mut got = String::new();
    for (cns, nsid) in [
        (0u32, 2u32),
        (0, 0),
        (0, 257),
        (0, 0xffff_ffff),
        (2, 0),
        (2, 1),
        (3, 1),
        (3, 2),
    ] {
        page.zero()?;
        let mut c = Command::new(admin::IDENTIFY, 0);
        c.cdw10 = cns;
        c.nsid = nsid;
        c.prp1 = page.iova();
        let status = raw_status(&nvme, 0, c)?;
        let mut data = vec![0; 4096];
        page.memory().read_at(0, &mut data)?;
        let nonzero: Vec<String> = data
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .take(24)
            .map(|(i, b)| format!("{i}:{b:02x}"))
            .collect();
        let _ = write!(
            got,
            "cns{cns}/ns{nsid:#x}={status:?}[{}] ",
            nonzero.join(",")
        );
    }
    let want = "cns0/ns0x2=Status(sct 0, sc 0x00)[] \
        cns0/ns0x0=Status(sct 0, sc 0x0b, dnr)[] \
        cns0/ns0x101=Status(sct 0, sc 0x0b, dnr)[] \
        cns0/ns0xffffffff=Status(sct 0, sc 0x0b, dnr)[] \
        cns2/ns0x0=Status(sct 0, sc 0x00)[0:01] \
        cns2/ns0x1=Status(sct 0, sc 0x00)[] \
        cns3/ns0x1=Status(sct 0, sc 0x00)[0:04,1:01] \
        cns3/ns0x2=Status(sct 0, sc 0x02, dnr)[]";
    ensure!(
        got.trim_end() == want,
        "\n want {want}\n got  {}",
        got.trim_end()
    );
    Ok(())
}

/// Set Features (Number of Queues) answers with what QEMU allocated (64
/// pairs, 0's based 63 each) whatever was asked, and Get Features returns
/// the same; the driver uses what it asked for.
pub fn nvme_number_of_queues_grants_qemus_64_pairs<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let nvme = driven(env, 3, 16)?;
    ensure!(
        nvme.queues_granted() == 0x003f_003f,
        "Set Features result {:#010x}",
        nvme.queues_granted()
    );
    ensure!(nvme.io_queue_count() == 3, "{}", nvme.io_queue_count());
    let got = nvme.get_features(feature::NUMBER_OF_QUEUES)?;
    ensure!(got == 0x003f_003f, "Get Features result {got:#010x}");
    Ok(())
}

/// One transfer of the PRP cases: buffer offset, length in bytes.
const TRANSFERS: [(usize, usize); 8] = [
    (0, 512),                   // PRP1 alone, a block
    (0, 4096),                  // PRP1 alone, a page
    (512, 4096),                // PRP1 and PRP2, crossing one page boundary
    (0, 8192),                  // PRP1 and PRP2, two whole pages
    (0, 3 * 4096),              // PRP1 and a list of two entries
    (2048, 3 * 4096),           // a list of three entries, PRP1 mid-page
    (0, 512 << 10),             // MDTS: a list of 127 entries
    (3584, (512 << 10) - 4096), // PRP1 with 512 bytes, then 127 list entries
];

/// Writes then reads back transfers that need PRP1 alone, PRP1 and PRP2,
/// and PRP lists up to MDTS (512 KiB, 127 list entries), with the first
/// page starting mid-page: every byte comes back, and the read touches
/// nothing of its buffer outside the range it was given.
pub fn nvme_writes_read_back_across_prp_list_boundaries<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let size = (512 << 10) + 8192;
    let out: DmaBuffer<B> = nvme.alloc_buffer(&env.backend, size)?;
    let back = nvme.alloc_buffer(&env.backend, size)?;
    let mut lba = 1024;
    for (i, &(offset, len)) in TRANSFERS.iter().enumerate() {
        let data = pattern(len, i as u8);
        out.memory().write_at(offset, &data)?;
        nvme.write_dma(1, lba, &out, offset, len)
            .with_context(|| format!("write of {len} bytes at buffer offset {offset}"))?;
        back.memory().write_at(0, &vec![0xee; size])?;
        nvme.read_dma(1, lba, &back, offset, len)
            .with_context(|| format!("read of {len} bytes at buffer offset {offset}"))?;
        let mut got = vec![0; size];
        back.memory().read_at(0, &mut got)?;
        ensure!(
            got[offset..offset + len] == data[..],
            "{len} bytes at offset {offset} read back differently"
        );
        ensure!(
            got[..offset]
                .iter()
                .chain(&got[offset + len..])
                .all(|&b| b == 0xee),
            "the read of {len} bytes at offset {offset} wrote outside its range"
        );
        lba += (len / 512) as u64 + 8;
    }
    Ok(())
}

/// With 8-entry queues, 27 writes each read back (54 commands in sequence)
/// wrap the submission and completion queues six times over (the phase
/// tag flips at each wrap) and every
/// write reads back; 7 commands submitted at once fill the queue (one
/// entry stays empty), an eighth is refused by the driver as queue full
/// unless completions have freed entries (the controller's SQ head), and
/// all complete with their own command identifiers.
pub fn nvme_io_wraps_the_queues_and_never_overfills_one<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 8)?;
    ensure!(nvme.queue_entries(1)? == 8, "{}", nvme.queue_entries(1)?);
    for i in 0..27u64 {
        let data = pattern(1024, i as u8);
        nvme.write(1, 2048 + 2 * i, &data)?;
        let mut back = vec![0; 1024];
        nvme.read(1, 2048 + 2 * i, &mut back)?;
        ensure!(back == data, "command pair {i} read back differently");
    }
    let buf = nvme.alloc_buffer(&env.backend, 8 * 512)?;
    let mut tickets = Vec::new();
    for i in 0..7u64 {
        let mut c = Command::new(nvm::READ, 0);
        c.nsid = 1;
        c.prp1 = buf.iova() + 512 * i;
        c.set_slba(2048 + 2 * i);
        tickets.push(nvme.submit_raw(1, c)?);
    }
    let mut c = Command::new(nvm::READ, 0);
    c.nsid = 1;
    c.prp1 = buf.iova();
    // QEMU may have consumed entries meanwhile (its SQ head frees them), so
    // the eighth is refused only while the seven are outstanding as far as
    // the driver has seen.
    match nvme.submit_raw(1, c) {
        Err(NvmeError::QueueFull(1)) => {}
        Ok(t) => {
            let cqe = nvme.wait(&t)?;
            ensure!(cqe.status().is_success(), "{}", cqe.status());
        }
        Err(e) => bail!("the eighth submission: {e}"),
    }
    let mut cids = Vec::new();
    for t in &tickets {
        let cqe = nvme.wait(t)?;
        ensure!(
            cqe.status().is_success(),
            "{}: {}",
            t.command(),
            cqe.status()
        );
        ensure!(cqe.cid == t.command().cid, "completion for {:#x}", cqe.cid);
        cids.push(cqe.cid);
    }
    cids.sort_unstable();
    cids.dedup();
    ensure!(cids.len() == 7, "command identifiers reused: {cids:x?}");
    let mut got = vec![0; 7 * 512];
    buf.memory().read_at(0, &mut got)?;
    for i in 0..7 {
        let want = pattern(1024, i as u8);
        ensure!(got[512 * i..512 * (i + 1)] == want[..512], "read {i}");
    }
    Ok(())
}

/// Flush succeeds; a controller reset (CC.EN cleared and set again, queues
/// created anew) mid-run fails the command that was in flight across it
/// with the driver's reset error, and what was written before it reads
/// back after.
pub fn nvme_a_reset_mid_run_fails_what_was_in_flight_and_keeps_what_was_written<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let mut nvme = driven(env, 2, 16)?;
    let data = pattern(8192, 0x42);
    nvme.write(1, 4096, &data)?;
    nvme.write(2, 4112, &data)?;
    nvme.flush(1)?;
    nvme.flush(2)?;
    let mut c = Command::new(nvm::FLUSH, 0);
    c.nsid = 1;
    let in_flight = nvme.submit_raw(2, c)?;
    nvme.reset()?;
    match nvme.wait(&in_flight) {
        Err(NvmeError::Reset(cmd)) if cmd == in_flight.command() => {}
        other => bail!("the command in flight across the reset: {other:?}"),
    }
    for (qid, lba) in [(1, 4096), (2, 4112)] {
        let mut back = vec![0; data.len()];
        nvme.read(qid, lba, &mut back)?;
        ensure!(back == data, "LBA {lba} after the reset");
    }
    ensure!(
        nvme.queues_granted() == 0x003f_003f,
        "{:#x}",
        nvme.queues_granted()
    );
    Ok(())
}

/// Write Zeroes makes blocks read back as zeroes and leaves its
/// neighbours; deallocated blocks read back as QEMU returns them on a raw
/// drive without discard: with the data they had (DLFEAT says zeroes, but
/// the drive ignores the discard).
pub fn nvme_write_zeroes_and_deallocate_read_back_as_qemu_returns_them<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    ensure!(
        nvme.namespace().dlfeat == 0x1,
        "{}",
        nvme.namespace().dlfeat
    );
    let data = pattern(16 * 512, 0x17);
    nvme.write(1, 6000, &data)?;
    nvme.write_zeroes(1, 6002, 4)?;
    let mut back = vec![0; data.len()];
    nvme.read(1, 6000, &mut back)?;
    ensure!(back[..1024] == data[..1024], "before the zeroed blocks");
    ensure!(
        back[1024..3072].iter().all(|&b| b == 0),
        "the zeroed blocks"
    );
    ensure!(back[3072..] == data[3072..], "after the zeroed blocks");
    nvme.deallocate(1, &[(6008, 4), (6013, 1)])?;
    nvme.read(1, 6000, &mut back)?;
    ensure!(
        back[4096..] == data[4096..],
        "deallocated blocks read back changed: {:02x?}",
        &back[4096..4112]
    );
    Ok(())
}

/// Each queue's completions raise its own MSI-X vector and no other: the
/// admin queue vector 0, I/O queue `i` vector `i`, interrupt-driven and
/// polled alike.
pub fn nvme_each_queue_completes_on_its_own_vector<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let mut nvme = driven(env, 4, 16)?;
    let drain = |nvme: &Nvme<B>| -> Result<()> {
        for q in 0..=4 {
            nvme.interrupt(q)?.try_consume()?;
        }
        Ok(())
    };
    let fired = |nvme: &Nvme<B>| -> Result<Vec<u16>> {
        let mut out = Vec::new();
        for q in 0..=4 {
            if nvme.interrupt(q)?.try_consume()?.is_some() {
                out.push(q);
            }
        }
        Ok(out)
    };
    for mode in [CompletionMode::Polled, CompletionMode::Interrupt] {
        nvme.set_completion_mode(mode);
        drain(&nvme)?;
        nvme.get_features(feature::NUMBER_OF_QUEUES)?;
        // A polled wait leaves the vector's count; an interrupt-driven one
        // may have consumed it (when the entry was not there at first look).
        std::thread::sleep(Duration::from_millis(20));
        let admin = fired(&nvme)?;
        let allowed = |got: &[u16], q: u16| match mode {
            CompletionMode::Polled => got == [q],
            CompletionMode::Interrupt => got.iter().all(|&v| v == q),
        };
        ensure!(allowed(&admin, 0), "{mode:?} admin command fired {admin:?}");
        for q in 1..=4 {
            drain(&nvme)?;
            let mut back = vec![0; 512];
            nvme.read(q, u64::from(q), &mut back)?;
            std::thread::sleep(Duration::from_millis(20));
            let got = fired(&nvme)?;
            ensure!(
                allowed(&got, q),
                "{mode:?} read on queue {q} fired vectors {got:?}"
            );
        }
    }
    Ok(())
}

/// A read past the end of the namespace, and one straddling it, complete
/// with LBA Out of Range and Do Not Retry.
pub fn nvme_read_past_the_end_is_lba_out_of_range<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let end = nvme.namespace().blocks;
    let mut back = vec![0; 1024];
    let got = status_of("read at the end", nvme.read(1, end, &mut back[..512]))?;
    expect_status("read at the end", got, Status::LBA_OUT_OF_RANGE.with_dnr())?;
    let got = status_of("read across the end", nvme.read(1, end - 1, &mut back))?;
    expect_status(
        "read across the end",
        got,
        Status::LBA_OUT_OF_RANGE.with_dnr(),
    )?;
    let got = status_of("write at the end", nvme.write(1, end, &back[..512]))?;
    expect_status("write at the end", got, Status::LBA_OUT_OF_RANGE.with_dnr())?;
    nvme.read(1, end - 1, &mut back[..512])?;
    Ok(())
}

/// Runs `command` on `qid` through the raw path and returns its status.
fn raw_status<B: VfioBackend>(nvme: &Nvme<B>, qid: u16, command: Command) -> Result<Status> {
    Ok(nvme.execute_raw(qid, command)?.status())
}

/// Opcodes no command set defines complete with Invalid Command Opcode and
/// DNR, on the admin queue and on an I/O queue.
pub fn nvme_an_invalid_opcode_is_invalid_command_opcode<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let mut c = Command::new(0x7f, 0);
    c.nsid = 1;
    let got = raw_status(&nvme, 1, c)?;
    expect_status("I/O opcode 0x7f", got, Status::INVALID_OPCODE.with_dnr())?;
    let got = raw_status(&nvme, 0, Command::new(0x7e, 0))?;
    expect_status("admin opcode 0x7e", got, Status::INVALID_OPCODE.with_dnr())?;
    Ok(())
}

/// I/O to namespace 0 is Invalid Namespace or Format; to namespace 2,
/// which is a valid identifier with no namespace attached, Invalid Field;
/// to the broadcast identifier, Invalid Field too. All with DNR.
pub fn nvme_io_to_an_invalid_namespace_is_refused<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let buf = nvme.alloc_buffer(&env.backend, 512)?;
    for (nsid, want) in [
        (0, Status::INVALID_NAMESPACE.with_dnr()),
        (2, Status::INVALID_FIELD.with_dnr()),
        (0xffff_ffff, Status::INVALID_FIELD.with_dnr()),
    ] {
        let mut c = Command::new(nvm::READ, 0);
        c.nsid = nsid;
        c.prp1 = buf.iova();
        let got = raw_status(&nvme, 1, c)?;
        expect_status(&format!("read of namespace {nsid:#x}"), got, want)?;
    }
    Ok(())
}

/// Create I/O Completion Queue with `qid`, `entries` (1's based) and the
/// CQ memory at `iova`.
fn create_cq(qid: u16, entries: u32, iova: u64) -> Command {
    let mut c = Command::new(admin::CREATE_CQ, 0);
    c.prp1 = iova;
    c.cdw10 = (entries.wrapping_sub(1) << 16) | u32::from(qid);
    c.cdw11 = 1;
    c
}

/// Creating a queue with identifier 0, or above the 64 pairs QEMU has, is
/// Invalid Queue Identifier; one larger than CAP.MQES allows (2048
/// entries) or of one entry is Invalid Queue Size; a submission queue on
/// a completion queue that does not exist is Completion Queue Invalid. All
/// with DNR. A queue of MQES + 1 entries is created.
pub fn nvme_queue_creation_with_a_bad_id_or_size_is_refused<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let mqes = u32::from(nvme.cap().mqes());
    let mem = nvme.alloc_buffer(&env.backend, (mqes as usize + 2) * 64)?;
    let cases = [
        (
            "CQ 0",
            create_cq(0, 16, mem.iova()),
            Status::INVALID_QUEUE_ID,
        ),
        (
            "CQ 65",
            create_cq(65, 16, mem.iova()),
            Status::INVALID_QUEUE_ID,
        ),
        (
            "CQ of MQES + 2 entries",
            create_cq(9, mqes + 2, mem.iova()),
            Status::INVALID_QUEUE_SIZE,
        ),
        (
            "CQ of 1 entry",
            create_cq(9, 1, mem.iova()),
            Status::INVALID_QUEUE_SIZE,
        ),
    ];
    for (what, c, want) in cases {
        let got = raw_status(&nvme, 0, c)?;
        expect_status(what, got, want.with_dnr())?;
    }
    let mut sq = Command::new(admin::CREATE_SQ, 0);
    sq.prp1 = mem.iova();
    sq.cdw10 = (15 << 16) | 9;
    sq.cdw11 = (9 << 16) | 1;
    let got = raw_status(&nvme, 0, sq)?;
    expect_status("SQ 9 on CQ 9", got, Status::CQ_INVALID.with_dnr())?;
    let got = raw_status(&nvme, 0, create_cq(9, mqes + 1, mem.iova()))?;
    expect_status("CQ of MQES + 1 entries", got, Status::SUCCESS)?;
    let mut del = Command::new(admin::DELETE_CQ, 0);
    del.cdw10 = 9;
    expect_status("delete CQ 9", raw_status(&nvme, 0, del)?, Status::SUCCESS)?;
    Ok(())
}

/// Deleting a submission queue that does not exist is Invalid Queue
/// Identifier, a completion queue that does not exist Completion Queue
/// Invalid, the admin queues too; deleting a completion queue a
/// submission queue still uses is Invalid Queue Deletion, without DNR
/// (deleting the SQ first makes it work). The others with DNR; the queues
/// in use keep working.
pub fn nvme_deleting_a_queue_that_does_not_exist_is_invalid_queue_id<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let delete = |opcode, qid: u16| {
        let mut c = Command::new(opcode, 0);
        c.cdw10 = u32::from(qid);
        c
    };
    for (what, c, want) in [
        (
            "SQ 5",
            delete(admin::DELETE_SQ, 5),
            Status::INVALID_QUEUE_ID,
        ),
        (
            "SQ 0",
            delete(admin::DELETE_SQ, 0),
            Status::INVALID_QUEUE_ID,
        ),
        (
            "SQ 100",
            delete(admin::DELETE_SQ, 100),
            Status::INVALID_QUEUE_ID,
        ),
        ("CQ 5", delete(admin::DELETE_CQ, 5), Status::CQ_INVALID),
        ("CQ 0", delete(admin::DELETE_CQ, 0), Status::CQ_INVALID),
        (
            "CQ 1, in use",
            delete(admin::DELETE_CQ, 1),
            Status::INVALID_QUEUE_DELETION,
        ),
    ] {
        // QEMU sets DNR on every refusal but the one for a queue in use.
        let want = if want == Status::INVALID_QUEUE_DELETION {
            want
        } else {
            want.with_dnr()
        };
        let got = raw_status(&nvme, 0, c)?;
        expect_status(&format!("delete {what}"), got, want)?;
    }
    let mut back = vec![0; 512];
    nvme.read(1, 0, &mut back)?;
    Ok(())
}

/// Admin commands with a field QEMU refuses, each with the status it
/// gives, all with DNR: Identify with a CNS it does not know, Get Features
/// of feature 0 and Get Log Page of a page it does not have are Invalid
/// Field (not Invalid Log Page); a completion queue on an MSI-X vector past
/// its 65 is Invalid Interrupt Vector, one at an address that is not
/// page-aligned PRP Offset Invalid; a second queue with the identifier of
/// one in use is Invalid Queue Identifier.
pub fn nvme_admin_commands_with_bad_fields_get_qemus_status<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let page = nvme.alloc_buffer(&env.backend, 4096)?;
    let mut identify = Command::new(admin::IDENTIFY, 0);
    identify.cdw10 = 0x7f;
    identify.prp1 = page.iova();
    let mut get = Command::new(admin::GET_FEATURES, 0);
    get.cdw10 = 0;
    let mut log = Command::new(admin::GET_LOG_PAGE, 0);
    log.prp1 = page.iova();
    log.cdw10 = (127 << 16) | 0x7f;
    let mut vector = create_cq(9, 16, page.iova());
    vector.cdw11 = (65 << 16) | 0b11;
    let unaligned = create_cq(9, 16, page.iova() + 512);
    let again = create_cq(1, 16, page.iova());
    let mut sq_again = Command::new(admin::CREATE_SQ, 0);
    sq_again.prp1 = page.iova();
    sq_again.cdw10 = (15 << 16) | 1;
    sq_again.cdw11 = (1 << 16) | 1;
    for (what, c, want) in [
        ("Identify CNS 0x7f", identify, Status::INVALID_FIELD),
        ("Get Features 0", get, Status::INVALID_FIELD),
        ("Get Log Page 0x7f", log, Status::INVALID_FIELD),
        (
            "Create CQ on vector 65",
            vector,
            Status::INVALID_INTERRUPT_VECTOR,
        ),
        (
            "Create CQ at a page offset",
            unaligned,
            Status::INVALID_PRP_OFFSET,
        ),
        ("Create CQ 1 again", again, Status::INVALID_QUEUE_ID),
        ("Create SQ 1 again", sq_again, Status::INVALID_QUEUE_ID),
    ] {
        let got = raw_status(&nvme, 0, c)?;
        expect_status(what, got, want.with_dnr())?;
    }
    nvme.get_features(feature::NUMBER_OF_QUEUES)?;
    Ok(())
}

/// A PRP2 (or PRP list entry) that is not page-aligned is PRP Offset
/// Invalid with DNR, and nothing lands in memory; the same read with the
/// entries aligned succeeds.
pub fn nvme_a_prp_entry_with_a_bad_offset_is_prp_offset_invalid<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 1, 16)?;
    let buf = nvme.alloc_buffer(&env.backend, 4 * 4096)?;
    let list = nvme.alloc_buffer(&env.backend, 4096)?;
    buf.memory().write_at(0, &[0xee; 4 * 4096])?;
    let read = |blocks: u32, prp2: u64| {
        let mut c = Command::new(nvm::READ, 0);
        c.nsid = 1;
        c.prp1 = buf.iova();
        c.prp2 = prp2;
        c.cdw12 = blocks - 1;
        c
    };
    // Two pages: PRP2 is the second page, 512 bytes in.
    let got = raw_status(&nvme, 1, read(16, buf.iova() + 4096 + 512))?;
    expect_status(
        "PRP2 at a page offset",
        got,
        Status::INVALID_PRP_OFFSET.with_dnr(),
    )?;
    // Three pages: a list whose second entry is 8 bytes into its page.
    list.memory().write_u64(0, buf.iova() + 4096)?;
    list.memory().write_u64(8, buf.iova() + 2 * 4096 + 8)?;
    let got = raw_status(&nvme, 1, read(24, list.iova()))?;
    expect_status(
        "a PRP list entry at a page offset",
        got,
        Status::INVALID_PRP_OFFSET.with_dnr(),
    )?;
    let mut untouched = vec![0; 4 * 4096];
    buf.memory().read_at(0, &mut untouched)?;
    ensure!(
        untouched[4096..].iter().all(|&b| b == 0xee),
        "a refused read wrote past its first page"
    );
    list.memory().write_u64(8, buf.iova() + 2 * 4096)?;
    let got = raw_status(&nvme, 1, read(24, list.iova()))?;
    expect_status("the aligned list", got, Status::SUCCESS)?;
    Ok(())
}

/// VT-d fault reasons: a write, or a read, through an entry without the
/// permission (an unmapped IOVA has none).
const REASON_NO_WRITE: u8 = 0x05;
const REASON_NO_READ: u8 = 0x06;

/// How long a fault record may take to reach the host's log.
const FAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Before a command that faults: the kernel's log is rate-limited, and a
/// transfer QEMU's VT-d may report twice takes two faults' worth of it.
fn pace_double_fault<B: VfioBackend>(env: &Env<B>) {
    env.host.pace_fault();
    env.host.pace_fault();
}

/// Commands whose data pointer is an IOVA that is not mapped: Identify
/// and Read (the controller writes memory), Write (it reads memory). QEMU
/// 7.2 completes each successfully (its DMA helpers drop a write the IOMMU
/// refuses and read zeroes where it refuses a read: the block written
/// reads back as zeroes), and each command leaves an IOMMU fault record
/// (one, or now and then the same one twice) naming the NVMe controller,
/// the page and the direction, with reason 0x05 (no write permission) or
/// 0x06 (no read permission). The controller keeps working.
pub fn nvme_a_transfer_through_an_unmapped_iova_completes_and_the_iommu_faults<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(
        &[Mode::Type1, Mode::Iommufd],
        "an IOMMU fault (no-IOMMU mode has no IOMMU to fault)",
    )?;
    let before = env
        .host
        .iommu_faults()
        .map_err(|e| not_applicable(format!("{e:#}")))?
        .len();
    let nvme = driven(env, 1, 16)?;
    let gone = nvme.alloc_buffer(&env.backend, 4096)?;
    let iova = gone.iova();
    gone.unmap()?;
    nvme.write(1, 9000, &pattern(512, 0x99))?;
    let fault = |write, reason| IommuFaultRecord {
        requester: env.targets.nvme,
        page: iova,
        write,
        reason,
    };
    // Each faulting command's records awaited: a command leaves one
    // record, or two identical ones (QEMU's VT-d can report the same
    // refused page twice for one transfer).
    let mut seen = before;
    let mut expect_fault = |record: IommuFaultRecord| -> Result<()> {
        let start = Instant::now();
        loop {
            let all = env.host.iommu_faults()?;
            let new = all.get(seen..).unwrap_or_default().to_vec();
            if !new.is_empty() && start.elapsed() > Duration::from_millis(200) {
                ensure!(
                    new.len() <= 2 && new.iter().all(|r| *r == record),
                    "want one or two fault records {record:?}, got {new:?}"
                );
                seen = all.len();
                return Ok(());
            }
            if start.elapsed() > FAULT_TIMEOUT {
                bail!("want a fault record {record:?}, got {new:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut identify = Command::new(admin::IDENTIFY, 0);
    identify.cdw10 = CNS_CONTROLLER;
    identify.prp1 = iova;
    pace_double_fault(env);
    let got = raw_status(&nvme, 0, identify)?;
    expect_status("Identify into an unmapped IOVA", got, Status::SUCCESS)?;
    expect_fault(fault(true, REASON_NO_WRITE))?;
    let rw = |opcode| {
        let mut c = Command::new(opcode, 0);
        c.nsid = 1;
        c.prp1 = iova;
        c.set_slba(9000);
        c
    };
    pace_double_fault(env);
    let got = raw_status(&nvme, 1, rw(nvm::READ))?;
    expect_status("Read into an unmapped IOVA", got, Status::SUCCESS)?;
    expect_fault(fault(true, REASON_NO_WRITE))?;
    pace_double_fault(env);
    let got = raw_status(&nvme, 1, rw(nvm::WRITE))?;
    expect_status("Write from an unmapped IOVA", got, Status::SUCCESS)?;
    expect_fault(fault(false, REASON_NO_READ))?;
    let mut back = vec![0xee; 512];
    nvme.read(1, 9000, &mut back)?;
    ensure!(
        back.iter().all(|&b| b == 0),
        "the block written from an unmapped IOVA: {:02x?}",
        &back[..16]
    );
    nvme.get_features(feature::NUMBER_OF_QUEUES)?;
    Ok(())
}

/// Completions awaited on the queues' vectors (tokio, vfio-core's
/// AsyncInterrupt) carry the data: writes on two queues at once read
/// back, and a bad read's status is the one the blocking path gets.
pub fn nvme_awaited_completions_carry_the_data_and_the_status<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let nvme = driven(env, 2, 16)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (a, b) = (
        nvme.alloc_buffer(&env.backend, 8192)?,
        nvme.alloc_buffer(&env.backend, 8192)?,
    );
    let (da, db) = (pattern(8192, 1), pattern(8192, 2));
    a.memory().write_at(0, &da)?;
    b.memory().write_at(0, &db)?;
    let end = nvme.namespace().blocks;
    let status = runtime.block_on(async {
        let queues = nvme::AsyncNvme::new(&nvme)?;
        let (wa, wb) = tokio::join!(
            queues.write_dma(1, 7000, &a, 0, 8192),
            queues.write_dma(2, 7016, &b, 0, 8192)
        );
        wa?;
        wb?;
        queues.flush(1).await?;
        a.zero()?;
        b.zero()?;
        let (ra, rb) = tokio::join!(
            queues.read_dma(2, 7000, &a, 0, 8192),
            queues.read_dma(1, 7016, &b, 0, 8192)
        );
        ra?;
        rb?;
        let bad = queues.read_dma(1, end, &a, 0, 512).await;
        status_of("awaited read at the end", bad)
    })?;
    expect_status(
        "awaited read at the end",
        status,
        Status::LBA_OUT_OF_RANGE.with_dnr(),
    )?;
    let mut got = vec![0; 8192];
    b.memory().read_at(0, &mut got)?;
    ensure!(
        got == db,
        "queue 2's write read back through queue 1 differs"
    );
    a.memory().read_at(0, &mut got)?;
    ensure!(
        got == da,
        "queue 1's write read back through queue 2 differs"
    );
    Ok(())
}
