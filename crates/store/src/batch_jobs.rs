//! Batch jobs and their mini-batches: a job and all its mini-batches are written in one
//! transaction; each mini-batch is committed at most once, after its rows are on disk.

use crate::{Store, StoreError, conflict_or};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BatchJobRow {
    pub workspace: String,
    pub name: String,
    /// Arrival order (set by [`Store::insert_batch_job`]).
    pub seq: i64,
    pub endpoint: String,
    pub deployment: String,
    pub plan_json: String,
    pub input_json: String,
    pub job_dir: String,
    pub output_dir: String,
    pub status: String,
    pub message: Option<String>,
    pub output_file: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    /// Queue order before arrival: 1 low, 2 medium (the default), 3 high.
    pub priority: i64,
    /// The compute pool the job draws instances from.
    pub compute: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MiniBatchRow {
    pub idx: i64,
    pub files_json: String,
    pub file_count: i64,
    pub state: String,
    pub attempts: i64,
    pub items: i64,
    pub failed_items: i64,
    pub error: Option<String>,
    pub failed_files_json: Option<String>,
}

/// Counts over a job's mini-batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct MiniBatchCounts {
    pub total: i64,
    pub committed: i64,
    pub failed: i64,
    pub files: i64,
    pub items: i64,
    pub failed_items: i64,
}

/// What a finished attempt at a mini-batch recorded.
#[derive(Debug, Clone, Default)]
pub struct MiniBatchOutcome {
    pub items: i64,
    pub failed_items: i64,
    pub error: Option<String>,
    pub failed_files_json: Option<String>,
}

/// A job's move to another status.
#[derive(Debug, Clone, Copy)]
pub struct JobTransition<'a> {
    pub to: &'a str,
    pub message: Option<&'a str>,
    /// The merged output file, when the move writes it.
    pub output_file: Option<&'a str>,
    /// Stamps `ended_at`.
    pub ended: bool,
    pub now: &'a str,
}

impl<'a> JobTransition<'a> {
    pub fn to(to: &'a str, now: &'a str) -> Self {
        Self { to, message: None, output_file: None, ended: false, now }
    }
}

/// `["a", "b"]`, for `IN (SELECT value FROM json_each(?))`.
fn json_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{}\"", s.replace(['"', '\\'], ""))).collect();
    format!("[{}]", quoted.join(","))
}

pub const MINI_BATCH_PENDING: &str = "Pending";
pub const MINI_BATCH_COMMITTED: &str = "Committed";
pub const MINI_BATCH_FAILED: &str = "Failed";

impl Store {
    /// Records a job and its mini-batches (`files_json`, file count) in one transaction and
    /// gives it the next arrival number; returns the stored row.
    pub async fn insert_batch_job(
        &self,
        job: &BatchJobRow,
        mini_batches: &[(String, i64)],
    ) -> Result<BatchJobRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The first statement writes, so the transaction holds the write lock from the start
        // (a read first could not be upgraded while the scheduler commits mini-batches).
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO batch_jobs (workspace, name, seq, endpoint, deployment, plan_json, input_json, job_dir, output_dir,
             status, message, output_file, created_at, started_at, ended_at, priority, compute)
             VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM batch_jobs), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             RETURNING seq",
        )
        .bind(&job.workspace)
        .bind(&job.name)
        .bind(&job.endpoint)
        .bind(&job.deployment)
        .bind(&job.plan_json)
        .bind(&job.input_json)
        .bind(&job.job_dir)
        .bind(&job.output_dir)
        .bind(&job.status)
        .bind(&job.message)
        .bind(&job.output_file)
        .bind(&job.created_at)
        .bind(&job.started_at)
        .bind(&job.ended_at)
        .bind(job.priority)
        .bind(&job.compute)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_or)?;
        for (idx, (files_json, count)) in mini_batches.iter().enumerate() {
            sqlx::query(
                "INSERT INTO batch_mini_batches (workspace, job, idx, files_json, file_count, state) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&job.workspace)
            .bind(&job.name)
            .bind(idx as i64)
            .bind(files_json)
            .bind(count)
            .bind(MINI_BATCH_PENDING)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(BatchJobRow { seq, ..job.clone() })
    }

    pub async fn get_batch_job(&self, ws: &str, name: &str) -> Result<Option<BatchJobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM batch_jobs WHERE workspace = ? AND name = ?")
            .bind(ws)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Jobs in arrival order: of one endpoint, or of the whole workspace.
    pub async fn list_batch_jobs(&self, ws: &str, endpoint: Option<&str>) -> Result<Vec<BatchJobRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM batch_jobs WHERE workspace = ? AND (? IS NULL OR endpoint = ?) ORDER BY seq")
            .bind(ws)
            .bind(endpoint)
            .bind(endpoint)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every job with one of `statuses`, in queue order: higher priority first, then arrival.
    pub async fn batch_jobs_with_status(&self, statuses: &[&str]) -> Result<Vec<BatchJobRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM batch_jobs WHERE status IN (SELECT value FROM json_each(?)) ORDER BY priority DESC, seq",
        )
        .bind(json_list(statuses))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Moves a job to `t.to` if its status is one of `from`; `Running` stamps `started_at`
    /// once, `t.ended` stamps `ended_at`. False when the job was elsewhere (a cancel won).
    pub async fn transition_batch_job(
        &self,
        key: (&str, &str),
        from: &[&str],
        t: &JobTransition<'_>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE batch_jobs SET status = ?, message = ?, output_file = COALESCE(?, output_file),
             started_at = CASE WHEN ? = 'Running' THEN COALESCE(started_at, ?) ELSE started_at END,
             ended_at = CASE WHEN ? THEN ? ELSE ended_at END
             WHERE workspace = ? AND name = ? AND status IN (SELECT value FROM json_each(?))",
        )
        .bind(t.to)
        .bind(t.message)
        .bind(t.output_file)
        .bind(t.to)
        .bind(t.now)
        .bind(t.ended)
        .bind(t.now)
        .bind(key.0)
        .bind(key.1)
        .bind(json_list(from))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// A job's mini-batches in input order, all or only those in `state`.
    pub async fn mini_batches(
        &self,
        ws: &str,
        job: &str,
        state: Option<&str>,
    ) -> Result<Vec<MiniBatchRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT idx, files_json, file_count, state, attempts, items, failed_items, error, failed_files_json
             FROM batch_mini_batches WHERE workspace = ? AND job = ? AND (? IS NULL OR state = ?) ORDER BY idx",
        )
        .bind(ws)
        .bind(job)
        .bind(state)
        .bind(state)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Commits a mini-batch whose rows are already on disk; false if it was not pending (it
    /// never is committed twice).
    pub async fn commit_mini_batch(
        &self,
        key: (&str, &str, i64),
        outcome: &MiniBatchOutcome,
    ) -> Result<bool, StoreError> {
        self.end_mini_batch(key, MINI_BATCH_COMMITTED, outcome).await
    }

    /// Records that every attempt at a mini-batch failed (each counted with
    /// [`Store::count_mini_batch_attempt`]).
    pub async fn fail_mini_batch(
        &self,
        key: (&str, &str, i64),
        outcome: &MiniBatchOutcome,
    ) -> Result<bool, StoreError> {
        self.end_mini_batch(key, MINI_BATCH_FAILED, outcome).await
    }

    async fn end_mini_batch(
        &self,
        key: (&str, &str, i64),
        state: &str,
        o: &MiniBatchOutcome,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE batch_mini_batches SET state = ?, items = ?, failed_items = ?, error = ?, failed_files_json = ?,
             attempts = attempts + (CASE WHEN ? = 'Committed' THEN 1 ELSE 0 END)
             WHERE workspace = ? AND job = ? AND idx = ? AND state = ?",
        )
        .bind(state)
        .bind(o.items)
        .bind(o.failed_items)
        .bind(&o.error)
        .bind(&o.failed_files_json)
        .bind(state)
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .bind(MINI_BATCH_PENDING)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Counts a failed attempt of a pending mini-batch (it stays pending); returns the attempts
    /// made so far.
    pub async fn count_mini_batch_attempt(&self, key: (&str, &str, i64), error: &str) -> Result<i64, StoreError> {
        let (attempts,): (i64,) = sqlx::query_as(
            "UPDATE batch_mini_batches SET attempts = attempts + 1, error = ? WHERE workspace = ? AND job = ? AND idx = ?
             RETURNING attempts",
        )
        .bind(error)
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .fetch_one(&self.pool)
        .await?;
        Ok(attempts)
    }

    pub async fn mini_batch_counts(&self, ws: &str, job: &str) -> Result<MiniBatchCounts, StoreError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*) AS total,
                    COALESCE(SUM(state = 'Committed'), 0) AS committed,
                    COALESCE(SUM(state = 'Failed'), 0) AS failed,
                    COALESCE(SUM(file_count), 0) AS files,
                    COALESCE(SUM(items), 0) AS items,
                    COALESCE(SUM(failed_items), 0) AS failed_items
             FROM batch_mini_batches WHERE workspace = ? AND job = ?",
        )
        .bind(ws)
        .bind(job)
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> BatchJobRow {
        BatchJobRow {
            workspace: "default".into(),
            name: name.into(),
            seq: 0,
            endpoint: "ep".into(),
            deployment: "dpl".into(),
            plan_json: "{}".into(),
            input_json: "{}".into(),
            job_dir: "/j".into(),
            output_dir: "/j/out".into(),
            status: "NotStarted".into(),
            message: None,
            output_file: None,
            created_at: "t0".into(),
            started_at: None,
            ended_at: None,
            priority: 2,
            compute: "cpu-cluster".into(),
        }
    }

    #[tokio::test]
    async fn mini_batches_commit_once_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).await.unwrap();
            let a = store.insert_batch_job(&job("job-a"), &[("[\"a\"]".into(), 1), ("[\"b\",\"c\"]".into(), 2)]).await;
            assert_eq!(a.unwrap().seq, 1);
            assert_eq!(store.insert_batch_job(&job("job-b"), &[]).await.unwrap().seq, 2);
            assert!(matches!(store.insert_batch_job(&job("job-a"), &[]).await, Err(StoreError::Conflict)));
            let key = ("default", "job-a", 0);
            let outcome = MiniBatchOutcome { items: 3, ..Default::default() };
            assert!(store.commit_mini_batch(key, &outcome).await.unwrap());
            assert!(!store.commit_mini_batch(key, &outcome).await.unwrap(), "never committed twice");
            assert_eq!(store.count_mini_batch_attempt(("default", "job-a", 1), "boom").await.unwrap(), 1);
            let k = ("default", "job-a");
            assert!(store.transition_batch_job(k, &["NotStarted"], &JobTransition::to("Running", "t1")).await.unwrap());
            assert!(!store.transition_batch_job(k, &["NotStarted"], &JobTransition::to("Queued", "t2")).await.unwrap());
        }
        let store = Store::open(&path).await.unwrap();
        let counts = store.mini_batch_counts("default", "job-a").await.unwrap();
        assert_eq!((counts.total, counts.committed, counts.files, counts.items), (2, 1, 3, 3));
        let pending = store.mini_batches("default", "job-a", Some(MINI_BATCH_PENDING)).await.unwrap();
        assert_eq!((pending.len(), pending[0].idx, pending[0].attempts), (1, 1, 1));
        let running = store.batch_jobs_with_status(&["Running", "NotStarted"]).await.unwrap();
        let names: Vec<&str> = running.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["job-a", "job-b"]);
        assert_eq!(running[0].started_at.as_deref(), Some("t1"));
        // A later job of higher priority comes first in the queue; a lower one last.
        store.insert_batch_job(&BatchJobRow { priority: 3, ..job("job-c") }, &[]).await.unwrap();
        store.insert_batch_job(&BatchJobRow { priority: 1, compute: "gpu".into(), ..job("job-d") }, &[]).await.unwrap();
        let queue = store.batch_jobs_with_status(&["Running", "NotStarted"]).await.unwrap();
        let names: Vec<&str> = queue.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["job-c", "job-a", "job-b", "job-d"]);
        assert_eq!(queue[3].compute, "gpu");
    }
}
