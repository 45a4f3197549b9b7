//! What the demand ranking and the promotion run read and write: confirmed subscription counts,
//! support levels, the promotions history and the demotion clock (`below_demote_since`).
//!
//! Only plain numbers are queried here; scores and ordering are worked out in Rust
//! (`crate::ranking`), so they come out the same on both databases.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use crate::domain::SupportLevel;
use crate::store::councils::{COUNCIL_COLUMNS, Council, council_from_row};
use crate::store::{StepContext, StoreError};

/// Confirmed subscriptions of subscribers who are not suppressed, for one council.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemandCount {
    pub council_id: i64,
    pub residents: i64,
    pub professionals: i64,
    /// The latest confirmation among the counted subscriptions: when the council reached its
    /// current count.
    pub last_confirmed_at: Option<i64>,
}

/// Demand counts of every council that has any, by council id.
pub async fn demand_counts(
    conn: &mut AnyConnection,
) -> Result<HashMap<i64, DemandCount>, StoreError> {
    let rows = sqlx::query(
        "SELECT sub.council_id AS council_id, s.kind AS kind, COUNT(*) AS n, \
         MAX(sub.confirmed_at) AS last_confirmed_at \
         FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
         WHERE sub.state = 'confirmed' AND s.suppressed_at IS NULL \
         GROUP BY sub.council_id, s.kind",
    )
    .fetch_all(&mut *conn)
    .await
    .step("count confirmed subscriptions per council")?;
    let mut out: HashMap<i64, DemandCount> = HashMap::new();
    for row in rows {
        let council_id: i64 = row.try_get("council_id").step("decode a demand count")?;
        let kind: String = row.try_get("kind").step("decode a demand count")?;
        let n: i64 = row.try_get("n").step("decode a demand count")?;
        let last: Option<i64> = row
            .try_get("last_confirmed_at")
            .step("decode a demand count")?;
        let entry = out.entry(council_id).or_insert(DemandCount {
            council_id,
            ..DemandCount::default()
        });
        match kind.as_str() {
            "professional" => entry.professionals += n,
            _ => entry.residents += n,
        }
        entry.last_confirmed_at = entry.last_confirmed_at.max(last);
    }
    Ok(out)
}

/// Every council, by id.
pub async fn all_councils(conn: &mut AnyConnection) -> Result<Vec<Council>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COUNCIL_COLUMNS} FROM councils ORDER BY id"
    ))
    .fetch_all(&mut *conn)
    .await
    .step("list councils")?;
    rows.iter()
        .map(council_from_row)
        .collect::<Result<_, _>>()
        .step("decode councils")
}

/// The latest entry of each council's promotions history: (direction, reason).
pub async fn latest_support_changes(
    conn: &mut AnyConnection,
) -> Result<HashMap<i64, (String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT p.council_id AS council_id, p.direction AS direction, p.reason AS reason \
         FROM promotions p WHERE p.id = \
         (SELECT MAX(p2.id) FROM promotions p2 WHERE p2.council_id = p.council_id)",
    )
    .fetch_all(&mut *conn)
    .await
    .step("read the latest support change of each council")?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("council_id")?,
                (row.try_get("direction")?, row.try_get("reason")?),
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .step("decode support changes")
}

/// Since when each council has been below the demotion floor, for those that are.
pub async fn below_demote_since(conn: &mut AnyConnection) -> Result<HashMap<i64, i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, below_demote_since FROM councils WHERE below_demote_since IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await
    .step("read the demotion clocks")?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("below_demote_since")?)))
        .collect::<Result<_, sqlx::Error>>()
        .step("decode the demotion clocks")
}

pub async fn set_below_demote_since(
    conn: &mut AnyConnection,
    council_id: i64,
    since: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE councils SET below_demote_since = $1 WHERE id = $2")
        .bind(since)
        .bind(council_id)
        .execute(&mut *conn)
        .await
        .step("set a council's demotion clock")?;
    Ok(())
}

/// Stops every demotion clock (demotion switched off).
pub async fn clear_demotion_clocks(conn: &mut AnyConnection) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE councils SET below_demote_since = NULL WHERE below_demote_since IS NOT NULL",
    )
    .execute(&mut *conn)
    .await
    .step("clear the demotion clocks")?
    .rows_affected())
}

/// Changes a council's support level unless it already has it. Returns whether it changed.
pub async fn change_support(
    conn: &mut AnyConnection,
    council_id: i64,
    level: SupportLevel,
    now: i64,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE councils SET support = $1, support_changed_at = $2, below_demote_since = NULL, \
         updated_at = $2 WHERE id = $3 AND support <> $1",
    )
    .bind(level.as_str())
    .bind(now)
    .bind(council_id)
    .execute(&mut *conn)
    .await
    .step("change a council's support level")?
    .rows_affected();
    Ok(updated == 1)
}

/// One entry of the promotions history to record.
#[derive(Debug, Clone)]
pub struct NewPromotion<'a> {
    pub council_id: i64,
    /// `promote` or `demote`.
    pub direction: &'a str,
    pub score: f64,
    pub rank: Option<i64>,
    /// `threshold`, `request` or `operator`.
    pub reason: &'a str,
    pub request_id: Option<i64>,
}

pub async fn record_promotion(
    conn: &mut AnyConnection,
    promotion: &NewPromotion<'_>,
    now: i64,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO promotions (council_id, happened_at, direction, score, rank, reason, \
         request_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(promotion.council_id)
    .bind(now)
    .bind(promotion.direction)
    .bind(promotion.score)
    .bind(promotion.rank)
    .bind(promotion.reason)
    .bind(promotion.request_id)
    .fetch_one(&mut *conn)
    .await
    .step("record a promotion")?
    .try_get("id")
    .step("read a new promotion's id")
}

/// Subscribers with a confirmed subscription to a council who are not suppressed, by id.
pub async fn confirmed_subscriber_ids(
    conn: &mut AnyConnection,
    council_id: i64,
) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT s.id AS id FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id \
         WHERE sub.council_id = $1 AND sub.state = 'confirmed' AND s.suppressed_at IS NULL \
         ORDER BY s.id",
    )
    .bind(council_id)
    .fetch_all(&mut *conn)
    .await
    .step("list a council's confirmed subscribers")?;
    rows.iter()
        .map(|row| row.try_get("id"))
        .collect::<Result<_, _>>()
        .step("decode subscriber ids")
}

/// Takes the promotion lock for the rest of the transaction (PostgreSQL), so that two daemons
/// running the promotion job at once take turns and promote each council once. SQLite needs
/// nothing: a write transaction there already holds the database's write lock.
pub async fn lock_promotion(conn: &mut AnyConnection) -> Result<(), StoreError> {
    /// An arbitrary constant naming the promotion lock among advisory locks.
    const PROMOTION_LOCK: i64 = 0x636f_756e_6369_6c01;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PROMOTION_LOCK)
        .execute(&mut *conn)
        .await
        .step("take the promotion lock")?;
    Ok(())
}
