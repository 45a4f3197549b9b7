//! Enablement requests: someone asking for a council to get full support, and the operator's
//! decision on it.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::domain::{EmailAddress, RequestState};
use crate::store::{StepContext, StoreError, flag, int_flag};

/// One request as stored, with its council's slug and name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnablementRequest {
    pub id: i64,
    pub council_id: i64,
    pub council_slug: String,
    pub council_name: String,
    pub subscriber_id: Option<i64>,
    /// `None` once the person has been erased.
    pub name: Option<String>,
    pub organisation: Option<String>,
    /// `None` once the person has been erased.
    pub email: Option<String>,
    pub message: Option<String>,
    pub represents_council: bool,
    pub state: RequestState,
    pub reason: Option<String>,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

/// A request to record.
#[derive(Debug, Clone)]
pub struct NewRequestRow<'a> {
    pub council_id: i64,
    pub subscriber_id: Option<i64>,
    pub name: &'a str,
    pub organisation: Option<&'a str>,
    pub email: &'a EmailAddress,
    pub message: &'a str,
    pub represents_council: bool,
}

const REQUEST_SELECT: &str = "SELECT r.id, r.council_id, c.slug AS council_slug, \
     c.name AS council_name, r.subscriber_id, r.name, r.organisation, r.email, r.message, \
     r.represents_council, r.state, r.reason, r.created_at, r.decided_at \
     FROM enablement_requests r JOIN councils c ON c.id = r.council_id";

fn request_from_row(row: &AnyRow) -> Result<EnablementRequest, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(EnablementRequest {
        id: row.try_get("id")?,
        council_id: row.try_get("council_id")?,
        council_slug: row.try_get("council_slug")?,
        council_name: row.try_get("council_name")?,
        subscriber_id: row.try_get("subscriber_id")?,
        name: row.try_get("name")?,
        organisation: row.try_get("organisation")?,
        email: row.try_get("email")?,
        message: row.try_get("message")?,
        represents_council: flag(row.try_get("represents_council")?),
        state: state.parse().map_err(|err| sqlx::Error::ColumnDecode {
            index: "state".to_owned(),
            source: Box::new(err),
        })?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

pub async fn add_request(
    conn: &mut AnyConnection,
    request: &NewRequestRow<'_>,
    now: i64,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO enablement_requests (council_id, subscriber_id, name, organisation, email, \
         message, represents_council, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) RETURNING id",
    )
    .bind(request.council_id)
    .bind(request.subscriber_id)
    .bind(request.name)
    .bind(request.organisation)
    .bind(request.email.as_str())
    .bind(request.message)
    .bind(int_flag(request.represents_council))
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .step("record an enablement request")?
    .try_get("id")
    .step("read a new request's id")
}

pub async fn request_by_id(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<EnablementRequest>, StoreError> {
    sqlx::query(&format!("{REQUEST_SELECT} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .step("read an enablement request")?
        .map(|row| request_from_row(&row))
        .transpose()
        .step("decode an enablement request")
}

/// Requests, newest first; with `state`, only those in it.
pub async fn list_requests(
    conn: &mut AnyConnection,
    state: Option<RequestState>,
) -> Result<Vec<EnablementRequest>, StoreError> {
    let rows = sqlx::query(&format!(
        "{REQUEST_SELECT} WHERE ($1 = '' OR r.state = $1) ORDER BY r.created_at DESC, r.id DESC"
    ))
    .bind(state.map(RequestState::as_str).unwrap_or(""))
    .fetch_all(&mut *conn)
    .await
    .step("list enablement requests")?;
    rows.iter()
        .map(request_from_row)
        .collect::<Result<_, _>>()
        .step("decode enablement requests")
}

/// Requests made by a subscriber or from an address, oldest first.
pub async fn requests_by_person(
    conn: &mut AnyConnection,
    subscriber_id: i64,
    email: &EmailAddress,
) -> Result<Vec<EnablementRequest>, StoreError> {
    let rows = sqlx::query(&format!(
        "{REQUEST_SELECT} WHERE r.subscriber_id = $1 OR r.email = $2 ORDER BY r.id"
    ))
    .bind(subscriber_id)
    .bind(email.as_str())
    .fetch_all(&mut *conn)
    .await
    .step("list a person's enablement requests")?;
    rows.iter()
        .map(request_from_row)
        .collect::<Result<_, _>>()
        .step("decode enablement requests")
}

/// Records a decision on a pending request. Returns false when it was no longer pending.
pub async fn decide_request(
    conn: &mut AnyConnection,
    id: i64,
    state: RequestState,
    reason: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let updated = sqlx::query(
        "UPDATE enablement_requests SET state = $1, reason = $2, decided_at = $3 \
         WHERE id = $4 AND state = 'pending'",
    )
    .bind(state.as_str())
    .bind(reason)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await
    .step("record a decision on an enablement request")?
    .rows_affected();
    Ok(updated == 1)
}

/// Approved requests whose council has not yet been promoted for them, oldest first: the
/// promotion run promotes these (capacity permitting).
pub async fn approved_awaiting_promotion(
    conn: &mut AnyConnection,
) -> Result<Vec<EnablementRequest>, StoreError> {
    let rows = sqlx::query(&format!(
        "{REQUEST_SELECT} WHERE r.state = 'approved' AND NOT EXISTS \
         (SELECT 1 FROM promotions p WHERE p.request_id = r.id) \
         ORDER BY r.decided_at, r.id"
    ))
    .fetch_all(&mut *conn)
    .await
    .step("list approved requests awaiting promotion")?;
    rows.iter()
        .map(request_from_row)
        .collect::<Result<_, _>>()
        .step("decode enablement requests")
}
