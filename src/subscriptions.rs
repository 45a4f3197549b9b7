//! Subscribers and subscriptions: double opt-in, confirmation, unsubscribe and preferences.
//! These operations are shared by the web pages and the CLI.
//!
//! A subscription moves pending -> confirmed -> unsubscribed. Subscribing again after
//! unsubscribing makes it pending again, with a fresh confirmation token. Confirmation tokens
//! are random (128 bits), expire after `tokens.confirmation_ttl_hours`, and are stored only as
//! hashes: the raw token is returned once, to be mailed, and never kept.
//!
//! A subscriber's kind and organisation are taken from the latest subscribe while the
//! subscriber has no confirmed subscription; once one is confirmed they change only through an
//! operator's `--confirmed` subscribe, so a stranger cannot turn a confirmed resident into a
//! professional (whose subscriptions weigh more in the ranking) by typing their address.

use serde_json::json;
use sqlx::AnyConnection;

use crate::domain::{CouncilSlug, EmailAddress, SubscriberKind, SubscriptionState};
use crate::settings::Settings;
use crate::store::councils::Council;
use crate::store::subscribers::{self as rows, CONFIRM_PURPOSE, SubscriberRecord};
use crate::store::{StepContext, Store, StoreError};

/// Why a subscription operation did not happen; the messages are fit to show a person.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("there is no council `{0}`")]
    UnknownCouncil(CouncilSlug),
    #[error("there is no such subscriber")]
    UnknownSubscriber,
    #[error("this confirmation link is not valid (it may have been used already)")]
    InvalidToken,
    #[error("this confirmation link has expired; please subscribe again")]
    ExpiredToken,
    #[error("mail to this address has been stopped after repeated delivery failures")]
    Suppressed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A request to follow one council.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub email: EmailAddress,
    pub council: CouncilSlug,
    pub kind: SubscriberKind,
    pub organisation: Option<String>,
}

/// What a subscribe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeOutcome {
    /// A pending subscription awaits confirmation; `token` is the raw confirmation token, to be
    /// mailed and then forgotten (only its hash is stored).
    ConfirmationNeeded {
        subscriber_id: i64,
        subscription_id: i64,
        token: String,
    },
    /// The address already follows the council; nothing changed.
    AlreadyConfirmed { subscriber_id: i64 },
    /// Confirmed at once (an operator's `subscribers add --confirmed`).
    Confirmed { subscriber_id: i64 },
}

/// What a confirmation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Confirmed {
        subscriber_id: i64,
        council_id: i64,
    },
    /// The link had been used already; confirming twice is harmless.
    AlreadyConfirmed {
        subscriber_id: i64,
        council_id: i64,
    },
}

/// A subscriber with the councils they follow (in every state), sorted by council name.
#[derive(Debug, Clone)]
pub struct SubscriberView {
    pub id: i64,
    pub kind: SubscriberKind,
    pub organisation: Option<String>,
    pub email: EmailAddress,
    pub suppressed: bool,
    pub subscriptions: Vec<(Council, SubscriptionState)>,
}

/// A council added through the preferences page, with the raw token to mail for it.
#[derive(Debug, Clone)]
pub struct AddedCouncil {
    pub council: Council,
    pub subscription_id: i64,
    pub token: String,
}

/// What a change of followed councils did.
#[derive(Debug, Clone, Default)]
pub struct FollowChanges {
    /// New pending subscriptions, each needing its confirmation mailed.
    pub added: Vec<AddedCouncil>,
    /// Councils no longer followed (now unsubscribed).
    pub removed: Vec<Council>,
}

/// What an erasure removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErasureReport {
    pub subscriber_id: i64,
    pub subscriptions: u64,
    pub tokens: u64,
    pub deliveries_anonymised: u64,
    pub requests_anonymised: u64,
}

async fn council_for(store: &Store, slug: &CouncilSlug) -> Result<Council, SubscriptionError> {
    match store.council_by_slug(slug).await {
        Ok(council) => Ok(council),
        Err(StoreError::NotFound(_)) => Err(SubscriptionError::UnknownCouncil(slug.clone())),
        Err(err) => Err(err.into()),
    }
}

/// Stores a new confirmation token for a subscription and returns it raw.
async fn issue_confirmation(
    conn: &mut AnyConnection,
    settings: &Settings,
    subscriber_id: i64,
    subscription_id: i64,
    now: i64,
) -> Result<String, StoreError> {
    let token = crate::tokens::random_token();
    let expires_at = now + i64::from(settings.tokens.confirmation_ttl_hours) * 3600;
    rows::add_token(
        conn,
        &crate::tokens::hash_token(&token),
        CONFIRM_PURPOSE,
        Some(subscription_id),
        Some(subscriber_id),
        expires_at,
        now,
    )
    .await?;
    Ok(token)
}

/// Subscribes an address to a council. A second subscribe of the same address adds the council
/// to the same subscriber. A pending subscription gets a fresh token (earlier ones stay valid
/// until they expire); an unsubscribed one becomes pending again and needs a new confirmation.
/// With `confirmed_now` (an operator adding someone) the subscription is confirmed at once.
pub async fn subscribe(
    store: &Store,
    settings: &Settings,
    request: &SubscribeRequest,
    confirmed_now: bool,
) -> Result<SubscribeOutcome, SubscriptionError> {
    let council = council_for(store, &request.council).await?;
    let organisation = request
        .organisation
        .as_deref()
        .map(str::trim)
        .filter(|o| !o.is_empty() && request.kind == SubscriberKind::Professional);
    let now = store.clock().now_ts();
    let mut tx = store.begin_write().await?;

    let (subscriber_id, added) =
        rows::find_or_add_subscriber(&mut tx, &request.email, request.kind, organisation, now)
            .await?;
    if !added {
        let existing = rows::subscriber_by_id(&mut tx, subscriber_id)
            .await?
            .ok_or(SubscriptionError::UnknownSubscriber)?;
        if existing.suppressed_at.is_some() {
            return Err(SubscriptionError::Suppressed);
        }
        let has_confirmed = rows::subscriptions_of(&mut tx, subscriber_id)
            .await?
            .iter()
            .any(|s| s.state == SubscriptionState::Confirmed);
        if confirmed_now || !has_confirmed {
            rows::set_subscriber_profile(&mut tx, subscriber_id, request.kind, organisation)
                .await?;
        }
    }

    let existing = rows::subscription_for(&mut tx, subscriber_id, council.id).await?;
    let outcome = match (existing, confirmed_now) {
        (Some(s), _) if s.state == SubscriptionState::Confirmed => {
            SubscribeOutcome::AlreadyConfirmed { subscriber_id }
        }
        (Some(s), true) => {
            rows::set_subscription_state(&mut tx, s.id, SubscriptionState::Confirmed, now).await?;
            rows::delete_unused_tokens(&mut tx, s.id).await?;
            SubscribeOutcome::Confirmed { subscriber_id }
        }
        (None, true) => {
            rows::add_subscription(
                &mut tx,
                subscriber_id,
                council.id,
                SubscriptionState::Confirmed,
                now,
            )
            .await?;
            SubscribeOutcome::Confirmed { subscriber_id }
        }
        (existing, false) => {
            let subscription_id = match existing {
                Some(s) => {
                    if s.state == SubscriptionState::Unsubscribed {
                        rows::set_subscription_state(
                            &mut tx,
                            s.id,
                            SubscriptionState::Pending,
                            now,
                        )
                        .await?;
                    }
                    s.id
                }
                None => {
                    rows::add_subscription(
                        &mut tx,
                        subscriber_id,
                        council.id,
                        SubscriptionState::Pending,
                        now,
                    )
                    .await?
                }
            };
            let token =
                issue_confirmation(&mut tx, settings, subscriber_id, subscription_id, now).await?;
            SubscribeOutcome::ConfirmationNeeded {
                subscriber_id,
                subscription_id,
                token,
            }
        }
    };

    tx.commit().await.step("commit a subscribe")?;
    tracing::info!(
        subscriber_id,
        council = %council.slug,
        outcome = outcome_label(&outcome),
        "subscribe handled"
    );
    Ok(outcome)
}

fn outcome_label(outcome: &SubscribeOutcome) -> &'static str {
    match outcome {
        SubscribeOutcome::ConfirmationNeeded { .. } => "confirmation needed",
        SubscribeOutcome::AlreadyConfirmed { .. } => "already confirmed",
        SubscribeOutcome::Confirmed { .. } => "confirmed",
    }
}

/// The subscription a confirmation token is for, checked but not used.
struct CheckedToken {
    token_id: i64,
    subscriber_id: i64,
    subscription_id: i64,
    council_id: i64,
    state: SubscriptionState,
}

/// Checks a raw confirmation token. An unknown token, or a used one whose subscription is no
/// longer confirmed (it was unsubscribed since), is invalid; an unused one past its expiry is
/// expired. Any token of a confirmed subscription stays acceptable, so a second click (or the
/// link of an earlier e-mail) says "already confirmed" instead of an error.
async fn check_token(
    conn: &mut AnyConnection,
    token: &str,
    now: i64,
) -> Result<CheckedToken, SubscriptionError> {
    let record = rows::token_by_hash(conn, &crate::tokens::hash_token(token), CONFIRM_PURPOSE)
        .await?
        .ok_or(SubscriptionError::InvalidToken)?;
    let subscription_id = record
        .subscription_id
        .ok_or(SubscriptionError::InvalidToken)?;
    let subscription = rows::subscription_by_id(conn, subscription_id)
        .await?
        .ok_or(SubscriptionError::InvalidToken)?;
    let used = record.used_at.is_some();
    match subscription.state {
        SubscriptionState::Confirmed => {}
        SubscriptionState::Pending if !used => {
            if record.expires_at <= now {
                return Err(SubscriptionError::ExpiredToken);
            }
        }
        _ => return Err(SubscriptionError::InvalidToken),
    }
    Ok(CheckedToken {
        token_id: record.id,
        subscriber_id: subscription.subscriber_id,
        subscription_id,
        council_id: subscription.council_id,
        state: subscription.state,
    })
}

/// Confirms the pending subscription of a raw confirmation token.
pub async fn confirm(store: &Store, token: &str) -> Result<ConfirmOutcome, SubscriptionError> {
    let now = store.clock().now_ts();
    let mut tx = store.begin_write().await?;
    let checked = check_token(&mut tx, token, now).await?;
    let subscriber = rows::subscriber_by_id(&mut tx, checked.subscriber_id)
        .await?
        .ok_or(SubscriptionError::InvalidToken)?;
    if subscriber.suppressed_at.is_some() {
        return Err(SubscriptionError::Suppressed);
    }
    let outcome = if checked.state == SubscriptionState::Confirmed {
        ConfirmOutcome::AlreadyConfirmed {
            subscriber_id: checked.subscriber_id,
            council_id: checked.council_id,
        }
    } else {
        rows::set_subscription_state(
            &mut tx,
            checked.subscription_id,
            SubscriptionState::Confirmed,
            now,
        )
        .await?;
        rows::mark_token_used(&mut tx, checked.token_id, now).await?;
        ConfirmOutcome::Confirmed {
            subscriber_id: checked.subscriber_id,
            council_id: checked.council_id,
        }
    };
    tx.commit().await.step("commit a confirmation")?;
    tracing::info!(
        subscriber_id = checked.subscriber_id,
        council_id = checked.council_id,
        "subscription confirmed"
    );
    Ok(outcome)
}

/// The subscriber and council a confirmation token is for, changing nothing (the confirm
/// page's GET). Errors as [`confirm`] would give them.
pub async fn pending_by_token(
    store: &Store,
    token: &str,
) -> Result<(i64, Council), SubscriptionError> {
    let now = store.clock().now_ts();
    let mut conn = store
        .pool()
        .acquire()
        .await
        .step("take a database connection")?;
    let checked = check_token(&mut conn, token, now).await?;
    drop(conn);
    let council = store.council_by_id(checked.council_id).await?;
    Ok((checked.subscriber_id, council))
}

/// Withdraws the pending subscription of a confirmation token ("this was not me"): the
/// subscription and its tokens are deleted, and the subscriber too when nothing else remains.
/// A confirmed subscription is left alone (its token is then invalid here).
pub async fn cancel_pending(store: &Store, token: &str) -> Result<(), SubscriptionError> {
    let now = store.clock().now_ts();
    let mut tx = store.begin_write().await?;
    let checked = check_token(&mut tx, token, now).await?;
    if checked.state != SubscriptionState::Pending {
        return Err(SubscriptionError::InvalidToken);
    }
    rows::delete_subscription(&mut tx, checked.subscription_id).await?;
    let removed_subscriber = rows::subscriptions_of(&mut tx, checked.subscriber_id)
        .await?
        .is_empty();
    if removed_subscriber {
        rows::delete_subscriber(&mut tx, checked.subscriber_id).await?;
    }
    tx.commit().await.step("commit a cancelled subscription")?;
    tracing::info!(
        subscriber_id = checked.subscriber_id,
        removed_subscriber,
        "pending subscription cancelled"
    );
    Ok(())
}

/// Unsubscribes a subscriber from every council (the one-click unsubscribe). Returns how many
/// subscriptions ended; zero when there were none left. Unused confirmation tokens are deleted,
/// so an old link cannot bring a subscription back.
pub async fn unsubscribe_all(store: &Store, subscriber_id: i64) -> Result<u64, SubscriptionError> {
    let now = store.clock().now_ts();
    let mut tx = store.begin_write().await?;
    rows::subscriber_by_id(&mut tx, subscriber_id)
        .await?
        .ok_or(SubscriptionError::UnknownSubscriber)?;
    let mut ended = 0;
    for subscription in rows::subscriptions_of(&mut tx, subscriber_id).await? {
        if subscription.state != SubscriptionState::Unsubscribed {
            rows::set_subscription_state(
                &mut tx,
                subscription.id,
                SubscriptionState::Unsubscribed,
                now,
            )
            .await?;
            rows::delete_unused_tokens(&mut tx, subscription.id).await?;
            ended += 1;
        }
    }
    tx.commit().await.step("commit an unsubscribe")?;
    tracing::info!(subscriber_id, ended, "unsubscribed from every council");
    Ok(ended)
}

/// Makes the councils a subscriber follows exactly `councils` (the preferences page): a council
/// left out is unsubscribed; a council not yet followed (or unsubscribed) gets a pending
/// subscription and a token to mail; councils already pending or confirmed are left as they
/// are. Every slug is checked before anything changes.
pub async fn set_followed_councils(
    store: &Store,
    settings: &Settings,
    subscriber_id: i64,
    councils: &[CouncilSlug],
) -> Result<FollowChanges, SubscriptionError> {
    let mut wanted = Vec::new();
    for slug in councils {
        let council = council_for(store, slug).await?;
        if !wanted.iter().any(|c: &Council| c.id == council.id) {
            wanted.push(council);
        }
    }
    let now = store.clock().now_ts();
    let mut tx = store.begin_write().await?;
    let subscriber = rows::subscriber_by_id(&mut tx, subscriber_id)
        .await?
        .ok_or(SubscriptionError::UnknownSubscriber)?;
    let current = rows::subscriptions_of(&mut tx, subscriber_id).await?;
    let mut changes = FollowChanges::default();
    let mut removed_ids = Vec::new();

    for subscription in &current {
        let keep = wanted.iter().any(|c| c.id == subscription.council_id);
        if !keep && subscription.state != SubscriptionState::Unsubscribed {
            rows::set_subscription_state(
                &mut tx,
                subscription.id,
                SubscriptionState::Unsubscribed,
                now,
            )
            .await?;
            rows::delete_unused_tokens(&mut tx, subscription.id).await?;
            removed_ids.push(subscription.council_id);
        }
    }

    if !wanted.is_empty() && subscriber.suppressed_at.is_some() {
        let adds = wanted.iter().any(|c| {
            !current
                .iter()
                .any(|s| s.council_id == c.id && s.state != SubscriptionState::Unsubscribed)
        });
        if adds {
            return Err(SubscriptionError::Suppressed);
        }
    }
    for council in wanted {
        let existing = current.iter().find(|s| s.council_id == council.id);
        let subscription_id = match existing {
            Some(s) if s.state != SubscriptionState::Unsubscribed => continue,
            Some(s) => {
                rows::set_subscription_state(&mut tx, s.id, SubscriptionState::Pending, now)
                    .await?;
                s.id
            }
            None => {
                rows::add_subscription(
                    &mut tx,
                    subscriber_id,
                    council.id,
                    SubscriptionState::Pending,
                    now,
                )
                .await?
            }
        };
        let token =
            issue_confirmation(&mut tx, settings, subscriber_id, subscription_id, now).await?;
        changes.added.push(AddedCouncil {
            council,
            subscription_id,
            token,
        });
    }

    tx.commit()
        .await
        .step("commit a change of followed councils")?;
    // Looked up after the commit: on SQLite the transaction holds a pooled connection, and a
    // pool of one would otherwise wait for itself.
    for council_id in removed_ids {
        changes.removed.push(store.council_by_id(council_id).await?);
    }
    tracing::info!(
        subscriber_id,
        added = changes.added.len(),
        removed = changes.removed.len(),
        "followed councils changed"
    );
    Ok(changes)
}

/// A subscriber and the councils they follow, in every state.
pub async fn subscriber_view(
    store: &Store,
    subscriber_id: i64,
) -> Result<SubscriberView, SubscriptionError> {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .step("take a database connection")?;
    let record = rows::subscriber_by_id(&mut conn, subscriber_id)
        .await?
        .ok_or(SubscriptionError::UnknownSubscriber)?;
    let subscriptions = rows::subscriptions_of(&mut conn, subscriber_id).await?;
    drop(conn);
    view_of(store, record, subscriptions).await
}

async fn view_of(
    store: &Store,
    record: SubscriberRecord,
    subscriptions: Vec<rows::SubscriptionRecord>,
) -> Result<SubscriberView, SubscriptionError> {
    let email = record.email.ok_or(SubscriptionError::UnknownSubscriber)?;
    let mut followed = Vec::new();
    for subscription in subscriptions {
        followed.push((
            store.council_by_id(subscription.council_id).await?,
            subscription.state,
        ));
    }
    followed.sort_by(|a, b| a.0.name.cmp(&b.0.name).then(a.0.slug.cmp(&b.0.slug)));
    Ok(SubscriberView {
        id: record.id,
        kind: record.kind,
        organisation: record.organisation,
        email,
        suppressed: record.suppressed_at.is_some(),
        subscriptions: followed,
    })
}

/// Every subscriber, with what they follow; with `council`, only those with a subscription (in
/// any state) to it. By subscriber id.
pub async fn list_subscribers(
    store: &Store,
    council: Option<&CouncilSlug>,
) -> Result<Vec<SubscriberView>, SubscriptionError> {
    let council_id = match council {
        Some(slug) => Some(council_for(store, slug).await?.id),
        None => None,
    };
    let mut conn = store
        .pool()
        .acquire()
        .await
        .step("take a database connection")?;
    let mut records = Vec::new();
    for record in rows::list_subscribers(&mut conn, council_id).await? {
        let subscriptions = rows::subscriptions_of(&mut conn, record.id).await?;
        records.push((record, subscriptions));
    }
    drop(conn);
    let mut out = Vec::new();
    for (record, subscriptions) in records {
        if record.email.is_some() {
            out.push(view_of(store, record, subscriptions).await?);
        }
    }
    Ok(out)
}

/// The subscriber with an address.
pub async fn subscriber_by_email(
    store: &Store,
    email: &EmailAddress,
) -> Result<SubscriberView, SubscriptionError> {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .step("take a database connection")?;
    let record = rows::subscriber_by_email(&mut conn, email)
        .await?
        .ok_or(SubscriptionError::UnknownSubscriber)?;
    let subscriptions = rows::subscriptions_of(&mut conn, record.id).await?;
    drop(conn);
    view_of(store, record, subscriptions).await
}

/// Everything held about the person with an address, as JSON: the subscriber, each
/// subscription with its times, the tokens held (purpose and times; never a hash), the
/// enablement requests they made, the digests built for them and the messages sent to them.
pub async fn export(
    store: &Store,
    email: &EmailAddress,
) -> Result<serde_json::Value, SubscriptionError> {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .step("take a database connection")?;
    let record = rows::subscriber_by_email(&mut conn, email)
        .await?
        .ok_or(SubscriptionError::UnknownSubscriber)?;
    let subscriptions = rows::subscriptions_of(&mut conn, record.id).await?;
    let tokens = rows::tokens_of(&mut conn, record.id).await?;
    let deliveries = rows::deliveries_of(&mut conn, record.id).await?;
    let digests = rows::digest_weeks_of(&mut conn, record.id).await?;
    let requests = crate::store::requests::requests_by_person(&mut conn, record.id, email).await?;
    drop(conn);

    let mut followed = Vec::new();
    for s in &subscriptions {
        let council = store.council_by_id(s.council_id).await?;
        followed.push(json!({
            "council": council.slug,
            "council_name": council.name,
            "state": s.state,
            "created_at": s.created_at,
            "confirmed_at": s.confirmed_at,
            "unsubscribed_at": s.unsubscribed_at,
        }));
    }
    let tokens: Vec<_> = tokens
        .iter()
        .map(|t| {
            json!({
                "purpose": t.purpose,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "used_at": t.used_at,
            })
        })
        .collect();
    let digests: Vec<_> = digests
        .iter()
        .map(|(week, built_at)| json!({"week": week, "built_at": built_at}))
        .collect();
    Ok(json!({
        "subscriber": {
            "id": record.id,
            "email": email.as_str(),
            "kind": record.kind,
            "organisation": record.organisation,
            "created_at": record.created_at,
            "hard_failures": record.hard_failures,
            "suppressed_at": record.suppressed_at,
        },
        "subscriptions": followed,
        "tokens": tokens,
        "enablement_requests": requests,
        "digests": digests,
        "deliveries": deliveries,
    }))
}

/// Deletes the person with an address: the subscriber row, their subscriptions and tokens (and
/// the digests built for them). Past deliveries stay in the ledger without an address or
/// subscriber; enablement requests they made stay without their name and address.
pub async fn erase(
    store: &Store,
    email: &EmailAddress,
) -> Result<ErasureReport, SubscriptionError> {
    let mut tx = store.begin_write().await?;
    let record = rows::subscriber_by_email(&mut tx, email)
        .await?
        .ok_or(SubscriptionError::UnknownSubscriber)?;
    let subscriptions = rows::subscriptions_of(&mut tx, record.id).await?.len() as u64;
    let tokens = rows::delete_tokens_of(&mut tx, record.id).await?;
    let deliveries_anonymised = rows::forget_delivery_addresses(&mut tx, record.id, email).await?;
    let requests_anonymised = rows::forget_request_authors(&mut tx, record.id, email).await?;
    rows::delete_subscriber(&mut tx, record.id).await?;
    tx.commit().await.step("commit an erasure")?;
    tracing::info!(subscriber_id = record.id, "subscriber erased");
    Ok(ErasureReport {
        subscriber_id: record.id,
        subscriptions,
        tokens,
        deliveries_anonymised,
        requests_anonymised,
    })
}
