//! `/metrics`: the service's state in the Prometheus text format, read straight from the
//! tables (read-only) at each scrape, so every daemon sharing a database reports the same.
//!
//! Counts are of what the tables hold: per source, the running totals of polls and failed polls
//! (kept by the poller in `sources`), the time of the last poll and success, and the current run
//! of failures.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sqlx::Row;

use crate::domain::{DeliveryState, SubscriptionState};
use crate::store::{StepContext, Store, StoreError};
use crate::web::server::{AppState, WebError};

pub async fn metrics(State(state): State<AppState>) -> Result<Response, WebError> {
    let text = render_metrics(state.store()).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Escapes a label value as the text format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition.
pub async fn render_metrics(store: &Store) -> Result<String, StoreError> {
    let mut out = String::new();
    sources(store, &mut out).await?;
    deliveries(store, &mut out).await?;
    subscribers(store, &mut out).await?;
    promotions(store, &mut out).await?;
    Ok(out)
}

async fn sources(store: &Store, out: &mut String) -> Result<(), StoreError> {
    let rows = sqlx::query(
        "SELECT s.id, c.slug, s.kind, s.last_poll_at, s.last_success_at, \
         s.consecutive_failures, s.failing_since, s.polls_total, s.failures_total \
         FROM sources s JOIN councils c ON c.id = s.council_id \
         WHERE s.active = 1 ORDER BY s.id",
    )
    .fetch_all(store.pool())
    .await
    .step("read sources for metrics")?;

    let mut polls = String::new();
    let mut successes = String::new();
    let mut failures = String::new();
    let mut totals = String::new();
    let mut failed_totals = String::new();
    let mut failing = 0i64;
    for row in &rows {
        let id: i64 = row.try_get("id").step("decode a source")?;
        let slug: String = row.try_get("slug").step("decode a source")?;
        let kind: String = row.try_get("kind").step("decode a source")?;
        let last_poll: Option<i64> = row.try_get("last_poll_at").step("decode a source")?;
        let last_success: Option<i64> = row.try_get("last_success_at").step("decode a source")?;
        let consecutive: i64 = row
            .try_get("consecutive_failures")
            .step("decode a source")?;
        let failing_since: Option<i64> = row.try_get("failing_since").step("decode a source")?;
        let polls_total: i64 = row.try_get("polls_total").step("decode a source")?;
        let failures_total: i64 = row.try_get("failures_total").step("decode a source")?;
        let labels = format!(
            "source=\"{id}\",council=\"{}\",kind=\"{}\"",
            label(&slug),
            label(&kind)
        );
        if let Some(at) = last_poll {
            let _ = writeln!(
                polls,
                "council_digest_source_last_poll_timestamp_seconds{{{labels}}} {at}"
            );
        }
        if let Some(at) = last_success {
            let _ = writeln!(
                successes,
                "council_digest_source_last_success_timestamp_seconds{{{labels}}} {at}"
            );
        }
        let _ = writeln!(
            failures,
            "council_digest_source_consecutive_failures{{{labels}}} {consecutive}"
        );
        let _ = writeln!(
            totals,
            "council_digest_source_polls_total{{{labels}}} {polls_total}"
        );
        let _ = writeln!(
            failed_totals,
            "council_digest_source_poll_failures_total{{{labels}}} {failures_total}"
        );
        if failing_since.is_some() {
            failing += 1;
        }
    }

    family(out, "council_digest_sources", "gauge", "Active sources.");
    let _ = writeln!(out, "council_digest_sources {}", rows.len());
    family(
        out,
        "council_digest_sources_failing",
        "gauge",
        "Active sources whose last poll failed.",
    );
    let _ = writeln!(out, "council_digest_sources_failing {failing}");
    family(
        out,
        "council_digest_source_last_poll_timestamp_seconds",
        "gauge",
        "When each source was last polled.",
    );
    out.push_str(&polls);
    family(
        out,
        "council_digest_source_last_success_timestamp_seconds",
        "gauge",
        "When each source was last polled successfully.",
    );
    out.push_str(&successes);
    family(
        out,
        "council_digest_source_consecutive_failures",
        "gauge",
        "Failed polls of each source since its last success.",
    );
    out.push_str(&failures);
    family(
        out,
        "council_digest_source_polls_total",
        "counter",
        "Polls of each source, successful or not.",
    );
    out.push_str(&totals);
    family(
        out,
        "council_digest_source_poll_failures_total",
        "counter",
        "Failed polls of each source.",
    );
    out.push_str(&failed_totals);
    Ok(())
}

/// Counts of `column` values in `table`, with every expected value present (zero if absent).
async fn counts_by(
    store: &Store,
    sql: &str,
    expected: &[&str],
    step: &'static str,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(sql).fetch_all(store.pool()).await.step(step)?;
    let mut counts: Vec<(String, i64)> = expected.iter().map(|v| (v.to_string(), 0)).collect();
    for row in &rows {
        let key: String = row.try_get(0).step(step)?;
        let n: i64 = row.try_get(1).step(step)?;
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = n,
            None => counts.push((key, n)),
        }
    }
    Ok(counts)
}

async fn deliveries(store: &Store, out: &mut String) -> Result<(), StoreError> {
    let states: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
    let counts = counts_by(
        store,
        "SELECT state, COUNT(*) FROM deliveries GROUP BY state",
        &states,
        "count deliveries by state",
    )
    .await?;
    family(
        out,
        "council_digest_deliveries",
        "gauge",
        "Messages in the delivery ledger by state.",
    );
    for (state, n) in counts {
        let _ = writeln!(
            out,
            "council_digest_deliveries{{state=\"{}\"}} {n}",
            label(&state)
        );
    }
    Ok(())
}

async fn subscribers(store: &Store, out: &mut String) -> Result<(), StoreError> {
    // A subscriber's state: suppressed when mail to them stopped, else the furthest state of
    // their subscriptions (confirmed over pending over unsubscribed).
    let counts = counts_by(
        store,
        "SELECT CASE \
           WHEN s.suppressed_at IS NOT NULL THEN 'suppressed' \
           WHEN EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id \
                        AND x.state = 'confirmed') THEN 'confirmed' \
           WHEN EXISTS (SELECT 1 FROM subscriptions x WHERE x.subscriber_id = s.id \
                        AND x.state = 'pending') THEN 'pending' \
           ELSE 'unsubscribed' END AS state, COUNT(*) \
         FROM subscribers s GROUP BY 1",
        &["pending", "confirmed", "unsubscribed", "suppressed"],
        "count subscribers by state",
    )
    .await?;
    family(
        out,
        "council_digest_subscribers",
        "gauge",
        "Subscribers by state.",
    );
    for (state, n) in counts {
        let _ = writeln!(
            out,
            "council_digest_subscribers{{state=\"{}\"}} {n}",
            label(&state)
        );
    }

    let states: Vec<&str> = SubscriptionState::ALL.iter().map(|s| s.as_str()).collect();
    let counts = counts_by(
        store,
        "SELECT state, COUNT(*) FROM subscriptions GROUP BY state",
        &states,
        "count subscriptions by state",
    )
    .await?;
    family(
        out,
        "council_digest_subscriptions",
        "gauge",
        "Subscriptions to councils by state.",
    );
    for (state, n) in counts {
        let _ = writeln!(
            out,
            "council_digest_subscriptions{{state=\"{}\"}} {n}",
            label(&state)
        );
    }
    Ok(())
}

async fn promotions(store: &Store, out: &mut String) -> Result<(), StoreError> {
    let counts = counts_by(
        store,
        "SELECT direction, COUNT(*) FROM promotions GROUP BY direction",
        &["promote", "demote"],
        "count promotions",
    )
    .await?;
    family(
        out,
        "council_digest_support_changes_total",
        "counter",
        "Councils promoted to full support or demoted, ever.",
    );
    for (direction, n) in counts {
        let _ = writeln!(
            out,
            "council_digest_support_changes_total{{direction=\"{}\"}} {n}",
            label(&direction)
        );
    }
    let full = counts_by(
        store,
        "SELECT support, COUNT(*) FROM councils GROUP BY support",
        &["limited", "full"],
        "count councils by support",
    )
    .await?;
    family(
        out,
        "council_digest_councils",
        "gauge",
        "Councils by support level.",
    );
    for (support, n) in full {
        let _ = writeln!(
            out,
            "council_digest_councils{{support=\"{}\"}} {n}",
            label(&support)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_backslashes_quotes_and_line_breaks() {
        assert_eq!(label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
