//! Subscribers, their subscriptions and their one-time tokens.
//!
//! Free functions over a connection, so that the subscription operations can run several of
//! them in one write transaction (`&mut *tx`) or on a pooled connection for reads.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::domain::{EmailAddress, ParseError, SubscriberKind, SubscriptionState};
use crate::store::{StepContext, StoreError};

/// The purpose stored with a subscription confirmation token.
pub const CONFIRM_PURPOSE: &str = "confirm";

/// One subscriber as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberRecord {
    pub id: i64,
    /// `None` only for a row whose address has been removed.
    pub email: Option<EmailAddress>,
    pub kind: SubscriberKind,
    pub organisation: Option<String>,
    pub hard_failures: i64,
    pub suppressed_at: Option<i64>,
    pub created_at: i64,
}

/// One subscription (a subscriber following a council) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub id: i64,
    pub subscriber_id: i64,
    pub council_id: i64,
    pub state: SubscriptionState,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
    pub unsubscribed_at: Option<i64>,
}

/// One one-time token as stored (its hash, never the token).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    pub id: i64,
    pub purpose: String,
    pub subscription_id: Option<i64>,
    pub subscriber_id: Option<i64>,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub created_at: i64,
}

fn decode_error(column: &str, err: ParseError) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(err),
    }
}

const SUBSCRIBER_COLUMNS: &str =
    "id, email, kind, organisation, hard_failures, suppressed_at, created_at";

fn subscriber_from_row(row: &AnyRow) -> Result<SubscriberRecord, sqlx::Error> {
    let email: Option<String> = row.try_get("email")?;
    let kind: String = row.try_get("kind")?;
    Ok(SubscriberRecord {
        id: row.try_get("id")?,
        email: email
            .map(|raw| raw.parse().map_err(|e| decode_error("email", e)))
            .transpose()?,
        kind: kind.parse().map_err(|e| decode_error("kind", e))?,
        organisation: row.try_get("organisation")?,
        hard_failures: row.try_get("hard_failures")?,
        suppressed_at: row.try_get("suppressed_at")?,
        created_at: row.try_get("created_at")?,
    })
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, subscriber_id, council_id, state, created_at, confirmed_at, unsubscribed_at";

fn subscription_from_row(row: &AnyRow) -> Result<SubscriptionRecord, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(SubscriptionRecord {
        id: row.try_get("id")?,
        subscriber_id: row.try_get("subscriber_id")?,
        council_id: row.try_get("council_id")?,
        state: state.parse().map_err(|e| decode_error("state", e))?,
        created_at: row.try_get("created_at")?,
        confirmed_at: row.try_get("confirmed_at")?,
        unsubscribed_at: row.try_get("unsubscribed_at")?,
    })
}

const TOKEN_COLUMNS: &str =
    "id, purpose, subscription_id, subscriber_id, expires_at, used_at, created_at";

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        purpose: row.try_get("purpose")?,
        subscription_id: row.try_get("subscription_id")?,
        subscriber_id: row.try_get("subscriber_id")?,
        expires_at: row.try_get("expires_at")?,
        used_at: row.try_get("used_at")?,
        created_at: row.try_get("created_at")?,
    })
}

pub async fn subscriber_by_email(
    conn: &mut AnyConnection,
    email: &EmailAddress,
) -> Result<Option<SubscriberRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE email = $1"
    ))
    .bind(email.as_str())
    .fetch_optional(&mut *conn)
    .await
    .step("read a subscriber by address")?
    .map(|row| subscriber_from_row(&row))
    .transpose()
    .step("decode a subscriber")
}

pub async fn subscriber_by_id(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<SubscriberRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .step("read a subscriber")?
    .map(|row| subscriber_from_row(&row))
    .transpose()
    .step("decode a subscriber")
}

/// Subscribers sorted by id; with `council_id`, only those with a subscription (in any state)
/// to that council.
pub async fn list_subscribers(
    conn: &mut AnyConnection,
    council_id: Option<i64>,
) -> Result<Vec<SubscriberRecord>, StoreError> {
    let rows = match council_id {
        Some(council_id) => {
            sqlx::query(&format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers WHERE id IN \
                 (SELECT subscriber_id FROM subscriptions WHERE council_id = $1) ORDER BY id"
            ))
            .bind(council_id)
            .fetch_all(&mut *conn)
            .await
        }
        None => {
            sqlx::query(&format!(
                "SELECT {SUBSCRIBER_COLUMNS} FROM subscribers ORDER BY id"
            ))
            .fetch_all(&mut *conn)
            .await
        }
    }
    .step("list subscribers")?;
    rows.iter()
        .map(subscriber_from_row)
        .collect::<Result<_, _>>()
        .step("decode subscribers")
}

/// The id of the subscriber with `email`, adding one of `kind` when there is none.
/// Returns the id and whether it was added now.
pub async fn find_or_add_subscriber(
    conn: &mut AnyConnection,
    email: &EmailAddress,
    kind: SubscriberKind,
    organisation: Option<&str>,
    now: i64,
) -> Result<(i64, bool), StoreError> {
    let added = sqlx::query(
        "INSERT INTO subscribers (email, kind, organisation, hard_failures, created_at) \
         VALUES ($1, $2, $3, 0, $4) ON CONFLICT (email) DO NOTHING RETURNING id",
    )
    .bind(email.as_str())
    .bind(kind.as_str())
    .bind(organisation)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
    .step("add a subscriber")?;
    if let Some(row) = added {
        return Ok((row.try_get("id").step("read a new subscriber's id")?, true));
    }
    let id: i64 = sqlx::query("SELECT id FROM subscribers WHERE email = $1")
        .bind(email.as_str())
        .fetch_one(&mut *conn)
        .await
        .step("read an existing subscriber's id")?
        .try_get("id")
        .step("decode a subscriber id")?;
    Ok((id, false))
}

pub async fn set_subscriber_profile(
    conn: &mut AnyConnection,
    subscriber_id: i64,
    kind: SubscriberKind,
    organisation: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE subscribers SET kind = $1, organisation = $2 WHERE id = $3")
        .bind(kind.as_str())
        .bind(organisation)
        .bind(subscriber_id)
        .execute(&mut *conn)
        .await
        .step("update a subscriber's kind and organisation")?;
    Ok(())
}

pub async fn delete_subscriber(
    conn: &mut AnyConnection,
    subscriber_id: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM subscribers WHERE id = $1")
        .bind(subscriber_id)
        .execute(&mut *conn)
        .await
        .step("delete a subscriber")?
        .rows_affected())
}

pub async fn subscription_for(
    conn: &mut AnyConnection,
    subscriber_id: i64,
    council_id: i64,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
         WHERE subscriber_id = $1 AND council_id = $2"
    ))
    .bind(subscriber_id)
    .bind(council_id)
    .fetch_optional(&mut *conn)
    .await
    .step("read a subscription")?
    .map(|row| subscription_from_row(&row))
    .transpose()
    .step("decode a subscription")
}

pub async fn subscription_by_id(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .step("read a subscription")?
    .map(|row| subscription_from_row(&row))
    .transpose()
    .step("decode a subscription")
}

/// A subscriber's subscriptions, in every state, by id.
pub async fn subscriptions_of(
    conn: &mut AnyConnection,
    subscriber_id: i64,
) -> Result<Vec<SubscriptionRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE subscriber_id = $1 ORDER BY id"
    ))
    .bind(subscriber_id)
    .fetch_all(&mut *conn)
    .await
    .step("list a subscriber's subscriptions")?;
    rows.iter()
        .map(subscription_from_row)
        .collect::<Result<_, _>>()
        .step("decode subscriptions")
}

pub async fn add_subscription(
    conn: &mut AnyConnection,
    subscriber_id: i64,
    council_id: i64,
    state: SubscriptionState,
    now: i64,
) -> Result<i64, StoreError> {
    let confirmed_at = (state == SubscriptionState::Confirmed).then_some(now);
    sqlx::query(
        "INSERT INTO subscriptions (subscriber_id, council_id, state, created_at, confirmed_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(subscriber_id)
    .bind(council_id)
    .bind(state.as_str())
    .bind(now)
    .bind(confirmed_at)
    .fetch_one(&mut *conn)
    .await
    .step("add a subscription")?
    .try_get("id")
    .step("read a new subscription's id")
}

/// Moves a subscription to `state` and stamps the time: pending clears both stamps (a fresh
/// opt-in), confirmed sets `confirmed_at`, unsubscribed sets `unsubscribed_at`.
pub async fn set_subscription_state(
    conn: &mut AnyConnection,
    subscription_id: i64,
    state: SubscriptionState,
    now: i64,
) -> Result<(), StoreError> {
    let query = match state {
        SubscriptionState::Pending => sqlx::query(
            "UPDATE subscriptions SET state = 'pending', confirmed_at = NULL, \
             unsubscribed_at = NULL WHERE id = $1",
        )
        .bind(subscription_id),
        SubscriptionState::Confirmed => sqlx::query(
            "UPDATE subscriptions SET state = 'confirmed', confirmed_at = $2, \
             unsubscribed_at = NULL WHERE id = $1",
        )
        .bind(subscription_id)
        .bind(now),
        SubscriptionState::Unsubscribed => sqlx::query(
            "UPDATE subscriptions SET state = 'unsubscribed', unsubscribed_at = $2 WHERE id = $1",
        )
        .bind(subscription_id)
        .bind(now),
    };
    query
        .execute(&mut *conn)
        .await
        .step("change a subscription's state")?;
    Ok(())
}

pub async fn delete_subscription(
    conn: &mut AnyConnection,
    subscription_id: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM subscriptions WHERE id = $1")
        .bind(subscription_id)
        .execute(&mut *conn)
        .await
        .step("delete a subscription")?;
    Ok(())
}

/// Stores a one-time token by its hash.
pub async fn add_token(
    conn: &mut AnyConnection,
    token_hash: &str,
    purpose: &str,
    subscription_id: Option<i64>,
    subscriber_id: Option<i64>,
    expires_at: i64,
    now: i64,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO tokens (token_hash, purpose, subscription_id, subscriber_id, expires_at, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(token_hash)
    .bind(purpose)
    .bind(subscription_id)
    .bind(subscriber_id)
    .bind(expires_at)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .step("store a token")?
    .try_get("id")
    .step("read a new token's id")
}

pub async fn token_by_hash(
    conn: &mut AnyConnection,
    token_hash: &str,
    purpose: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = $1 AND purpose = $2"
    ))
    .bind(token_hash)
    .bind(purpose)
    .fetch_optional(&mut *conn)
    .await
    .step("look up a token")?
    .map(|row| token_from_row(&row))
    .transpose()
    .step("decode a token")
}

pub async fn mark_token_used(
    conn: &mut AnyConnection,
    token_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(token_id)
        .execute(&mut *conn)
        .await
        .step("mark a token used")?;
    Ok(())
}

/// Deletes the unused tokens of a subscription, so that an old link cannot confirm it again.
pub async fn delete_unused_tokens(
    conn: &mut AnyConnection,
    subscription_id: i64,
) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM tokens WHERE subscription_id = $1 AND used_at IS NULL")
            .bind(subscription_id)
            .execute(&mut *conn)
            .await
            .step("delete a subscription's unused tokens")?
            .rows_affected(),
    )
}

/// The tokens held for a subscriber, directly or through a subscription, by id.
pub async fn tokens_of(
    conn: &mut AnyConnection,
    subscriber_id: i64,
) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE subscriber_id = $1 OR subscription_id IN \
         (SELECT id FROM subscriptions WHERE subscriber_id = $1) ORDER BY id"
    ))
    .bind(subscriber_id)
    .fetch_all(&mut *conn)
    .await
    .step("list a subscriber's tokens")?;
    rows.iter()
        .map(token_from_row)
        .collect::<Result<_, _>>()
        .step("decode tokens")
}

/// Deletes every token of a subscriber, direct or through a subscription.
pub async fn delete_tokens_of(
    conn: &mut AnyConnection,
    subscriber_id: i64,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM tokens WHERE subscriber_id = $1 OR subscription_id IN \
         (SELECT id FROM subscriptions WHERE subscriber_id = $1)",
    )
    .bind(subscriber_id)
    .execute(&mut *conn)
    .await
    .step("delete a subscriber's tokens")?
    .rows_affected())
}

/// One message of the delivery ledger addressed to a subscriber, for an export.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

pub async fn deliveries_of(
    conn: &mut AnyConnection,
    subscriber_id: i64,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, kind, state, created_at, sent_at FROM deliveries \
         WHERE subscriber_id = $1 ORDER BY id",
    )
    .bind(subscriber_id)
    .fetch_all(&mut *conn)
    .await
    .step("list a subscriber's deliveries")?;
    rows.iter()
        .map(|row| {
            Ok(DeliveryRecord {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                state: row.try_get("state")?,
                created_at: row.try_get("created_at")?,
                sent_at: row.try_get("sent_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .step("decode deliveries")
}

/// The weeks of the digests built for a subscriber, with when each was built.
pub async fn digest_weeks_of(
    conn: &mut AnyConnection,
    subscriber_id: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows =
        sqlx::query("SELECT week, built_at FROM digests WHERE subscriber_id = $1 ORDER BY week")
            .bind(subscriber_id)
            .fetch_all(&mut *conn)
            .await
            .step("list a subscriber's digests")?;
    rows.iter()
        .map(|row| Ok((row.try_get("week")?, row.try_get("built_at")?)))
        .collect::<Result<_, sqlx::Error>>()
        .step("decode digests")
}

/// Removes the address from the ledger rows sent to a subscriber or to `email`, so that past
/// deliveries keep no address once the person is erased.
pub async fn forget_delivery_addresses(
    conn: &mut AnyConnection,
    subscriber_id: i64,
    email: &EmailAddress,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE deliveries SET recipient = NULL \
         WHERE (subscriber_id = $1 OR recipient = $2) AND recipient IS NOT NULL",
    )
    .bind(subscriber_id)
    .bind(email.as_str())
    .execute(&mut *conn)
    .await
    .step("remove an address from past deliveries")?
    .rows_affected())
}

/// Removes the name and address from enablement requests made by a subscriber or by `email`;
/// the request itself (council, message, decision) stays as the operators' record.
pub async fn forget_request_authors(
    conn: &mut AnyConnection,
    subscriber_id: i64,
    email: &EmailAddress,
) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE enablement_requests SET name = NULL, email = NULL, subscriber_id = NULL \
         WHERE subscriber_id = $1 OR email = $2",
    )
    .bind(subscriber_id)
    .bind(email.as_str())
    .execute(&mut *conn)
    .await
    .step("remove a person from enablement requests")?
    .rows_affected())
}
