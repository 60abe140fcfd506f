//! The CPU barriers behind [`DmaMemory`](vfio_core::DmaMemory)'s
//! `dma_wmb`, `dma_rmb`, `dma_mb`, `wmb` and `rmb` on real hardware.
//!
//! A Rust fence orders memory for other threads only: `fence(Release)` on
//! aarch64 is `dmb ish`, which orders accesses for observers in the inner
//! shareable domain (the CPUs), not for a device, which Linux treats as an
//! observer in the outer shareable domain, and nothing in Rust's model
//! orders a store to DMA memory before a volatile store to a BAR. So each
//! barrier here is a Rust fence (for the driver's other threads) plus, where
//! the architecture needs one, the instruction Linux uses for the same
//! guarantee (`Documentation/memory-barriers.txt`, and each architecture's
//! `asm/barrier.h` and `asm/io.h`):
//!
//! | barrier | x86, x86-64 | aarch64 | riscv64 | powerpc64 |
//! |---|---|---|---|---|
//! | `dma_wmb` (DMA stores before DMA stores) | none | `dmb oshst` | `fence w,w` | `lwsync` |
//! | `dma_rmb` (DMA loads before DMA loads and stores) | none | `dmb oshld` | `fence r,rw` | `lwsync` |
//! | `dma_mb` (DMA loads and stores before DMA stores) | none | `dmb osh` | `fence rw,rw` | `lwsync` |
//! | `wmb` (DMA stores before MMIO stores) | `sfence` | `dmb oshst` | `fence w,o` | `sync` |
//! | `rmb` (MMIO loads before DMA loads) | `lfence` | `dmb oshld` | `fence i,ir` | `sync` |
//!
//! x86 is TSO for write-back memory: loads are not reordered with loads,
//! stores not with stores, and a store to uncached (UC) memory, which is
//! how vfio-pci maps a BAR (`pgprot_noncached`), is not reordered with
//! earlier stores; Linux's x86 `dma_wmb`/`dma_rmb` and its `writel` are
//! compiler barriers only. What x86 does reorder is write-combining (WC)
//! and non-temporal accesses, which nothing in this crate issues, but a
//! driver may (a WC mapping of its own, non-temporal copies): `wmb` and
//! `rmb` are `sfence` and `lfence`, as Linux's x86 `wmb()` and `rmb()` are,
//! so they hold for those too. On aarch64 the `osh` forms are what Linux's
//! `dma_*mb` and the `__iowmb`/`__iormb` inside `writel`/`readl` use: a
//! `dmb` orders Device-memory (MMIO) accesses with Normal ones for the
//! domain named. riscv64 and powerpc64 follow Linux's `__io_bw`/`__io_ar`
//! and `dma_*mb` for them.
//!
//! On any other architecture each barrier is a sequentially consistent
//! fence, the architecture's full barrier instruction; Rust promises only
//! its thread-to-thread meaning there, and this crate has not checked it
//! against each architecture's device ordering rules.
//!
//! Every asm block here is a compiler barrier too: without `nomem`, the
//! compiler must assume it reads and writes any memory, so no access is
//! moved across it.

// UNSAFETY: inline assembly for the barrier instructions, nothing else.
#![cfg_attr(
    all(
        not(miri),
        any(
            target_arch = "x86",
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64",
            target_arch = "powerpc64"
        )
    ),
    expect(unsafe_code)
)]

use std::sync::atomic::{Ordering, fence};

#[cfg(all(
    not(miri),
    any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "powerpc64"
    )
))]
/// Emits `$insn` as a barrier: no inputs or outputs, the stack untouched,
/// memory assumed read and written (so also a compiler barrier).
macro_rules! barrier_insn {
    ($insn:literal) => {
        // SAFETY: a barrier instruction (or, for the empty template, none:
        // a compiler barrier only) reads and writes no register or memory
        // the compiler knows of and cannot fault; it only orders this
        // CPU's accesses.
        unsafe { std::arch::asm!($insn, options(nostack, preserves_flags)) }
    };
}

/// Architecture instructions for each barrier.
mod insn {
    #[cfg(all(not(miri), any(target_arch = "x86", target_arch = "x86_64")))]
    pub(super) mod arch {
        /// TSO: stores are not reordered with stores (the asm is the
        /// compiler barrier Linux's `barrier()` is).
        #[inline]
        pub fn dma_wmb() {
            barrier_insn!("");
        }
        /// TSO: loads are not reordered with later loads or stores.
        #[inline]
        pub fn dma_rmb() {
            barrier_insn!("");
        }
        /// TSO for write-back memory: a later store (DMA memory) is never
        /// performed before an earlier load or store.
        #[inline]
        pub fn dma_mb() {
            barrier_insn!("");
        }
        #[inline]
        pub fn wmb() {
            barrier_insn!("sfence");
        }
        #[inline]
        pub fn rmb() {
            barrier_insn!("lfence");
        }
    }

    #[cfg(all(not(miri), target_arch = "aarch64"))]
    pub(super) mod arch {
        #[inline]
        pub fn dma_wmb() {
            barrier_insn!("dmb oshst");
        }
        #[inline]
        pub fn dma_rmb() {
            barrier_insn!("dmb oshld");
        }
        #[inline]
        pub fn dma_mb() {
            barrier_insn!("dmb osh");
        }
        #[inline]
        pub fn wmb() {
            barrier_insn!("dmb oshst");
        }
        #[inline]
        pub fn rmb() {
            barrier_insn!("dmb oshld");
        }
    }

    #[cfg(all(not(miri), target_arch = "riscv64"))]
    pub(super) mod arch {
        #[inline]
        pub fn dma_wmb() {
            barrier_insn!("fence w,w");
        }
        #[inline]
        pub fn dma_rmb() {
            barrier_insn!("fence r,rw");
        }
        #[inline]
        pub fn dma_mb() {
            barrier_insn!("fence rw,rw");
        }
        #[inline]
        pub fn wmb() {
            barrier_insn!("fence w,o");
        }
        #[inline]
        pub fn rmb() {
            barrier_insn!("fence i,ir");
        }
    }

    #[cfg(all(not(miri), target_arch = "powerpc64"))]
    pub(super) mod arch {
        #[inline]
        pub fn dma_wmb() {
            barrier_insn!("lwsync");
        }
        #[inline]
        pub fn dma_rmb() {
            barrier_insn!("lwsync");
        }
        #[inline]
        pub fn dma_mb() {
            barrier_insn!("lwsync");
        }
        #[inline]
        pub fn wmb() {
            barrier_insn!("sync");
        }
        #[inline]
        pub fn rmb() {
            barrier_insn!("sync");
        }
    }

    #[cfg(any(
        miri,
        not(any(
            target_arch = "x86",
            target_arch = "x86_64",
            target_arch = "aarch64",
            target_arch = "riscv64",
            target_arch = "powerpc64"
        ))
    ))]
    pub(super) mod arch {
        use std::sync::atomic::{Ordering, fence};
        #[inline]
        pub fn dma_wmb() {
            fence(Ordering::SeqCst);
        }
        #[inline]
        pub fn dma_rmb() {
            fence(Ordering::SeqCst);
        }
        #[inline]
        pub fn dma_mb() {
            fence(Ordering::SeqCst);
        }
        #[inline]
        pub fn wmb() {
            fence(Ordering::SeqCst);
        }
        #[inline]
        pub fn rmb() {
            fence(Ordering::SeqCst);
        }
    }
}

use insn::arch;

/// Earlier stores to DMA memory before later ones, for devices and threads.
#[inline]
pub(crate) fn dma_wmb() {
    fence(Ordering::Release);
    arch::dma_wmb();
}

/// Earlier loads from DMA memory before later loads and stores.
#[inline]
pub(crate) fn dma_rmb() {
    arch::dma_rmb();
    fence(Ordering::Acquire);
}

/// Earlier loads and stores of DMA memory before later stores.
#[inline]
pub(crate) fn dma_mb() {
    fence(Ordering::AcqRel);
    arch::dma_mb();
}

/// Earlier stores to DMA memory before later MMIO stores (a doorbell).
#[inline]
pub(crate) fn wmb() {
    fence(Ordering::Release);
    arch::wmb();
}

/// Earlier MMIO loads before later loads from DMA memory.
#[inline]
pub(crate) fn rmb() {
    arch::rmb();
    fence(Ordering::Acquire);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The barriers execute (an instruction the CPU lacked would fault).
    #[test]
    #[cfg_attr(miri, ignore = "Miri does not run inline assembly")]
    fn every_barrier_runs() {
        dma_wmb();
        dma_rmb();
        dma_mb();
        wmb();
        rmb();
    }
}
