//! The scheduler's memory: one `job_runs` row per (job, tick) that some daemon claimed.
//!
//! Claiming is an `INSERT ... ON CONFLICT DO NOTHING`: of several daemons that reach the same
//! tick, exactly one inserts the row and runs the job. The latest claimed tick of a job is how
//! a daemon coming back after downtime knows which run it missed.

use sqlx::Row;

use crate::store::{StepContext, Store, StoreError};

/// The result of trying to claim a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickClaim {
    /// This daemon claimed it and must run the job.
    Won,
    /// Another daemon (or an earlier run of this one) already has it.
    Taken,
}

/// One recorded run of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobRun {
    pub job: String,
    pub tick_at: i64,
    pub claimed_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub outcome: Option<String>,
}

/// Claims the run of `job` for the tick at `tick_at`.
pub async fn claim_tick(
    store: &Store,
    job: &str,
    tick_at: i64,
    claimed_by: &str,
    now: i64,
) -> Result<TickClaim, StoreError> {
    let mut tx = store.begin_write().await?;
    let row = sqlx::query(
        "INSERT INTO job_runs (job, tick_at, claimed_by, started_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (job, tick_at) DO NOTHING RETURNING tick_at",
    )
    .bind(job)
    .bind(tick_at)
    .bind(claimed_by)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .step("claim a job tick")?;
    tx.commit().await.step("commit a job tick claim")?;
    Ok(match row {
        Some(_) => TickClaim::Won,
        None => TickClaim::Taken,
    })
}

/// Records how a claimed run ended (`ok: ...` or `error: ...`).
pub async fn finish_tick(
    store: &Store,
    job: &str,
    tick_at: i64,
    outcome: &str,
    now: i64,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "UPDATE job_runs SET finished_at = $3, outcome = $4 WHERE job = $1 AND tick_at = $2",
    )
    .bind(job)
    .bind(tick_at)
    .bind(now)
    .bind(outcome)
    .execute(&mut *tx)
    .await
    .step("record a job run's outcome")?;
    tx.commit().await.step("commit a job run's outcome")?;
    Ok(())
}

/// The latest tick of `job` that any daemon claimed, if any.
pub async fn last_tick(store: &Store, job: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT MAX(tick_at) AS tick_at FROM job_runs WHERE job = $1")
        .bind(job)
        .fetch_one(store.pool())
        .await
        .step("read a job's last tick")?;
    row.try_get::<Option<i64>, _>("tick_at")
        .step("read a job's last tick")
}

/// The runs of `job`, oldest first.
pub async fn list_runs(store: &Store, job: &str) -> Result<Vec<JobRun>, StoreError> {
    let rows = sqlx::query(
        "SELECT job, tick_at, claimed_by, started_at, finished_at, outcome FROM job_runs \
         WHERE job = $1 ORDER BY tick_at",
    )
    .bind(job)
    .fetch_all(store.pool())
    .await
    .step("list a job's runs")?;
    rows.iter()
        .map(|row| {
            Ok(JobRun {
                job: row.try_get("job")?,
                tick_at: row.try_get("tick_at")?,
                claimed_by: row.try_get("claimed_by")?,
                started_at: row.try_get("started_at")?,
                finished_at: row.try_get("finished_at")?,
                outcome: row.try_get("outcome")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .step("read a job run")
}
