//! Work a device model finishes after the register access that started it
//! returns: on the device's own thread ([`DeviceContext::defer`]) or at a
//! point of the host's virtual time ([`DeviceContext::schedule`]).
//!
//! Each device has at most one worker thread, started by its first
//! `defer`; jobs run on it one at a time, in the order they were deferred.
//! An idle worker looks for its next job for [`WORKER_SPIN`] (yielding its
//! CPU as it looks) before it sleeps, so a driver that rings the next
//! doorbell as soon as a completion wakes it does not wait for the worker
//! to wake too.
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
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

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
}

/// The host's timers and its count of deferred jobs.
pub(crate) struct Scheduler {
    clock: Arc<MockClock>,
    state: Mutex<State>,
    /// Deferred jobs queued or running, over all devices.
    deferred: AtomicUsize,
    /// Signalled, under `state`'s lock, when `deferred` drops to 0.
    idle: Condvar,
    /// Panics caught in device work.
    pub(crate) errors: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Scheduler")
            .field("timers", &s.timers.len())
            .field("deferred", &self.deferred.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    pub(crate) fn new(clock: Arc<MockClock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
            deferred: AtomicUsize::new(0),
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
        let timers = self.state.lock().timers.len();
        (timers, self.deferred.load(Ordering::Acquire))
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
                self.idle
                    .wait_while(&mut s, |_| self.deferred.load(Ordering::Acquire) > 0);
            }
            let Some((at, t)) = self.take_due(None) else {
                return ran;
            };
            self.advance_clock_to(at);
            ran += usize::from(run_work(&t.device, t.epoch, t.work, &self.errors));
        }
    }

    fn job_queued(&self) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }

    fn job_done(&self) {
        self.jobs_dropped(1);
    }

    /// `n` deferred jobs finished or were dropped unrun.
    fn jobs_dropped(&self, n: usize) {
        if n == 0 {
            return;
        }
        if self.deferred.fetch_sub(n, Ordering::AcqRel) == n {
            // Taken so a waiter between its check and its wait cannot miss
            // the signal.
            let _s = self.state.lock();
            self.idle.notify_all();
        }
    }
}

/// A deferred job and the epoch it belongs to.
struct Job {
    epoch: u64,
    work: Work,
}

/// How long an idle worker keeps looking for its next job before it goes
/// to sleep.
///
/// A driver that waits for each completion before it rings the next
/// doorbell (queue depth 1) rings it a thread wake-up after the completion:
/// a few microseconds. A worker still looking then starts the job at once,
/// instead of paying a second wake-up of its own, which is what makes a
/// deferred completion cost about what a real device's does against the
/// driver's own wake-up. The window is short, and the worker yields its CPU
/// while it looks, so an idle device costs nothing once the window ends.
pub(crate) const WORKER_SPIN: Duration = Duration::from_micros(50);

/// The queue between a device and its worker thread.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a job arrives for a sleeping worker, or the queue
    /// closes.
    ready: Condvar,
    /// Jobs queued and not yet taken, readable without the lock.
    queued: AtomicUsize,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    /// The device is gone: the worker ends, dropping what is left.
    closed: bool,
    /// The worker waits on `ready`.
    sleeping: bool,
}

impl Queue {
    fn push(&self, job: Job) {
        let mut s = self.state.lock();
        s.jobs.push_back(job);
        self.queued.fetch_add(1, Ordering::Release);
        if s.sleeping {
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        let jobs = {
            let mut s = self.state.lock();
            s.closed = true;
            self.ready.notify_one();
            std::mem::take(&mut s.jobs)
        };
        // Dropped with no lock held: the work may own anything.
        drop(jobs);
    }

    /// The next job, looking for [`WORKER_SPIN`] before sleeping; `None`
    /// once the queue is closed.
    fn next(&self) -> Option<Job> {
        let start = Instant::now();
        let mut spins = 0u32;
        while self.queued.load(Ordering::Acquire) == 0 {
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 {
                if start.elapsed() >= WORKER_SPIN {
                    break;
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let mut s = self.state.lock();
        loop {
            if s.closed {
                return None;
            }
            if let Some(job) = s.jobs.pop_front() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Some(job);
            }
            s.sleeping = true;
            self.ready.wait(&mut s);
            s.sleeping = false;
        }
    }
}

/// A device's worker thread, started by its first deferred job. Dropping
/// it (with the device) closes its queue, dropping the jobs left without
/// running them (the device is gone), and joins the thread.
#[derive(Default)]
pub(crate) struct Worker {
    state: Mutex<Option<(Arc<Queue>, std::thread::JoinHandle<()>)>>,
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
        if let Some((queue, _)) = state.as_ref() {
            queue.push(job);
            return;
        }
        // No thread yet: start one.
        let queue = Arc::new(Queue::default());
        let weak = device.clone();
        let sched = scheduler.clone();
        let theirs = queue.clone();
        let spawned = std::thread::Builder::new()
            .name("vfio-mock-device".into())
            .spawn(move || {
                while let Some(job) = theirs.next() {
                    run_work(&weak, job.epoch, job.work, &sched.errors);
                    sched.job_done();
                }
                // Jobs dropped unrun by `close` are done too.
                sched.jobs_dropped(theirs.queued.swap(0, Ordering::Relaxed));
            });
        match spawned {
            Ok(handle) => {
                queue.push(job);
                *state = Some((queue, handle));
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
        if let Some((queue, handle)) = self.state.get_mut().take() {
            queue.close();
            // The device's last reference may go on its own worker, in a
            // job: that thread ends by itself once the job returns.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}
