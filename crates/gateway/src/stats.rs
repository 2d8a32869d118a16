//! Per-deployment traffic statistics: live requests, errors and latency, and what mirrored
//! copies did. Counters only grow; callers take snapshots and subtract to get a window (the
//! rollout gates do this), so no lock is held on the request path.

use crate::table::FastMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds; the last bucket is unbounded.
pub const LATENCY_BUCKETS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; 19],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = LATENCY_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }
}

/// Counters for one kind of traffic (live or mirrored) to one deployment.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: Histogram,
}

impl Counters {
    fn record(&self, ok: bool, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(elapsed);
    }

    fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency_buckets: self.latency.snapshot(),
            latency_sum_us: self.latency.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// Answers by HTTP status code (100..=599), for `/metrics`.
struct StatusCodes(Vec<AtomicU64>);

impl Default for StatusCodes {
    fn default() -> Self {
        Self((100..600).map(|_| AtomicU64::new(0)).collect())
    }
}

#[derive(Default)]
struct DeploymentStats {
    /// Every answer the gateway gave for this deployment, refusals included, by status code.
    codes: StatusCodes,
    /// Time from arrival to the answer (queue wait included), and time waiting for a slot.
    total: Histogram,
    queue_wait: Histogram,
    live: Counters,
    mirror: Counters,
    /// Mirrored copies dropped because the mirror was saturated.
    mirror_shed: AtomicU64,
    /// Mirrored copies whose output could be compared with the live output, and those that agreed.
    compared: AtomicU64,
    agreed: AtomicU64,
    /// Live requests refused with 429 at admission (they never reached a replica).
    refused: AtomicU64,
}

/// Statistics of every deployment, keyed by replica-set id.
#[derive(Default, Clone)]
pub struct TrafficStats {
    inner: Arc<RwLock<FastMap<String, Arc<DeploymentStats>>>>,
}

impl TrafficStats {
    fn entry(&self, key: &str) -> Arc<DeploymentStats> {
        if let Some(s) = self.inner.read().expect("stats lock").get(key) {
            return s.clone();
        }
        self.inner.write().expect("stats lock").entry(key.to_owned()).or_default().clone()
    }

    pub fn record_live(&self, key: &str, ok: bool, elapsed: Duration) {
        self.entry(key).live.record(ok, elapsed);
    }

    pub fn record_mirror(&self, key: &str, ok: bool, elapsed: Duration, agreed: Option<bool>) {
        let s = self.entry(key);
        s.mirror.record(ok, elapsed);
        if let Some(a) = agreed {
            s.compared.fetch_add(1, Ordering::Relaxed);
            if a {
                s.agreed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One answer of the gateway for this deployment: its status, the whole time, the queue wait.
    pub fn record_answer(&self, key: &str, status: u16, total: Duration, queue_wait: Duration) {
        let s = self.entry(key);
        if let Some(c) = s.codes.0.get(usize::from(status).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        s.total.observe(total);
        s.queue_wait.observe(queue_wait);
    }

    /// What `/metrics` reports beyond [`Self::snapshot`].
    pub fn detail(&self, key: &str) -> DetailSnapshot {
        let s = self.entry(key);
        let codes = s
            .codes
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then_some((i as u16 + 100, n))
            })
            .collect();
        let hist = |h: &Histogram| (h.snapshot(), h.sum_us.load(Ordering::Relaxed));
        DetailSnapshot { codes, total: hist(&s.total), queue_wait: hist(&s.queue_wait) }
    }

    pub fn record_refused(&self, key: &str) {
        self.entry(key).refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_mirror_shed(&self, key: &str) {
        self.entry(key).mirror_shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything counted so far for one deployment (zeros if it has seen no traffic).
    pub fn snapshot(&self, key: &str) -> StatsSnapshot {
        let s = self.entry(key);
        StatsSnapshot {
            live: s.live.snapshot(),
            mirror: s.mirror.snapshot(),
            mirror_shed: s.mirror_shed.load(Ordering::Relaxed),
            compared: s.compared.load(Ordering::Relaxed),
            agreed: s.agreed.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
        }
    }

    /// Forgets a deployment (deleted), so a new one of the same name starts from zero.
    pub fn remove(&self, key: &str) {
        self.inner.write().expect("stats lock").remove(key);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CounterSnapshot {
    pub requests: u64,
    pub errors: u64,
    pub latency_buckets: Vec<u64>,
    pub latency_sum_us: u64,
}

impl CounterSnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        let buckets = self
            .latency_buckets
            .iter()
            .enumerate()
            .map(|(i, b)| b.saturating_sub(earlier.latency_buckets.get(i).copied().unwrap_or(0)))
            .collect();
        CounterSnapshot {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency_buckets: buckets,
            latency_sum_us: self.latency_sum_us.saturating_sub(earlier.latency_sum_us),
        }
    }

    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 / self.requests as f64 }
    }

    /// The upper bound of the bucket holding quantile `q` (0..1), in milliseconds; `None` with
    /// no requests, `f64::INFINITY` past the last bound.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency_buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.latency_buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(LATENCY_BUCKETS_US.get(i).map_or(f64::INFINITY, |us| *us as f64 / 1000.0));
            }
        }
        Some(f64::INFINITY)
    }

    pub fn mean_ms(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.latency_sum_us as f64 / self.requests as f64 / 1000.0)
    }
}

/// Answers by status code, and the total-time and queue-wait histograms (bucket counts as in
/// [`LATENCY_BUCKETS_US`] plus the overflow bucket, and the sum in microseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetailSnapshot {
    pub codes: Vec<(u16, u64)>,
    pub total: (Vec<u64>, u64),
    pub queue_wait: (Vec<u64>, u64),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    pub live: CounterSnapshot,
    pub mirror: CounterSnapshot,
    pub mirror_shed: u64,
    pub compared: u64,
    pub agreed: u64,
    /// Requests refused with 429 at admission (not counted in `live`).
    #[serde(default)]
    pub refused: u64,
}

impl StatsSnapshot {
    pub fn since(&self, earlier: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            live: self.live.since(&earlier.live),
            mirror: self.mirror.since(&earlier.mirror),
            mirror_shed: self.mirror_shed.saturating_sub(earlier.mirror_shed),
            compared: self.compared.saturating_sub(earlier.compared),
            agreed: self.agreed.saturating_sub(earlier.agreed),
            refused: self.refused.saturating_sub(earlier.refused),
        }
    }

    /// Share of compared mirror outputs that agreed with the live output.
    pub fn agreement(&self) -> Option<f64> {
        (self.compared > 0).then(|| self.agreed as f64 / self.compared as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_quantiles() {
        let stats = TrafficStats::default();
        for _ in 0..98 {
            stats.record_live("d", true, Duration::from_micros(300));
        }
        let before = stats.snapshot("d");
        stats.record_live("d", false, Duration::from_millis(40));
        stats.record_live("d", true, Duration::from_micros(300));
        let w = stats.snapshot("d").since(&before);
        assert_eq!((w.live.requests, w.live.errors), (2, 1));
        assert_eq!(w.live.error_rate(), 0.5);
        assert_eq!(w.live.quantile_ms(0.5), Some(0.5));
        assert_eq!(w.live.quantile_ms(0.99), Some(50.0));
        assert_eq!(stats.snapshot("other").live.quantile_ms(0.99), None);
        stats.record_mirror("d", true, Duration::from_millis(1), Some(true));
        stats.record_mirror("d", true, Duration::from_millis(1), Some(false));
        assert_eq!(stats.snapshot("d").agreement(), Some(0.5));
    }
}
