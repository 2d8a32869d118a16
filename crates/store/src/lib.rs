//! The store: desired state of every resource, in SQLite (embedded) behind one typed interface.
//!
//! **Architecture invariant.** Everything that must survive `kill -9` is written here before an
//! API call answers. The store knows rows, not HTTP or JSON schemas: specs arrive as text.

mod batch;
mod batch_jobs;
mod computes;
mod data_assets;
mod deployments;
mod endpoints;
mod environments;
mod models;
mod rollouts;
mod serverless;
mod usage;

pub use batch::{BatchDeploymentRow, BatchEndpointRow};
pub use batch_jobs::{
    BatchJobRow, JobTransition, MINI_BATCH_COMMITTED, MINI_BATCH_FAILED, MINI_BATCH_PENDING, MiniBatchCounts,
    MiniBatchOutcome, MiniBatchRow,
};
pub use computes::ComputeRow;
pub use data_assets::DataAssetRow;
pub use deployments::DeploymentRow;
pub use endpoints::EndpointRow;
pub use environments::EnvironmentRow;
pub use models::ModelRow;
pub use rollouts::RolloutRow;
pub use serverless::{CatalogModelRow, ServerlessEndpointRow, ServerlessUsageRow};
pub use usage::UsageRow;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a row the API acknowledged survives a power cut, not only a process kill.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }
}

/// Maps a unique-constraint violation to [`StoreError::Conflict`].
fn conflict_or(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Database(e),
    }
}
