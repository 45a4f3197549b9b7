//! The pages that only read: finding a council, a council's page, a meeting, a digest's web
//! view and the health check.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Duration;
use serde::Serialize;

use crate::domain::{CouncilSlug, SupportLevel};
use crate::mail::MailError;
use crate::store::StoreError;
use crate::store::councils::Council;
use crate::store::meetings::Meeting;
use crate::web::forms::{self, RequestForm, SubscribeForm};
use crate::web::security;
use crate::web::server::{AppState, WebError, error_chain};

/// Days of past meetings a fully supported council's page lists.
const RECENT_DAYS: i64 = 28;

/// The longest search text looked at.
const MAX_QUERY_CHARS: usize = 100;

#[derive(Serialize)]
struct IndexRow {
    slug: String,
    name: String,
    limited: bool,
    queue_place: String,
}

/// `/`: every council, or those whose name contains `?q=`, with support and queue place.
pub async fn index(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let q: String = params
        .get("q")
        .map(|q| q.trim().chars().take(MAX_QUERY_CHARS).collect())
        .unwrap_or_default();
    let needle = q.to_lowercase();

    let councils = state.store().list_councils(None, None).await?;
    let total = councils.len();
    let places = crate::ranking::demand_ranking(state.store(), state.settings())
        .await
        .map_err(|err| WebError::Internal(error_chain(&err)))?
        .into_iter()
        .filter_map(|standing| Some((standing.council.id, standing.position?)))
        .collect::<HashMap<i64, u32>>();

    let results: Vec<IndexRow> = councils
        .into_iter()
        .filter(|c| {
            needle.is_empty()
                || c.name.to_lowercase().contains(&needle)
                || c.slug.as_str().contains(&needle)
        })
        .map(|c| IndexRow {
            queue_place: match places.get(&c.id) {
                Some(place) => crate::ranking::ordinal(*place),
                None => "Not yet queued (no subscribers)".to_owned(),
            },
            limited: c.support == SupportLevel::Limited,
            slug: c.slug.to_string(),
            name: c.name,
        })
        .collect();

    let results_heading = match results.len() {
        1 => format!("1 council matches “{q}”"),
        n => format!("{n} councils match “{q}”"),
    };
    let data = serde_json::json!({
        "q": q,
        "searched": !q.is_empty(),
        "results_heading": results_heading,
        "results": results,
        "total": total,
    });
    let title = if q.is_empty() {
        "Find your council".to_owned()
    } else {
        format!("Councils matching “{q}”")
    };
    Ok(Html(state.views().page("index", &title, &data)?).into_response())
}

/// `/councils/{slug}`: the council's support, and its forms.
pub async fn council(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let council = council_from_path(&state, &slug).await?;
    let session = forms::FormSession::from_headers(&state, &headers);
    render_council(
        &state,
        &council,
        &session,
        &SubscribeForm::default(),
        &RequestForm::default(),
        StatusCode::OK,
    )
    .await
}

/// Looks up the council a path names; a malformed or unknown slug is a 404.
pub async fn council_from_path(state: &AppState, raw: &str) -> Result<Council, WebError> {
    let slug: CouncilSlug = raw.parse().map_err(|_| WebError::NotFound("council"))?;
    match state.store().council_by_slug(&slug).await {
        Ok(council) => Ok(council),
        Err(StoreError::NotFound(_)) => Err(WebError::NotFound("council")),
        Err(err) => Err(err.into()),
    }
}

#[derive(Serialize)]
struct MeetingLine {
    id: i64,
    title: String,
    when: String,
    cancelled: bool,
}

/// Renders a council's page with the forms as given (empty, or as typed with a problem).
pub async fn render_council(
    state: &AppState,
    council: &Council,
    session: &forms::FormSession,
    subscribe: &SubscribeForm,
    request: &RequestForm,
    status: StatusCode,
) -> Result<Response, WebError> {
    let limited = council.support == SupportLevel::Limited;
    let (standing, upcoming, recent) = if limited {
        let standing =
            crate::ranking::council_standing(state.store(), state.settings(), council.id)
                .await
                .map_err(|err| WebError::Internal(error_chain(&err)))?;
        let view = serde_json::json!({
            "has_subscribers": standing.residents + standing.professionals > 0,
            "position_text": standing
                .position
                .map(crate::ranking::ordinal)
                .unwrap_or_else(|| "not yet placed".to_owned()),
            "waiting": standing.waiting,
            "residents": standing.residents,
            "residents_noun": plural(standing.residents, "resident", "residents"),
            "professionals": standing.professionals,
            "professionals_noun": plural(
                standing.professionals,
                "professional",
                "professionals",
            ),
            "needed": standing.needed,
            "needed_noun": plural(standing.needed, "subscriber", "subscribers"),
        });
        (view, Vec::new(), Vec::new())
    } else {
        let now = state.store().clock().now();
        let ahead = Duration::days(i64::from(state.settings().poll.window_days_ahead));
        let upcoming = state
            .store()
            .meetings_between(council.id, now, now + ahead)
            .await?;
        let recent = state
            .store()
            .meetings_between(council.id, now - Duration::days(RECENT_DAYS), now)
            .await?;
        let lines = |meetings: Vec<Meeting>| -> Vec<MeetingLine> {
            meetings
                .into_iter()
                .filter(|m| m.withdrawn_at.is_none())
                .map(|m| MeetingLine {
                    id: m.id,
                    when: when_text(&m),
                    cancelled: m.cancelled,
                    title: m.title,
                })
                .collect()
        };
        let mut recent = lines(recent);
        recent.reverse();
        (serde_json::Value::Null, lines(upcoming), recent)
    };

    let data = serde_json::json!({
        "council": {
            "slug": council.slug.as_str(),
            "name": council.name,
            "council_type": humane_type(&council.council_type),
            "nation": council.nation,
            "base_url": council.base_url.as_deref().filter(|u| is_web_url(u)),
        },
        "limited": limited,
        "standing": standing,
        "upcoming": upcoming,
        "recent": recent,
        "guard": session.token(),
        "subscribe": subscribe,
        "request": request,
    });
    let html = state.views().page("council", &council.name, &data)?;
    Ok(session.attach((status, Html(html)).into_response()))
}

/// Whether a link from council data may be printed: http(s) only, never `javascript:`.
fn is_web_url(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// A registry council type such as `metropolitan-district` in words: `Metropolitan district`.
fn humane_type(raw: &str) -> String {
    let words = raw.replace('-', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => words,
    }
}

fn plural<N: PartialEq + From<u8>>(n: N, one: &'static str, many: &'static str) -> &'static str {
    if n == N::from(1) { one } else { many }
}

/// A meeting's date and time in its own zone, e.g. `Tuesday 10 February 2026, 6:00pm`.
pub fn when_text(meeting: &Meeting) -> String {
    let date = meeting.local_date.format("%A %-d %B %Y").to_string();
    match meeting.local_time {
        Some(time) if !meeting.all_day => {
            format!("{date}, {}", time.format("%-I:%M%P"))
        }
        _ => date,
    }
}

#[derive(Serialize)]
struct AgendaLine {
    number: Option<String>,
    title: String,
    text_html: Option<String>,
}

/// `/meetings/{id}`: one meeting with its agenda, attendees and documents.
pub async fn meeting(
    State(state): State<AppState>,
    Path(raw_id): Path<String>,
) -> Result<Response, WebError> {
    let id: i64 = raw_id.parse().map_err(|_| WebError::NotFound("meeting"))?;
    let meeting = match state.store().meeting(id).await {
        Ok(meeting) => meeting,
        Err(StoreError::NotFound(_)) => return Err(WebError::NotFound("meeting")),
        Err(err) => return Err(err.into()),
    };
    let council = state.store().council_by_id(meeting.council_id).await?;

    // Agenda text comes from council sites: it is sanitised again here, whatever the store
    // holds, before it is printed unescaped.
    let agenda: Vec<AgendaLine> = meeting
        .agenda_items
        .iter()
        .map(|item| AgendaLine {
            number: item
                .number
                .as_ref()
                .map(|n| n.trim_end_matches('.').to_owned()),
            title: item.title.clone(),
            text_html: item
                .text_html
                .as_deref()
                .map(sanitise_agenda_html)
                .filter(|html| !html.trim().is_empty()),
        })
        .collect();
    let documents: Vec<serde_json::Value> = meeting
        .documents
        .iter()
        .filter(|d| is_web_url(&d.url))
        .map(|d| serde_json::json!({"title": d.title, "url": d.url}))
        .collect();
    let url = meeting.url.clone().filter(|u| is_web_url(u));

    let data = serde_json::json!({
        "council": {"slug": council.slug.as_str(), "name": council.name},
        "meeting": {
            "title": meeting.title,
            "when": when_text(&meeting),
            "status": meeting.status,
            "cancelled": meeting.cancelled,
            "location": meeting.location,
            "url": url,
        },
        "agenda": agenda,
        "attendees": meeting.attendees,
        "documents": documents,
    });
    let html = state.views().page("meeting", &meeting.title, &data)?;
    Ok(Html(html).into_response())
}

/// Agenda HTML from a council site, reduced to harmless markup: no script, style, forms or
/// event attributes; links open without a referrer.
pub fn sanitise_agenda_html(raw: &str) -> String {
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .clean(raw)
        .to_string()
}

/// `/digests/{token}`: the web view of one digest e-mail, with the e-mail's own HTML.
pub async fn digest(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, WebError> {
    let digest_id: i64 = state
        .links()
        .verify(crate::tokens::LinkPurpose::DigestView, &token)
        .and_then(|subject| subject.parse().ok())
        .ok_or(WebError::NotFound("digest"))?;
    let html = crate::digest::render_digest_html_for_web(
        state.store(),
        state.settings(),
        state.mailer().renderer(),
        state.mailer().context(),
        digest_id,
    )
    .await
    .map_err(|err| match err {
        MailError::NotFound(_) => WebError::NotFound("digest"),
        other => WebError::Internal(error_chain(&other)),
    })?;
    let mut response = Html(html).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(security::DIGEST_CONTENT_SECURITY_POLICY),
    );
    Ok(response)
}

/// `/healthz`: 200 when the database answers, 503 when it does not.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.store().ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => {
            tracing::warn!(error = %error_chain(&err), "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn council_types_read_as_words() {
        assert_eq!(
            humane_type("metropolitan-district"),
            "Metropolitan district"
        );
        assert_eq!(humane_type("unitary"), "Unitary");
        assert_eq!(humane_type(""), "");
    }

    #[test]
    fn agenda_html_loses_scripts_handlers_and_styles_but_keeps_text_and_links() {
        let raw = "<p onclick=\"steal()\">Budget <b>2026</b></p><script>alert(1)</script>\
                   <style>p{}</style><a href=\"javascript:alert(1)\">x</a>\
                   <a href=\"https://example.org/doc.pdf\">report</a>";
        let clean = sanitise_agenda_html(raw);
        assert!(!clean.contains("script"), "{clean}");
        assert!(!clean.contains("onclick"), "{clean}");
        assert!(!clean.contains("<style"), "{clean}");
        assert!(!clean.contains("javascript:"), "{clean}");
        assert!(clean.contains("<p>Budget <b>2026</b></p>"), "{clean}");
        assert!(
            clean.contains(
                "<a href=\"https://example.org/doc.pdf\" rel=\"noopener noreferrer nofollow\">\
                 report</a>"
            ),
            "{clean}"
        );
    }
}
