//! Admission control: each deployment takes at most `max_concurrent_requests_per_instance` ×
//! ready replicas requests at once; the rest wait in a bounded first-come-first-served queue for
//! at most `max_queue_wait_ms`, and a request that would wait longer is refused at once (429 with
//! `Retry-After`) instead of joining a queue that can only time out.
//!
//! The estimate of how long a new request would wait is its place in the queue divided by the
//! capacity, times the deployment's recent service time (an exponentially weighted average of
//! how long admitted requests held their slot). A request whose estimate was wrong is still
//! refused when its wait actually reaches `max_queue_wait_ms`.

use crate::table::FastMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// No queue grows beyond this many waiters per deployment, whatever the estimate says.
const MAX_QUEUE: usize = 4096;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The queue was full, or the estimated wait was over `max_queue_wait_ms`.
    Full,
    /// It waited `max_queue_wait_ms` without a free slot.
    WaitedTooLong,
}

/// Every deployment's gate, keyed by replica-set id.
#[derive(Clone, Default)]
pub struct Admissions {
    gates: Arc<RwLock<FastMap<String, Arc<Gate>>>>,
    /// Deployments scaled to zero that a request is waiting for, and the autoscaler's wake-up.
    wanted: Arc<Mutex<std::collections::HashSet<String>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl Admissions {
    pub fn gate(&self, replica_set: &str) -> Arc<Gate> {
        if let Some(g) = self.gates.read().expect("admission gates").get(replica_set) {
            return g.clone();
        }
        self.gates.write().expect("admission gates").entry(replica_set.to_owned()).or_default().clone()
    }

    /// A request is waiting for a deployment that has no replica: ask the autoscaler for one.
    pub fn want(&self, replica_set: &str) {
        self.wanted.lock().expect("wanted set").insert(replica_set.to_owned());
        self.wake.notify_one();
    }

    /// The deployments asked for since the last call.
    pub fn take_wanted(&self) -> std::collections::HashSet<String> {
        std::mem::take(&mut *self.wanted.lock().expect("wanted set"))
    }

    /// Resolves when [`Self::want`] was called (at once if it was since the last wait).
    pub async fn wanted_changed(&self) {
        self.wake.notified().await;
    }

    /// Requests × microseconds a deployment has held or waited for slots since its gate was
    /// made: the autoscaler divides its growth by the elapsed time to get the average load.
    pub fn busy_integral(&self, replica_set: &str) -> u128 {
        self.gates.read().expect("admission gates").get(replica_set).map_or(0, |g| g.busy_integral())
    }

    /// In-flight and queued requests of a deployment, for `/metrics` and `show`.
    pub fn load(&self, replica_set: &str) -> (usize, usize) {
        self.gates.read().expect("admission gates").get(replica_set).map_or((0, 0), |g| g.load())
    }

    /// Hands free slots to waiters after capacity grew (a replica became ready).
    pub fn rebalance(&self, capacity_of: impl Fn(&str) -> usize) {
        let gates: Vec<(String, Arc<Gate>)> =
            self.gates.read().expect("admission gates").iter().map(|(k, g)| (k.clone(), g.clone())).collect();
        for (id, gate) in gates {
            gate.fill(capacity_of(&id));
        }
    }
}

/// One deployment's concurrency limit and wait queue.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    /// Recent time an admitted request held its slot, in microseconds (0: no sample yet).
    service_us: AtomicU64,
}

struct GateState {
    in_flight: usize,
    capacity: usize,
    queue: VecDeque<oneshot::Sender<()>>,
    /// Load (in flight + queued) integrated over time, in request-microseconds, up to `since`.
    busy_us: u128,
    since: Instant,
}

impl Default for GateState {
    fn default() -> Self {
        Self { in_flight: 0, capacity: 0, queue: VecDeque::new(), busy_us: 0, since: Instant::now() }
    }
}

impl GateState {
    /// Adds the load since the last change to the integral; call before every change.
    fn account(&mut self) {
        let now = Instant::now();
        let load = (self.in_flight + self.queue.len()) as u128;
        self.busy_us += load * now.duration_since(self.since).as_micros();
        self.since = now;
    }
}

/// A slot in a deployment; dropping it passes the slot to the next waiter.
pub struct Permit {
    gate: Arc<Gate>,
    since: Instant,
    /// How long the request waited in the queue.
    pub waited: Duration,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.observe(self.since.elapsed());
        self.gate.release();
    }
}

impl Gate {
    /// Waits for a slot. `capacity` is the deployment's current limit (replicas × per-instance
    /// concurrency); it must be at least 1.
    pub async fn acquire(self: &Arc<Self>, capacity: usize, max_wait: Duration) -> Result<Permit, Refusal> {
        let started = Instant::now();
        let rx = {
            let mut s = self.state.lock().expect("admission gate");
            s.account();
            s.capacity = capacity;
            if s.in_flight < capacity && s.queue.is_empty() {
                s.in_flight += 1;
                return Ok(self.permit(started));
            }
            // Drop waiters that gave up (their receiver is gone) before judging the queue.
            s.queue.retain(|tx| !tx.is_closed());
            // With no capacity yet (a replica is starting) there is nothing to estimate from.
            let too_long = capacity > 0 && self.estimated_wait(s.queue.len() + 1, capacity) > max_wait;
            if s.queue.len() >= MAX_QUEUE || too_long {
                return Err(Refusal::Full);
            }
            let (tx, rx) = oneshot::channel();
            s.queue.push_back(tx);
            rx
        };
        match tokio::time::timeout(max_wait, rx).await {
            Ok(Ok(())) => Ok(self.permit(started)),
            Ok(Err(_)) => Err(Refusal::WaitedTooLong),
            Err(_) => Err(Refusal::WaitedTooLong),
        }
    }

    fn permit(self: &Arc<Self>, started: Instant) -> Permit {
        Permit { gate: self.clone(), since: Instant::now(), waited: started.elapsed() }
    }

    /// The slot goes to the first waiter still waiting, else it is freed.
    fn release(&self) {
        let mut s = self.state.lock().expect("admission gate");
        s.account();
        if s.in_flight > s.capacity {
            // Capacity shrank (a replica left): give the slot up instead of passing it on.
            s.in_flight -= 1;
            return;
        }
        while let Some(tx) = s.queue.pop_front() {
            if tx.send(()).is_ok() {
                return;
            }
        }
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    /// Grants waiting requests the slots that a larger capacity opened.
    fn fill(&self, capacity: usize) {
        let mut s = self.state.lock().expect("admission gate");
        s.account();
        s.capacity = capacity;
        while s.in_flight < capacity {
            let Some(tx) = s.queue.pop_front() else { break };
            if tx.send(()).is_ok() {
                s.in_flight += 1;
            }
        }
    }

    fn busy_integral(&self) -> u128 {
        let mut s = self.state.lock().expect("admission gate");
        s.account();
        s.busy_us
    }

    fn load(&self) -> (usize, usize) {
        let s = self.state.lock().expect("admission gate");
        (s.in_flight, s.queue.iter().filter(|tx| !tx.is_closed()).count())
    }

    fn observe(&self, held: Duration) {
        let us = held.as_micros().min(u64::MAX as u128) as u64;
        let old = self.service_us.load(Ordering::Relaxed);
        // A race between two updates loses one sample; the average does not need more.
        let new = if old == 0 { us } else { old - old / 8 + us / 8 };
        self.service_us.store(new.max(1), Ordering::Relaxed);
    }

    fn estimated_wait(&self, position: usize, capacity: usize) -> Duration {
        let us = self.service_us.load(Ordering::Relaxed);
        Duration::from_micros(us.saturating_mul(position.div_ceil(capacity.max(1)) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_beyond_capacity_wait_in_order_and_the_queue_is_bounded_by_time() {
        let gate = Arc::new(Gate::default());
        let wait = Duration::from_millis(200);
        let first = gate.acquire(1, wait).await.unwrap();
        // The second waits; it gets the slot when the first is done.
        let g = gate.clone();
        let second = tokio::spawn(async move { g.acquire(1, wait).await.map(|p| p.waited) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(gate.load(), (1, 1));
        drop(first);
        let waited = second.await.unwrap().unwrap();
        assert!(waited >= Duration::from_millis(15), "{waited:?}");
        assert_eq!(gate.load(), (0, 0));

        // A holder that never finishes: the waiter is refused at its deadline.
        let _held = gate.acquire(1, wait).await.unwrap();
        assert_eq!(gate.acquire(1, Duration::from_millis(30)).await.err(), Some(Refusal::WaitedTooLong));
    }

    #[tokio::test]
    async fn a_request_that_would_wait_too_long_is_refused_at_once() {
        let gate = Arc::new(Gate::default());
        gate.observe(Duration::from_millis(100));
        let _held = gate.acquire(1, Duration::from_millis(500)).await.unwrap();
        // One slot, 100 ms per request: the 6th in the queue would wait ~600 ms.
        let mut waiting = Vec::new();
        for _ in 0..5 {
            let g = gate.clone();
            waiting.push(tokio::spawn(async move { g.acquire(1, Duration::from_millis(500)).await.is_ok() }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        assert_eq!(gate.acquire(1, Duration::from_millis(500)).await.err(), Some(Refusal::Full));
        assert!(started.elapsed() < Duration::from_millis(100), "refused at once, not after waiting");
        assert_eq!(gate.load(), (1, 5));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_take_a_slot_and_more_capacity_admits_waiters() {
        let gate = Arc::new(Gate::default());
        let held = gate.acquire(1, Duration::from_secs(1)).await.unwrap();
        let g = gate.clone();
        let abandoned = tokio::spawn(async move { g.acquire(1, Duration::from_secs(5)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        abandoned.abort(); // the client went away
        let g = gate.clone();
        let next = tokio::spawn(async move { g.acquire(1, Duration::from_secs(5)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A second replica became ready: the waiter is admitted while the first still holds.
        gate.fill(2);
        assert!(next.await.unwrap());
        drop(held);
        assert_eq!(gate.load(), (0, 0));
    }
}
