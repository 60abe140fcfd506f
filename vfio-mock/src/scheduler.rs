//! Work a device model finishes after the register access that started it
//! returns: on the device's own thread ([`DeviceContext::defer`]) or at a
//! point of the host's virtual time ([`DeviceContext::schedule`]).
//!
//! Each device has at most one worker thread, started by its first
//! `defer`; jobs run on it one at a time, in the order they were deferred.
//! Timers are the host's: they run on the thread that calls
//! [`MockHost::advance`](crate::MockHost::advance) or
//! [`MockHost::run_until_idle`](crate::MockHost::run_until_idle), in
//! deadline order (ties in the order they were scheduled).
//!
//! Every job and timer carries the device's *epoch*. A function reset, the
//! reset vfio-pci does at open and last close of a device that can reset,
//! and the end of a removal start a new epoch: work of an older epoch is
//! dropped without running, as a reset aborts a device's work in flight.
//! Work already running when that happens finishes; from then on its DMA
//! and interrupts meet the device as it is (bus mastering off after the
//! last close, [`DmaFault::Removed`](crate::DmaFault::Removed) and
//! [`Delivery::NotBound`](crate::Delivery::NotBound) once removed).

use crate::clock::MockClock;
use crate::model::DeviceContext;
use crate::pci_device::PciDevice;
use parking_lot::{Condvar, Mutex};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A piece of device work.
pub(crate) type Work = Box<dyn FnOnce(&DeviceContext<'_>) + Send>;

thread_local! {
    /// True while this thread runs device work (a job or a timer).
    static IN_DEVICE_WORK: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` as the device, if the device is still there and `epoch` is
/// still its epoch; true if it ran. A panic in the work is caught and
/// recorded in `errors`.
fn run_work(device: &Weak<PciDevice>, epoch: u64, work: Work, errors: &Mutex<Vec<String>>) -> bool {
    let Some(device) = device.upgrade() else {
        return false;
    };
    if device.epoch() != epoch {
        return false;
    }
    let was = IN_DEVICE_WORK.with(|w| w.replace(true));
    let ctx = DeviceContext { device: &device };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&ctx)));
    IN_DEVICE_WORK.with(|w| w.set(was));
    if let Err(panic) = result {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        errors.lock().push(format!(
            "device work of {} panicked: {what}",
            device.address
        ));
    }
    true
}

/// One timer.
struct Timer {
    device: Weak<PciDevice>,
    epoch: u64,
    work: Work,
}

#[derive(Default)]
struct State {
    /// By (deadline, sequence number).
    timers: BTreeMap<(Duration, u64), Timer>,
    next: u64,
    /// Deferred jobs queued or running, over all devices.
    deferred: usize,
}

/// The host's timers and its count of deferred jobs.
pub(crate) struct Scheduler {
    clock: Arc<MockClock>,
    state: Mutex<State>,
    /// Signalled when `deferred` drops to 0.
    idle: Condvar,
    /// Panics caught in device work.
    pub(crate) errors: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Scheduler")
            .field("timers", &s.timers.len())
            .field("deferred", &s.deferred)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    pub(crate) fn new(clock: Arc<MockClock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// The host's virtual time.
    pub(crate) fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Runs `work` once virtual time has moved `after` past now.
    pub(crate) fn schedule(
        &self,
        device: Weak<PciDevice>,
        epoch: u64,
        after: Duration,
        work: Work,
    ) {
        let at = self.clock.now().saturating_add(after);
        let mut s = self.state.lock();
        let seq = s.next;
        s.next += 1;
        s.timers.insert(
            (at, seq),
            Timer {
                device,
                epoch,
                work,
            },
        );
    }

    /// Drops every timer of `device` (its epoch ended).
    pub(crate) fn cancel(&self, device: &Weak<PciDevice>) {
        let cancelled: Vec<Timer> = {
            let mut s = self.state.lock();
            let keys: Vec<_> = s
                .timers
                .iter()
                .filter(|(_, t)| Weak::ptr_eq(&t.device, device))
                .map(|(k, _)| *k)
                .collect();
            keys.iter().filter_map(|k| s.timers.remove(k)).collect()
        };
        // Dropped with no lock held: the work may own anything.
        drop(cancelled);
    }

    /// Timers not yet run and deferred jobs not yet finished.
    pub(crate) fn pending(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.timers.len(), s.deferred)
    }

    /// Takes the earliest timer due at or before `until` (any, if `None`).
    fn take_due(&self, until: Option<Duration>) -> Option<(Duration, Timer)> {
        let mut s = self.state.lock();
        let (&key, _) = s.timers.first_key_value()?;
        if until.is_some_and(|u| key.0 > u) {
            return None;
        }
        s.timers.remove(&key).map(|t| (key.0, t))
    }

    /// Moves the clock forward to `at` (never back).
    fn advance_clock_to(&self, at: Duration) {
        let now = self.clock.now();
        if at > now {
            self.clock.advance(at - now);
        }
    }

    /// Moves virtual time `by` forward, running each timer that falls due
    /// with the clock at its deadline (a timer scheduled by one that runs
    /// runs too if it falls due in the window). Returns how many ran.
    pub(crate) fn advance(&self, by: Duration) -> usize {
        if IN_DEVICE_WORK.with(Cell::get) {
            return 0;
        }
        let until = self.clock.now().saturating_add(by);
        let mut ran = 0;
        while let Some((at, t)) = self.take_due(Some(until)) {
            self.advance_clock_to(at);
            ran += usize::from(run_work(&t.device, t.epoch, t.work, &self.errors));
        }
        self.advance_clock_to(until);
        ran
    }

    /// Waits for every deferred job to finish and runs every timer, moving
    /// the clock to each deadline, until neither is left. Returns how many
    /// timers ran.
    pub(crate) fn run_until_idle(&self) -> usize {
        if IN_DEVICE_WORK.with(Cell::get) {
            return 0;
        }
        let mut ran = 0;
        loop {
            {
                let mut s = self.state.lock();
                self.idle.wait_while(&mut s, |s| s.deferred > 0);
            }
            let Some((at, t)) = self.take_due(None) else {
                return ran;
            };
            self.advance_clock_to(at);
            ran += usize::from(run_work(&t.device, t.epoch, t.work, &self.errors));
        }
    }

    fn job_queued(&self) {
        self.state.lock().deferred += 1;
    }

    fn job_done(&self) {
        let mut s = self.state.lock();
        s.deferred = s.deferred.saturating_sub(1);
        if s.deferred == 0 {
            self.idle.notify_all();
        }
    }
}

/// A deferred job and the epoch it belongs to.
struct Job {
    epoch: u64,
    work: Work,
}

/// A device's worker thread, started by its first deferred job. Dropping
/// it (with the device) closes its queue and joins the thread, which drops
/// the jobs left without running them (the device is gone).
#[derive(Default)]
pub(crate) struct Worker {
    state: Mutex<Option<(mpsc::Sender<Job>, std::thread::JoinHandle<()>)>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("started", &self.state.lock().is_some())
            .finish()
    }
}

impl Worker {
    /// Queues `work` to run on the device's thread.
    pub(crate) fn defer(
        &self,
        device: &Weak<PciDevice>,
        scheduler: &Arc<Scheduler>,
        epoch: u64,
        work: Work,
    ) {
        let mut state = self.state.lock();
        scheduler.job_queued();
        let job = Job { epoch, work };
        let job = match state.as_ref() {
            Some((tx, _)) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        // No thread yet (or it could not take the job): start one.
        let (tx, rx) = mpsc::channel::<Job>();
        let weak = device.clone();
        let sched = scheduler.clone();
        let spawned = std::thread::Builder::new()
            .name("vfio-mock-device".into())
            .spawn(move || {
                for job in rx {
                    run_work(&weak, job.epoch, job.work, &sched.errors);
                    sched.job_done();
                }
            });
        match spawned {
            Ok(handle) => {
                // The new thread's queue is empty and its receiver alive.
                let _ = tx.send(job);
                // A thread that could not take a job has ended (or is
                // ending): it is not joined here, under the lock.
                drop(state.replace((tx, handle)));
            }
            Err(e) => {
                scheduler.job_done();
                scheduler
                    .errors
                    .lock()
                    .push(format!("cannot start a device worker thread: {e}"));
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some((tx, handle)) = self.state.get_mut().take() {
            drop(tx);
            // The device's last reference may go on its own worker, in a
            // job: that thread ends by itself once the job returns.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}
