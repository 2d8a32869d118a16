//! Compute pools and the batch queue: which waiting job starts next, and with how many workers.
//!
//! A pool is what Azure ML calls an `amlcompute` cluster: up to `max_instances` instances. On
//! this machine an instance is a slot for `max_concurrency_per_instance` worker processes of one
//! job; a job takes `instance_count` instances of its deployment's pool (fewer when it has fewer
//! pending mini-batches, never more than the pool has). Every pool also shares the server's cap on
//! worker processes (`--batch-workers`), because they all run on the one machine.
//!
//! Jobs wait in one queue ordered by priority, then arrival. A job that cannot start holds back
//! every later job on the same pool (nothing overtakes it there), and a job held back by the
//! machine's cap holds back every later job: first come, first served within a priority.

use crate::RuleError;
use std::collections::BTreeMap;

/// The pool a fresh install has.
pub const DEFAULT_POOL: &str = "cpu-cluster";
/// The most instances one pool may have.
pub const MAX_INSTANCES: u32 = 1024;
/// The longest `idle_time_before_scale_down` (a week, in seconds).
pub const MAX_IDLE_TIME_S: u32 = 604_800;

/// A pool whose fields passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputePool {
    pub name: String,
    pub min_instances: u32,
    pub max_instances: u32,
    /// Seconds an idle instance is kept (Azure's default 120).
    pub idle_time_before_scale_down_s: u32,
}

impl ComputePool {
    /// Checks the instance counts; `None` takes Azure's defaults (min 0, max 1, idle 120 s).
    pub fn new(
        name: &str,
        min_instances: Option<u32>,
        max_instances: Option<u32>,
        idle_s: Option<u32>,
    ) -> Result<Self, Vec<(&'static str, RuleError)>> {
        let mut errors = Vec::new();
        let name = crate::batch::compute_name(name).map_err(|e| errors.push(("name", e))).unwrap_or_default();
        let min = min_instances.unwrap_or(0);
        let max = max_instances.unwrap_or(1);
        if !(1..=MAX_INSTANCES).contains(&max) {
            errors.push(("max_instances", RuleError(format!("{max}: expected 1 to {MAX_INSTANCES}"))));
        }
        if min > max {
            errors.push(("min_instances", RuleError(format!("{min}: expected at most max_instances ({max})"))));
        }
        let idle = idle_s.unwrap_or(120);
        if idle > MAX_IDLE_TIME_S {
            errors.push((
                "idle_time_before_scale_down",
                RuleError(format!("{idle}: expected 0 to {MAX_IDLE_TIME_S} seconds")),
            ));
        }
        if errors.is_empty() {
            Ok(Self { name, min_instances: min, max_instances: max, idle_time_before_scale_down_s: idle })
        } else {
            Err(errors)
        }
    }
}

/// A batch job's priority in the queue (Azure ML's `queue_settings.priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

impl Priority {
    pub const ALL: [Self; 3] = [Self::Low, Self::Medium, Self::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// The number the store orders by (higher first).
    pub fn rank(self) -> i64 {
        match self {
            Self::Low => 1,
            Self::Medium => 2,
            Self::High => 3,
        }
    }

    pub fn from_rank(rank: i64) -> Self {
        match rank {
            i64::MIN..=1 => Self::Low,
            2 => Self::Medium,
            _ => Self::High,
        }
    }

    /// `low`, `medium` or `high`, any case.
    pub fn parse(s: &str) -> Result<Self, RuleError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| RuleError(format!("{s:?}: expected low, medium or high")))
    }
}

/// A job the scheduler looks at, in queue order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub compute: String,
    pub instance_count: u32,
    pub max_concurrency_per_instance: u32,
    /// Mini-batches not yet committed or failed.
    pub pending: u64,
}

/// What is free now: instances in use per pool (pools absent from `in_use` use none), and the
/// machine's worker cap.
#[derive(Debug, Clone, Default)]
pub struct Capacity {
    /// Each pool's `max_instances`.
    pub pools: BTreeMap<String, u32>,
    pub in_use: BTreeMap<String, u32>,
    pub machine_workers: usize,
    pub workers_in_use: usize,
}

/// What happens to one queued job in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it on `instances` instances of its pool with `workers` processes (0 when only its
    /// merge is left).
    Start { instances: u32, workers: usize },
    /// It waits; the reason is for `show`.
    Wait(String),
    /// Its pool does not exist (deleted after the job was invoked).
    NoSuchCompute,
}

/// Decides, in queue order, which jobs start now; updates `cap` with what they take.
pub fn schedule(jobs: &[QueuedJob], cap: &mut Capacity) -> Vec<Decision> {
    let mut held_pools: BTreeMap<String, String> = BTreeMap::new();
    let mut machine_held: Option<String> = None;
    jobs.iter()
        .map(|job| {
            let Some(&max) = cap.pools.get(&job.compute) else { return Decision::NoSuchCompute };
            if let Some(why) = machine_held.as_ref().or(held_pools.get(&job.compute)) {
                return Decision::Wait(why.clone());
            }
            let conc = u64::from(job.max_concurrency_per_instance.max(1));
            let by_work = job.pending.div_ceil(conc);
            let instances = u64::from(job.instance_count.max(1)).min(by_work).min(u64::from(max)) as u32;
            let workers = (u64::from(instances) * conc).min(job.pending) as usize;
            let workers = workers.min(cap.machine_workers.max(1));
            let used = cap.in_use.get(&job.compute).copied().unwrap_or(0);
            let machine_free = cap.machine_workers.max(1).saturating_sub(cap.workers_in_use);
            if used + instances > max {
                let why =
                    format!("waiting for {instances} instance(s) of compute {} ({used} of {max} in use)", job.compute);
                held_pools.insert(job.compute.clone(), why.clone());
                return Decision::Wait(why);
            }
            if workers > machine_free {
                let why = format!(
                    "waiting for {workers} worker process(es) on this server ({} of {} in use)",
                    cap.workers_in_use,
                    cap.machine_workers.max(1)
                );
                machine_held = Some(why.clone());
                return Decision::Wait(why);
            }
            *cap.in_use.entry(job.compute.clone()).or_default() += instances;
            cap.workers_in_use += workers;
            Decision::Start { instances, workers }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(compute: &str, instance_count: u32, conc: u32, pending: u64) -> QueuedJob {
        QueuedJob { compute: compute.into(), instance_count, max_concurrency_per_instance: conc, pending }
    }

    fn cap(pools: &[(&str, u32)], machine: usize) -> Capacity {
        Capacity {
            pools: pools.iter().map(|(n, m)| ((*n).to_owned(), *m)).collect(),
            machine_workers: machine,
            ..Capacity::default()
        }
    }

    #[test]
    fn pools_check_their_counts() {
        let p = ComputePool::new("azureml:gpu-pool", None, Some(4), None).unwrap();
        assert_eq!(
            (p.name.as_str(), p.min_instances, p.max_instances, p.idle_time_before_scale_down_s),
            ("gpu-pool", 0, 4, 120)
        );
        assert_eq!(ComputePool::new("cpu-cluster", None, None, None).unwrap().max_instances, 1);
        let errs = ComputePool::new("1x", Some(3), Some(2), Some(MAX_IDLE_TIME_S + 1)).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.0).collect();
        assert_eq!(fields, ["name", "min_instances", "idle_time_before_scale_down"]);
        assert_eq!(ComputePool::new("pool", None, Some(0), None).unwrap_err()[0].0, "max_instances");
    }

    #[test]
    fn priorities_parse_and_order() {
        assert_eq!(Priority::parse("HIGH").unwrap(), Priority::High);
        assert!(Priority::parse("urgent").unwrap_err().0.contains("low, medium or high"));
        for p in Priority::ALL {
            assert_eq!(Priority::from_rank(p.rank()), p);
        }
        assert!(Priority::High > Priority::Medium && Priority::default() == Priority::Medium);
    }

    #[test]
    fn a_job_takes_instances_of_its_pool_and_workers_of_the_machine() {
        let mut c = cap(&[("cpu-cluster", 4), ("gpu-pool", 1)], 8);
        let d = schedule(&[job("cpu-cluster", 2, 3, 100), job("gpu-pool", 3, 2, 1)], &mut c);
        assert_eq!(d, [Decision::Start { instances: 2, workers: 6 }, Decision::Start { instances: 1, workers: 1 }]);
        assert_eq!((c.in_use["cpu-cluster"], c.in_use["gpu-pool"], c.workers_in_use), (2, 1, 7));
        // Only the merge left: no instance, no worker.
        let mut c = cap(&[("cpu-cluster", 1)], 2);
        assert_eq!(schedule(&[job("cpu-cluster", 1, 2, 0)], &mut c), [Decision::Start { instances: 0, workers: 0 }]);
        // More than the machine has: capped, so it can always start once alone.
        let mut c = cap(&[("cpu-cluster", 10)], 2);
        assert_eq!(schedule(&[job("cpu-cluster", 5, 4, 50)], &mut c), [Decision::Start { instances: 5, workers: 2 }]);
    }

    #[test]
    fn a_full_pool_holds_its_queue_but_not_other_pools() {
        let mut c = cap(&[("a", 1), ("b", 1)], 8);
        c.in_use.insert("a".into(), 1);
        let d = schedule(&[job("a", 1, 1, 5), job("a", 1, 1, 1), job("b", 1, 1, 3), job("gone", 1, 1, 1)], &mut c);
        assert!(matches!(&d[0], Decision::Wait(w) if w.contains("compute a (1 of 1 in use)")), "{d:?}");
        assert_eq!(d[1], d[0], "the later job on the same pool does not overtake");
        assert_eq!(d[2], Decision::Start { instances: 1, workers: 1 });
        assert_eq!(d[3], Decision::NoSuchCompute);
    }

    #[test]
    fn a_full_machine_holds_every_later_job() {
        let mut c = cap(&[("a", 4), ("b", 4)], 2);
        let d = schedule(&[job("a", 1, 2, 10), job("b", 1, 1, 1), job("a", 1, 1, 1)], &mut c);
        assert_eq!(d[0], Decision::Start { instances: 1, workers: 2 });
        assert!(matches!(&d[1], Decision::Wait(w) if w.contains("worker process(es) on this server (2 of 2")), "{d:?}");
        assert_eq!(d[2], d[1]);
    }
}
