//! Sources as the poller sees them: their health record, what is due, and the HTTP validators
//! (ETag / Last-Modified) kept per fetched URL.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::clock::from_ts;
use crate::domain::{CouncilSlug, SourceKind, SupportLevel};
use crate::store::{StepContext, Store, StoreError, WriteTx};

/// One source's health: when it last worked, what went wrong since, and when it is tried next.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceHealth {
    pub source_id: i64,
    pub council_id: i64,
    pub council_slug: String,
    pub kind: SourceKind,
    pub url: String,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub consecutive_failures: i64,
    pub next_poll_at: Option<DateTime<Utc>>,
}

/// An active source with what the poller needs to fetch it.
#[derive(Debug, Clone, PartialEq)]
pub struct PollTarget {
    pub source_id: i64,
    pub council_id: i64,
    pub council_slug: CouncilSlug,
    pub support: SupportLevel,
    pub kind: SourceKind,
    pub url: String,
    /// The council's committee-system base in effect (`councils.base_url`).
    pub council_base_url: Option<String>,
    pub consecutive_failures: i64,
    pub next_poll_at: Option<DateTime<Utc>>,
}

/// The validators a server gave for one URL, sent back on the next conditional GET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpValidators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

const HEALTH_COLUMNS: &str = "s.id, s.council_id, c.slug, s.kind, s.url, s.last_success_at, \
                              s.last_error, s.failing_since, s.consecutive_failures, \
                              s.next_poll_at";

fn decode_error(column: &str, err: crate::domain::ParseError) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(err),
    }
}

fn health_from_row(row: &AnyRow) -> Result<SourceHealth, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let ts = |column: &str| -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(from_ts))
    };
    Ok(SourceHealth {
        source_id: row.try_get("id")?,
        council_id: row.try_get("council_id")?,
        council_slug: row.try_get("slug")?,
        kind: kind.parse().map_err(|e| decode_error("kind", e))?,
        url: row.try_get("url")?,
        last_success_at: ts("last_success_at")?,
        last_error: row.try_get("last_error")?,
        failing_since: ts("failing_since")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
        next_poll_at: ts("next_poll_at")?,
    })
}

fn target_from_row(row: &AnyRow) -> Result<PollTarget, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let slug: String = row.try_get("slug")?;
    let support: String = row.try_get("support")?;
    Ok(PollTarget {
        source_id: row.try_get("id")?,
        council_id: row.try_get("council_id")?,
        council_slug: slug.parse().map_err(|e| decode_error("slug", e))?,
        support: support.parse().map_err(|e| decode_error("support", e))?,
        kind: kind.parse().map_err(|e| decode_error("kind", e))?,
        url: row.try_get("url")?,
        council_base_url: row.try_get("base_url")?,
        consecutive_failures: row.try_get("consecutive_failures")?,
        next_poll_at: row.try_get::<Option<i64>, _>("next_poll_at")?.map(from_ts),
    })
}

impl Store {
    /// The active sources of one council with their health, by kind and URL.
    pub async fn council_sources(&self, council_id: i64) -> Result<Vec<SourceHealth>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {HEALTH_COLUMNS} FROM sources s JOIN councils c ON c.id = s.council_id \
             WHERE s.council_id = $1 AND s.active = 1 ORDER BY s.kind, s.url"
        ))
        .bind(council_id)
        .fetch_all(self.pool())
        .await
        .step("list a council's sources")?;
        rows.iter()
            .map(health_from_row)
            .collect::<Result<_, _>>()
            .step("decode sources")
    }

    /// Every active source with its health, by council slug; only failing ones when asked.
    pub async fn list_sources(&self, failing_only: bool) -> Result<Vec<SourceHealth>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {HEALTH_COLUMNS} FROM sources s JOIN councils c ON c.id = s.council_id \
             WHERE s.active = 1 AND ($1 = 0 OR s.consecutive_failures > 0) \
             ORDER BY c.slug, s.kind, s.url"
        ))
        .bind(i64::from(failing_only))
        .fetch_all(self.pool())
        .await
        .step("list sources")?;
        rows.iter()
            .map(health_from_row)
            .collect::<Result<_, _>>()
            .step("decode sources")
    }

    /// Active sources to poll, by council slug, kind and URL. With `councils` non-empty only
    /// those councils; with `support` only councils at that level.
    pub async fn poll_targets(
        &self,
        councils: &[CouncilSlug],
        support: Option<SupportLevel>,
    ) -> Result<Vec<PollTarget>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id, s.council_id, c.slug, c.support, s.kind, s.url, c.base_url, \
             s.consecutive_failures, s.next_poll_at \
             FROM sources s JOIN councils c ON c.id = s.council_id \
             WHERE s.active = 1 AND ($1 = '' OR c.support = $1) \
             ORDER BY c.slug, s.kind, s.url",
        )
        .bind(support.map(SupportLevel::as_str).unwrap_or(""))
        .fetch_all(self.pool())
        .await
        .step("list sources to poll")?;
        let targets: Vec<PollTarget> = rows
            .iter()
            .map(target_from_row)
            .collect::<Result<_, _>>()
            .step("decode sources to poll")?;
        Ok(targets
            .into_iter()
            .filter(|t| councils.is_empty() || councils.contains(&t.council_slug))
            .collect())
    }

    /// The saved validators of every URL fetched for a source.
    pub async fn http_validators(
        &self,
        source_id: i64,
    ) -> Result<HashMap<String, HttpValidators>, StoreError> {
        let rows =
            sqlx::query("SELECT url, etag, last_modified FROM http_cache WHERE source_id = $1")
                .bind(source_id)
                .fetch_all(self.pool())
                .await
                .step("read saved HTTP validators")?;
        let mut out = HashMap::new();
        for row in rows {
            let url: String = row.try_get("url").step("decode HTTP validators")?;
            out.insert(
                url,
                HttpValidators {
                    etag: row.try_get("etag").step("decode HTTP validators")?,
                    last_modified: row
                        .try_get("last_modified")
                        .step("decode HTTP validators")?,
                },
            );
        }
        Ok(out)
    }
}

/// Saves the validators of one URL, in the poll's own transaction (so they are kept only when
/// the data they describe is). Writes nothing when they have not changed.
pub async fn save_http_validators(
    tx: &mut WriteTx,
    source_id: i64,
    url: &str,
    validators: &HttpValidators,
    now: i64,
) -> Result<(), StoreError> {
    let current =
        sqlx::query("SELECT etag, last_modified FROM http_cache WHERE source_id = $1 AND url = $2")
            .bind(source_id)
            .bind(url)
            .fetch_optional(&mut **tx)
            .await
            .step("read saved HTTP validators")?;
    let current = match current {
        Some(row) => Some(HttpValidators {
            etag: row.try_get("etag").step("decode HTTP validators")?,
            last_modified: row
                .try_get("last_modified")
                .step("decode HTTP validators")?,
        }),
        None => None,
    };
    let empty = validators.etag.is_none() && validators.last_modified.is_none();
    match current {
        Some(current) if current == *validators => {}
        Some(_) if empty => {
            sqlx::query("DELETE FROM http_cache WHERE source_id = $1 AND url = $2")
                .bind(source_id)
                .bind(url)
                .execute(&mut **tx)
                .await
                .step("forget HTTP validators")?;
        }
        None if empty => {}
        _ => {
            sqlx::query(
                "INSERT INTO http_cache (source_id, url, etag, last_modified, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source_id, url) DO UPDATE SET \
                 etag = excluded.etag, last_modified = excluded.last_modified, \
                 updated_at = excluded.updated_at",
            )
            .bind(source_id)
            .bind(url)
            .bind(validators.etag.clone())
            .bind(validators.last_modified.clone())
            .bind(now)
            .execute(&mut **tx)
            .await
            .step("save HTTP validators")?;
        }
    }
    Ok(())
}

/// Forgets the validators of a source's URLs that this poll did not fetch (for example a
/// meeting list whose date range has moved on).
pub async fn prune_http_validators(
    tx: &mut WriteTx,
    source_id: i64,
    fetched: &[String],
) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT url FROM http_cache WHERE source_id = $1")
        .bind(source_id)
        .fetch_all(&mut **tx)
        .await
        .step("read saved HTTP validators")?;
    for row in rows {
        let url: String = row.try_get("url").step("decode HTTP validators")?;
        if !fetched.contains(&url) {
            sqlx::query("DELETE FROM http_cache WHERE source_id = $1 AND url = $2")
                .bind(source_id)
                .bind(&url)
                .execute(&mut **tx)
                .await
                .step("forget old HTTP validators")?;
        }
    }
    Ok(())
}

/// Records a successful poll: the failure streak ends and the next scheduled poll is noted.
pub async fn record_source_success(
    tx: &mut WriteTx,
    source_id: i64,
    now: i64,
    next_poll_at: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE sources SET last_poll_at = $1, last_success_at = $1, failing_since = NULL, \
         consecutive_failures = 0, next_poll_at = $2, polls_total = polls_total + 1 \
         WHERE id = $3",
    )
    .bind(now)
    .bind(next_poll_at)
    .bind(source_id)
    .execute(&mut **tx)
    .await
    .step("record a successful poll")?;
    Ok(())
}

impl Store {
    /// Records a failed poll in its own transaction (the poll's data was not stored): the error,
    /// the streak, and when to try again. Returns the new number of consecutive failures.
    pub async fn record_source_failure(
        &self,
        source_id: i64,
        error: &str,
        next_poll_at: i64,
    ) -> Result<i64, StoreError> {
        let now = self.clock().now_ts();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE sources SET last_poll_at = $1, last_error_at = $1, last_error = $2, \
             failing_since = COALESCE(failing_since, $1), \
             consecutive_failures = consecutive_failures + 1, next_poll_at = $3, \
             polls_total = polls_total + 1, failures_total = failures_total + 1 \
             WHERE id = $4 RETURNING consecutive_failures",
        )
        .bind(now)
        .bind(error)
        .bind(next_poll_at)
        .bind(source_id)
        .fetch_optional(&mut *tx)
        .await
        .step("record a failed poll")?
        .ok_or_else(|| StoreError::NotFound(format!("source {source_id}")))?;
        let failures: i64 = row
            .try_get("consecutive_failures")
            .step("read a failure count")?;
        tx.commit().await.step("commit a failed poll")?;
        Ok(failures)
    }
}
