//! Enablement requests: a professional, or someone who represents a council, asks for it to be
//! fully supported. Operators approve or reject each; an approved request promotes the council
//! regardless of its score (see [`crate::ranking::promotion`]). With
//! `promotion.auto_approve_requests`, a request from a confirmed professional (a professional
//! subscriber with at least one confirmed subscription, not suppressed) is approved at once.
//!
//! The acknowledgement e-mail is sent by the entry point (web handler or CLI), not here.

use serde::Serialize;

use crate::domain::{CouncilSlug, EmailAddress, RequestState, SubscriberKind, SubscriptionState};
use crate::ranking::RankingError;
use crate::ranking::promotion::{RequestPromotion, begin_locked, promote_approved};
use crate::settings::Settings;
use crate::store::requests::{
    EnablementRequest, NewRequestRow, add_request, decide_request, list_requests as rows,
    request_by_id,
};
use crate::store::subscribers::{subscriber_by_email, subscriptions_of};
use crate::store::{StepContext, Store, StoreError};

/// Longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest organisation accepted, in characters.
pub const MAX_ORGANISATION_CHARS: usize = 200;
/// Longest message accepted, in characters: a request is a short note.
pub const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest rejection reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// A request as submitted.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub council: CouncilSlug,
    pub name: String,
    pub organisation: Option<String>,
    pub email: EmailAddress,
    pub message: String,
    pub represents_council: bool,
}

/// What recording a request did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestOutcome {
    pub id: i64,
    /// Approved at once (`promotion.auto_approve_requests` and a confirmed professional).
    pub approved: bool,
    /// When approved: what happened to the council.
    pub promotion: Option<RequestPromotion>,
}

fn checked_text(
    field: &str,
    raw: &str,
    max: usize,
    required: bool,
) -> Result<String, RankingError> {
    let text = raw.trim();
    if required && text.is_empty() {
        return Err(RankingError::Invalid(format!("{field} is required")));
    }
    if text.chars().count() > max {
        return Err(RankingError::Invalid(format!(
            "{field} is too long (at most {max} characters)"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(RankingError::Invalid(format!(
            "{field} contains control characters"
        )));
    }
    Ok(text.to_owned())
}

/// Records a request (and, when the settings allow it for this person, approves it at once).
pub async fn create_request(
    store: &Store,
    settings: &Settings,
    request: &NewRequest,
) -> Result<RequestOutcome, RankingError> {
    let name = checked_text("the name", &request.name, MAX_NAME_CHARS, true)?;
    let message = checked_text("the message", &request.message, MAX_MESSAGE_CHARS, true)?;
    let organisation = match &request.organisation {
        Some(raw) => Some(checked_text(
            "the organisation",
            raw,
            MAX_ORGANISATION_CHARS,
            false,
        )?)
        .filter(|o| !o.is_empty()),
        None => None,
    };
    let council = match store.council_by_slug(&request.council).await {
        Ok(council) => council,
        Err(StoreError::NotFound(_)) => {
            return Err(RankingError::UnknownCouncil(request.council.clone()));
        }
        Err(err) => return Err(err.into()),
    };
    let now = store.clock().now_ts();
    let mut tx = begin_locked(store).await?;

    let subscriber = subscriber_by_email(&mut tx, &request.email).await?;
    let confirmed_professional = match &subscriber {
        Some(s) if s.kind == SubscriberKind::Professional && s.suppressed_at.is_none() => {
            subscriptions_of(&mut tx, s.id)
                .await?
                .iter()
                .any(|sub| sub.state == SubscriptionState::Confirmed)
        }
        _ => false,
    };
    let id = add_request(
        &mut tx,
        &NewRequestRow {
            council_id: council.id,
            subscriber_id: subscriber.as_ref().map(|s| s.id),
            name: &name,
            organisation: organisation.as_deref(),
            email: &request.email,
            message: &message,
            represents_council: request.represents_council,
        },
        now,
    )
    .await?;

    let approve = settings.promotion.auto_approve_requests && confirmed_professional;
    let promotion = if approve {
        decide_request(&mut tx, id, RequestState::Approved, None, now).await?;
        let stored = request_by_id(&mut tx, id)
            .await?
            .ok_or(RankingError::UnknownRequest(id))?;
        Some(promote_approved(&mut tx, settings, &stored, now).await?)
    } else {
        None
    };
    tx.commit().await.step("commit an enablement request")?;
    tracing::info!(
        request_id = id,
        council = %council.slug,
        subscriber_id = subscriber.as_ref().map(|s| s.id),
        approved = approve,
        "enablement request recorded"
    );
    Ok(RequestOutcome {
        id,
        approved: approve,
        promotion,
    })
}

/// Requests, newest first; with `state`, only those in it.
pub async fn list_requests(
    store: &Store,
    state: Option<RequestState>,
) -> Result<Vec<EnablementRequest>, RankingError> {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .step("take a database connection")?;
    Ok(rows(&mut conn, state).await?)
}

/// One request.
pub async fn request(store: &Store, id: i64) -> Result<EnablementRequest, RankingError> {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .step("take a database connection")?;
    request_by_id(&mut conn, id)
        .await?
        .ok_or(RankingError::UnknownRequest(id))
}

/// Approves a pending request and promotes its council now if it can be (see
/// [`RequestPromotion`]); otherwise a later promotion run does when there is room.
pub async fn approve_request(
    store: &Store,
    settings: &Settings,
    id: i64,
) -> Result<RequestPromotion, RankingError> {
    let now = store.clock().now_ts();
    let mut tx = begin_locked(store).await?;
    let stored = pending_request(&mut tx, id).await?;
    decide_request(&mut tx, id, RequestState::Approved, None, now).await?;
    let promotion = promote_approved(&mut tx, settings, &stored, now).await?;
    tx.commit().await.step("commit a request approval")?;
    tracing::info!(request_id = id, council = %stored.council_slug, "enablement request approved");
    Ok(promotion)
}

/// Rejects a pending request; the reason is required and kept with it.
pub async fn reject_request(store: &Store, id: i64, reason: &str) -> Result<(), RankingError> {
    let reason = checked_text("the reason", reason, MAX_REASON_CHARS, true)?;
    let now = store.clock().now_ts();
    let mut tx = store.begin_write().await?;
    let stored = pending_request(&mut tx, id).await?;
    decide_request(&mut tx, id, RequestState::Rejected, Some(&reason), now).await?;
    tx.commit().await.step("commit a request rejection")?;
    tracing::info!(request_id = id, council = %stored.council_slug, "enablement request rejected");
    Ok(())
}

async fn pending_request(
    conn: &mut sqlx::AnyConnection,
    id: i64,
) -> Result<EnablementRequest, RankingError> {
    let stored = request_by_id(conn, id)
        .await?
        .ok_or(RankingError::UnknownRequest(id))?;
    if stored.state != RequestState::Pending {
        return Err(RankingError::AlreadyDecided {
            id,
            state: stored.state,
        });
    }
    Ok(stored)
}
