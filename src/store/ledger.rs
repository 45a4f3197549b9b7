//! The delivery ledger's state machine, one row per message (see `deliveries.rs` for queueing):
//!
//! ```text
//! queued ──claim──> sending ──accepted──> sent
//!    ^                 │  ├──4xx/timeout──> retrying ──due──> (claimed again)
//!    └─lease expired───┘  └──5xx/attempts exhausted──> failed ──`retry --failed`──> queued
//! ```
//!
//! A claim takes due rows (queued, or retrying whose next attempt has come), counts the
//! attempt, and leases them to one worker until `lease_until`. A row is marked sent only after
//! the SMTP server accepted the message. If the process dies, its leases expire and
//! [`release_expired_leases`] puts the rows back in the queue, so nothing is lost; what was in
//! flight at the moment of death may be sent a second time.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::DeliveryState;
use crate::store::{Backend, StepContext, Store, StoreError};

/// A delivery leased to this worker for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub dedupe_key: String,
    pub kind: String,
    pub subscriber_id: Option<i64>,
    pub digest_id: Option<i64>,
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// Whether the subscriber is suppressed (too many permanent failures): do not send.
    pub suppressed: bool,
}

/// One row of the ledger as an operator sees it (no address, no payload).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub dedupe_key: String,
    pub kind: String,
    pub subscriber_id: Option<i64>,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub leased_by: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// What a permanent failure did to the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardFailure {
    /// Counted; the subscriber still gets mail.
    Counted { hard_failures: i64 },
    /// This failure reached the limit: the subscriber is now suppressed.
    Suppressed { hard_failures: i64 },
    /// The delivery has no subscriber (or it is gone), so nothing was counted.
    NoSubscriber,
}

/// Whether a result was recorded; `Superseded` means another worker owns the row now (its
/// lease expired and it was claimed again), so this worker's outcome was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Recorded,
    Superseded,
}

/// Leases up to `limit` due deliveries to `worker` until `lease_until`, counting an attempt on
/// each. On PostgreSQL the rows are picked with `FOR UPDATE SKIP LOCKED`, so daemons sharing
/// the database claim disjoint sets. On SQLite the claim is one `UPDATE ... RETURNING` inside
/// a `BEGIN IMMEDIATE` transaction; SQLite serves one daemon (see README).
pub async fn claim_due(
    store: &Store,
    worker: &str,
    limit: i64,
    now: i64,
    lease_until: i64,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let sql = match store.backend() {
        Backend::Postgres => {
            "WITH due AS (SELECT id FROM deliveries \
               WHERE state IN ('queued', 'retrying') AND next_attempt_at <= $1 \
               ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries SET state = 'sending', lease_until = $3, leased_by = $4, \
               attempts = deliveries.attempts + 1 \
             FROM due WHERE deliveries.id = due.id \
             RETURNING deliveries.id, deliveries.dedupe_key, deliveries.kind, \
               deliveries.subscriber_id, deliveries.digest_id, deliveries.payload, \
               deliveries.attempts"
        }
        Backend::Sqlite => {
            "UPDATE deliveries SET state = 'sending', lease_until = $3, leased_by = $4, \
               attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM deliveries \
               WHERE state IN ('queued', 'retrying') AND next_attempt_at <= $1 \
               ORDER BY next_attempt_at, id LIMIT $2) \
             RETURNING id, dedupe_key, kind, subscriber_id, digest_id, payload, attempts"
        }
    };
    let mut tx = store.begin_write().await?;
    let rows = sqlx::query(sql)
        .bind(now)
        .bind(limit)
        .bind(lease_until)
        .bind(worker)
        .fetch_all(&mut *tx)
        .await
        .step("claim due deliveries")?;
    tx.commit().await.step("commit a delivery claim")?;

    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok(ClaimedDelivery {
                id: row.try_get("id")?,
                dedupe_key: row.try_get("dedupe_key")?,
                kind: row.try_get("kind")?,
                subscriber_id: row.try_get("subscriber_id")?,
                digest_id: row.try_get("digest_id")?,
                payload: row.try_get("payload")?,
                attempts: row.try_get("attempts")?,
                suppressed: false,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .step("read claimed deliveries")?;
    claimed.sort_by_key(|delivery| delivery.id);

    mark_suppressed_recipients(store, &mut claimed).await?;
    Ok(claimed)
}

/// Flags the claimed deliveries whose subscriber is suppressed.
async fn mark_suppressed_recipients(
    store: &Store,
    claimed: &mut [ClaimedDelivery],
) -> Result<(), StoreError> {
    let mut subscriber_ids: Vec<i64> = claimed.iter().filter_map(|d| d.subscriber_id).collect();
    subscriber_ids.sort_unstable();
    subscriber_ids.dedup();
    if subscriber_ids.is_empty() {
        return Ok(());
    }
    let mut suppressed = Vec::new();
    for chunk in subscriber_ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT id FROM subscribers WHERE suppressed_at IS NOT NULL AND id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query
            .fetch_all(store.pool())
            .await
            .step("look up suppressed subscribers")?
        {
            suppressed.push(row.try_get::<i64, _>("id").step("read a subscriber id")?);
        }
    }
    for delivery in claimed.iter_mut() {
        delivery.suppressed = delivery
            .subscriber_id
            .is_some_and(|id| suppressed.binary_search(&id).is_ok());
    }
    Ok(())
}

/// Puts deliveries whose lease ran out (their worker died or hung) back in the queue.
/// Returns how many.
pub async fn release_expired_leases(store: &Store, now: i64) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'queued', lease_until = NULL, leased_by = NULL \
         WHERE state = 'sending' AND lease_until < $1",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .step("release expired delivery leases")?;
    tx.commit().await.step("commit released leases")?;
    Ok(done.rows_affected())
}

/// Hands a claimed delivery that was not attempted back to the queue (a drain stopping for
/// shutdown), undoing the attempt its claim counted.
pub async fn release_lease(store: &Store, id: i64, worker: &str) -> Result<Recorded, StoreError> {
    let mut tx = store.begin_write().await?;
    let done = sqlx::query(
        "UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'retrying' ELSE 'queued' END, \
         attempts = attempts - 1, lease_until = NULL, leased_by = NULL \
         WHERE id = $1 AND state = 'sending' AND leased_by = $2",
    )
    .bind(id)
    .bind(worker)
    .execute(&mut *tx)
    .await
    .step("release a delivery lease")?;
    tx.commit().await.step("commit a released lease")?;
    Ok(recorded(done.rows_affected()))
}

/// A message the server accepted, to be recorded as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentMark<'a> {
    pub id: i64,
    pub message_id: Option<&'a str>,
    pub sent_at: i64,
}

/// Records that the server accepted the message. This is written whoever holds the lease
/// now: the message did go out.
pub async fn mark_sent(
    store: &Store,
    id: i64,
    message_id: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    mark_sent_many(
        store,
        &[SentMark {
            id,
            message_id,
            sent_at: now,
        }],
    )
    .await
}

/// [`mark_sent`] for several messages in one statement, so one write (one transaction, one
/// round trip) records them all: either every mark is written or none is. Callers keep groups
/// small (a few hundred marks at most); an empty group writes nothing.
pub async fn mark_sent_many(store: &Store, marks: &[SentMark<'_>]) -> Result<(), StoreError> {
    if marks.is_empty() {
        return Ok(());
    }
    // Each mark binds its id three times (sent_at case, message_id case, id list) so that
    // every placeholder appears once and in order, on both databases.
    let mut sent_at = String::new();
    let mut message_id = String::new();
    let mut ids = Vec::with_capacity(marks.len());
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for _ in marks {
        sent_at.push_str(&format!(" WHEN ${} THEN ${}", next(), next()));
    }
    for _ in marks {
        message_id.push_str(&format!(" WHEN ${} THEN ${}", next(), next()));
    }
    for _ in marks {
        ids.push(format!("${}", next()));
    }
    // One statement is its own transaction on both databases: no BEGIN/COMMIT round trips on
    // the hot path of a send.
    let sql = format!(
        "UPDATE deliveries SET state = 'sent', lease_until = NULL, last_error = NULL, \
         sent_at = CASE id{sent_at} END, \
         message_id = COALESCE(CASE id{message_id} END, message_id) \
         WHERE id IN ({}) AND state <> 'sent'",
        ids.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for mark in marks {
        query = query.bind(mark.id).bind(mark.sent_at);
    }
    for mark in marks {
        query = query.bind(mark.id).bind(mark.message_id);
    }
    for mark in marks {
        query = query.bind(mark.id);
    }
    query
        .execute(store.pool())
        .await
        .step("mark deliveries sent")?;
    Ok(())
}

/// Schedules another attempt at `next_attempt_at` after a transient failure.
pub async fn mark_retrying(
    store: &Store,
    id: i64,
    worker: &str,
    next_attempt_at: i64,
    error: &str,
) -> Result<Recorded, StoreError> {
    let mut tx = store.begin_write().await?;
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'retrying', next_attempt_at = $2, lease_until = NULL, \
         leased_by = NULL, last_error = $3 \
         WHERE id = $1 AND state = 'sending' AND leased_by = $4",
    )
    .bind(id)
    .bind(next_attempt_at)
    .bind(error)
    .bind(worker)
    .execute(&mut *tx)
    .await
    .step("schedule a delivery retry")?;
    tx.commit().await.step("commit a delivery retry")?;
    Ok(recorded(done.rows_affected()))
}

/// Gives up on a delivery. With `count_against` the subscriber's permanent failures are
/// counted and, at `suppress_after`, the subscriber is suppressed; the count and the row's
/// state change in one transaction.
pub async fn mark_failed(
    store: &Store,
    id: i64,
    worker: &str,
    error: &str,
    count_against: Option<i64>,
    suppress_after: i64,
    now: i64,
) -> Result<(Recorded, HardFailure), StoreError> {
    let mut tx = store.begin_write().await?;
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'failed', lease_until = NULL, leased_by = NULL, \
         last_error = $2 WHERE id = $1 AND state = 'sending' AND leased_by = $3",
    )
    .bind(id)
    .bind(error)
    .bind(worker)
    .execute(&mut *tx)
    .await
    .step("mark a delivery failed")?;
    let recorded = recorded(done.rows_affected());

    let mut hard = HardFailure::NoSubscriber;
    if let (Recorded::Recorded, Some(subscriber_id)) = (recorded, count_against) {
        let row = sqlx::query(
            "UPDATE subscribers SET hard_failures = hard_failures + 1, \
             suppressed_at = CASE WHEN suppressed_at IS NULL AND hard_failures + 1 >= $2 \
               THEN $3 ELSE suppressed_at END \
             WHERE id = $1 RETURNING hard_failures, suppressed_at",
        )
        .bind(subscriber_id)
        .bind(suppress_after)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .step("count a subscriber's permanent failure")?;
        if let Some(row) = row {
            let hard_failures: i64 = row.try_get("hard_failures").step("read hard failures")?;
            let suppressed_at: Option<i64> =
                row.try_get("suppressed_at").step("read suppressed_at")?;
            hard = if suppressed_at == Some(now) && hard_failures >= suppress_after {
                HardFailure::Suppressed { hard_failures }
            } else {
                HardFailure::Counted { hard_failures }
            };
        }
    }
    tx.commit().await.step("commit a failed delivery")?;
    Ok((recorded, hard))
}

fn recorded(rows: u64) -> Recorded {
    if rows == 0 {
        Recorded::Superseded
    } else {
        Recorded::Recorded
    }
}

/// Puts every failed delivery back in the queue with a fresh attempt count (`deliveries retry
/// --failed`). Returns how many.
pub async fn requeue_failed(store: &Store, now: i64) -> Result<u64, StoreError> {
    let mut tx = store.begin_write().await?;
    let done = sqlx::query(
        "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = $1, \
         lease_until = NULL, leased_by = NULL WHERE state = 'failed'",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .step("requeue failed deliveries")?;
    tx.commit().await.step("commit requeued deliveries")?;
    Ok(done.rows_affected())
}

/// The ledger's rows, newest first, optionally in one state, at most `limit`.
pub async fn list_deliveries(
    store: &Store,
    state: Option<DeliveryState>,
    limit: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let columns = "id, dedupe_key, kind, subscriber_id, state, attempts, next_attempt_at, \
                   lease_until, leased_by, last_error, created_at, sent_at";
    let rows = match state {
        Some(state) => {
            sqlx::query(&format!(
                "SELECT {columns} FROM deliveries WHERE state = $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(state.as_str())
            .bind(limit)
            .fetch_all(store.pool())
            .await
        }
        None => {
            sqlx::query(&format!(
                "SELECT {columns} FROM deliveries ORDER BY id DESC LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(store.pool())
            .await
        }
    }
    .step("list deliveries")?;
    rows.iter().map(delivery_record).collect()
}

fn delivery_record(row: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    let state: String = row.try_get("state").step("read a delivery state")?;
    let state = state.parse().map_err(|err: crate::domain::ParseError| {
        StoreError::Invalid(format!("delivery state in the database: {err}"))
    })?;
    let read = || -> Result<DeliveryRecord, sqlx::Error> {
        Ok(DeliveryRecord {
            id: row.try_get("id")?,
            dedupe_key: row.try_get("dedupe_key")?,
            kind: row.try_get("kind")?,
            subscriber_id: row.try_get("subscriber_id")?,
            state,
            attempts: row.try_get("attempts")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            lease_until: row.try_get("lease_until")?,
            leased_by: row.try_get("leased_by")?,
            last_error: row.try_get("last_error")?,
            created_at: row.try_get("created_at")?,
            sent_at: row.try_get("sent_at")?,
        })
    };
    read().step("read a delivery")
}

/// How many deliveries are in each state (states with none are left out).
pub async fn count_by_state(store: &Store) -> Result<Vec<(DeliveryState, i64)>, StoreError> {
    let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state")
        .fetch_all(store.pool())
        .await
        .step("count deliveries by state")?;
    let mut counts = Vec::new();
    for row in rows {
        let state: String = row.try_get("state").step("read a delivery state")?;
        let n: i64 = row.try_get("n").step("read a delivery count")?;
        if let Ok(state) = state.parse() {
            counts.push((state, n));
        }
    }
    counts.sort();
    Ok(counts)
}

/// How many deliveries are due now or waiting for a retry (queued, sending or retrying).
pub async fn count_outstanding(store: &Store) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM deliveries WHERE state IN ('queued', 'sending', 'retrying')",
    )
    .fetch_one(store.pool())
    .await
    .step("count outstanding deliveries")?;
    row.try_get("n").step("read a delivery count")
}
