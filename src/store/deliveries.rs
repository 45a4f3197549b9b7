//! The delivery ledger's entry point: queueing a message exactly once.
//!
//! One row per message under a unique `dedupe_key` (for example `digest:{subscriber}:{week}` or
//! `notice:promoted:{promotion}:{subscriber}`), so queueing the same message twice is a no-op.
//! The row holds what is needed to render the message at send time (`payload`), never the
//! rendered e-mail or a token in clear.

use sqlx::Row;

use crate::store::{StepContext, StoreError, WriteTx};

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub dedupe_key: String,
    /// `digest`, or the notice's template name (`promoted`, `demoted`, ...).
    pub kind: String,
    pub subscriber_id: Option<i64>,
    pub digest_id: Option<i64>,
    /// JSON the renderer needs, such as `{"council_id": 12}`.
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued(i64),
    AlreadyQueued,
}

/// Queues `delivery` inside the caller's transaction, unless a row with its key exists.
pub async fn enqueue_delivery(
    tx: &mut WriteTx,
    delivery: &NewDelivery,
    now: i64,
) -> Result<Enqueued, StoreError> {
    let row = sqlx::query(
        "INSERT INTO deliveries (dedupe_key, kind, subscriber_id, digest_id, payload, state, \
         attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6) \
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(&delivery.dedupe_key)
    .bind(&delivery.kind)
    .bind(delivery.subscriber_id)
    .bind(delivery.digest_id)
    .bind(delivery.payload.to_string())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .step("queue a delivery")?;
    match row {
        Some(row) => Ok(Enqueued::Queued(
            row.try_get("id").step("read a delivery id")?,
        )),
        None => Ok(Enqueued::AlreadyQueued),
    }
}
