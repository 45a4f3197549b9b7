//! The scheduler's memory: one `job_runs` row per (job, tick) that some daemon claimed.
//!
//! Claiming is an `INSERT ... ON CONFLICT DO NOTHING`: of several daemons that reach the same
//! tick, exactly one inserts the row and runs the job. The latest claimed tick of a job is how
//! a daemon coming back after downtime knows which run it missed.
//!
//! A claim is a lease: `claimed_until` is renewed while the run goes on. A row left unfinished
//! (`finished_at` NULL) whose lease has run out belonged to a daemon that died during the run;
//! [`take_over_stale_tick`] hands it to another daemon with a conditional `UPDATE`, so of
//! several daemons only one takes it over. Rows claimed before leases existed have none and
//! count as run out.

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
    /// Until when the claimant's lease runs, while the run is unfinished.
    pub claimed_until: Option<i64>,
}

/// Claims the run of `job` for the tick at `tick_at`, leased until `claimed_until`.
pub async fn claim_tick(
    store: &Store,
    job: &str,
    tick_at: i64,
    claimed_by: &str,
    now: i64,
    claimed_until: i64,
) -> Result<TickClaim, StoreError> {
    let mut tx = store.begin_write().await?;
    let row = sqlx::query(
        "INSERT INTO job_runs (job, tick_at, claimed_by, started_at, claimed_until) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job, tick_at) DO NOTHING RETURNING tick_at",
    )
    .bind(job)
    .bind(tick_at)
    .bind(claimed_by)
    .bind(now)
    .bind(claimed_until)
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

/// Extends the lease of a run this daemon holds; `false` when the claim is no longer its own
/// (the run finished, or another daemon took the tick over after the lease ran out).
pub async fn renew_claim(
    store: &Store,
    job: &str,
    tick_at: i64,
    claimed_by: &str,
    claimed_until: i64,
) -> Result<bool, StoreError> {
    let mut tx = store.begin_write().await?;
    let renewed = sqlx::query(
        "UPDATE job_runs SET claimed_until = $4 \
         WHERE job = $1 AND tick_at = $2 AND claimed_by = $3 AND finished_at IS NULL",
    )
    .bind(job)
    .bind(tick_at)
    .bind(claimed_by)
    .bind(claimed_until)
    .execute(&mut *tx)
    .await
    .step("renew a job tick's lease")?
    .rows_affected();
    tx.commit().await.step("commit a job tick's lease")?;
    Ok(renewed == 1)
}

/// Takes over the unfinished run of `job` at `tick_at` if its lease ran out before `now`: the
/// claim passes to `claimed_by`, leased until `claimed_until`, and the caller runs the tick
/// again. `Taken` when the run finished, is still leased, or another daemon took it first.
pub async fn take_over_stale_tick(
    store: &Store,
    job: &str,
    tick_at: i64,
    claimed_by: &str,
    now: i64,
    claimed_until: i64,
) -> Result<TickClaim, StoreError> {
    let mut tx = store.begin_write().await?;
    let taken = sqlx::query(
        "UPDATE job_runs SET claimed_by = $3, started_at = $4, claimed_until = $5 \
         WHERE job = $1 AND tick_at = $2 AND finished_at IS NULL \
         AND COALESCE(claimed_until, 0) < $4",
    )
    .bind(job)
    .bind(tick_at)
    .bind(claimed_by)
    .bind(now)
    .bind(claimed_until)
    .execute(&mut *tx)
    .await
    .step("take over a stale job tick")?
    .rows_affected();
    tx.commit().await.step("commit a job tick take-over")?;
    Ok(if taken == 1 {
        TickClaim::Won
    } else {
        TickClaim::Taken
    })
}

/// Closes the unfinished runs of `job` before the tick at `before` whose leases ran out before
/// `now`, with `outcome`: a later tick supersedes them. Returns how many were closed.
pub async fn abandon_stale_ticks(
    store: &Store,
    job: &str,
    before: i64,
    outcome: &str,
    now: i64,
) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    let closed = sqlx::query(
        "UPDATE job_runs SET finished_at = $3, outcome = $4 \
         WHERE job = $1 AND tick_at < $2 AND finished_at IS NULL \
         AND COALESCE(claimed_until, 0) < $3",
    )
    .bind(job)
    .bind(before)
    .bind(now)
    .bind(outcome)
    .execute(&mut *tx)
    .await
    .step("close stale job ticks")?
    .rows_affected();
    tx.commit().await.step("commit closing stale job ticks")?;
    Ok(closed)
}

/// Ends the leases of every unfinished run of `job`, so they can be taken over at once. Only
/// right when no other daemon can be running the job: a single-instance (SQLite) daemon calls
/// it at start, when the unfinished runs are those of its own previous, killed, process.
pub async fn release_unfinished_ticks(store: &Store, job: &str) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    let released =
        sqlx::query("UPDATE job_runs SET claimed_until = 0 WHERE job = $1 AND finished_at IS NULL")
            .bind(job)
            .execute(&mut *tx)
            .await
            .step("release unfinished job ticks")?
            .rows_affected();
    tx.commit()
        .await
        .step("commit releasing unfinished job ticks")?;
    Ok(released)
}

/// When the earliest lease on an unfinished run of `job` runs out, if any run is unfinished.
pub async fn earliest_lease_end(store: &Store, job: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT MIN(COALESCE(claimed_until, 0)) AS until FROM job_runs \
         WHERE job = $1 AND finished_at IS NULL",
    )
    .bind(job)
    .fetch_one(store.pool())
    .await
    .step("read a job's earliest lease")?;
    row.try_get::<Option<i64>, _>("until")
        .step("read a job's earliest lease")
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
        "SELECT job, tick_at, claimed_by, started_at, finished_at, outcome, claimed_until \
         FROM job_runs WHERE job = $1 ORDER BY tick_at",
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
                claimed_until: row.try_get("claimed_until")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .step("read a job run")
}
