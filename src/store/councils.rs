//! Councils and their sources: loading the registry, listing, and the support level.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::{CouncilSlug, Platform, SourceKind, SupportLevel};
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::{StepContext, Store, StoreError, WriteTx, flag, int_flag};

/// One council as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Council {
    pub id: i64,
    pub slug: CouncilSlug,
    pub name: String,
    pub gss_code: String,
    pub nation: String,
    pub council_type: String,
    pub platform: Platform,
    /// The committee-system base in effect: the operator's override, else the registry's.
    pub base_url: Option<String>,
    pub support: SupportLevel,
    /// Named in the settings; promotion and demotion leave it alone.
    pub support_pinned: bool,
    pub support_changed_at: Option<i64>,
}

/// What one registry sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub councils_added: u64,
    pub councils_updated: u64,
    pub councils_unchanged: u64,
    pub sources_added: u64,
    pub sources_retired: u64,
}

pub(crate) const COUNCIL_COLUMNS: &str = "id, slug, name, gss_code, nation, council_type, \
     platform, base_url, support, support_pinned, support_changed_at";

pub(crate) fn council_from_row(row: &AnyRow) -> Result<Council, sqlx::Error> {
    let decode = |column: &str, err: crate::domain::ParseError| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(err),
    };
    let slug: String = row.try_get("slug")?;
    let platform: String = row.try_get("platform")?;
    let support: String = row.try_get("support")?;
    Ok(Council {
        id: row.try_get("id")?,
        slug: slug.parse().map_err(|e| decode("slug", e))?,
        name: row.try_get("name")?,
        gss_code: row.try_get("gss_code")?,
        nation: row.try_get("nation")?,
        council_type: row.try_get("council_type")?,
        platform: platform.parse().map_err(|e| decode("platform", e))?,
        base_url: row.try_get("base_url")?,
        support: support.parse().map_err(|e| decode("support", e))?,
        support_pinned: flag(row.try_get("support_pinned")?),
        support_changed_at: row.try_get("support_changed_at")?,
    })
}

/// Guesses a feed's kind from its URL; the poller still checks what actually arrives.
pub fn feed_kind(url: &str) -> SourceKind {
    let lower = url.to_ascii_lowercase();
    let path = lower.split(['?', '#']).next().unwrap_or(&lower);
    if path.ends_with(".ics") || path.ends_with(".ical") || lower.starts_with("webcal:") {
        SourceKind::Ical
    } else {
        SourceKind::Feed
    }
}

impl Store {
    /// Loads the registry and the operator's per-council settings. Idempotent: a second run
    /// changes nothing. Registry facts and base URLs are updated; support levels and
    /// subscriptions are never reset, except that a level named in the settings is applied.
    pub async fn sync_councils(
        &self,
        registry: &Registry,
        settings: &Settings,
    ) -> Result<SyncReport, StoreError> {
        let now = self.clock().now_ts();
        let mut report = SyncReport::default();
        let mut tx = self.begin_write().await?;

        for entry in registry.councils() {
            let overrides = settings.councils.get(entry.slug.as_str());
            let base_url = overrides
                .and_then(|o| o.base_url.clone())
                .or_else(|| entry.base_url.clone())
                .map(|url| url.trim_end_matches('/').to_owned());
            let pinned = overrides.and_then(|o| o.support);

            let existing = sqlx::query(&format!(
                "SELECT {COUNCIL_COLUMNS} FROM councils WHERE slug = $1"
            ))
            .bind(entry.slug.as_str())
            .fetch_optional(&mut *tx)
            .await
            .step("read a council")?
            .map(|row| council_from_row(&row))
            .transpose()
            .step("decode a council")?;

            let council_id = match existing {
                None => {
                    let support = pinned.unwrap_or(SupportLevel::Limited);
                    let id: i64 = sqlx::query(
                        "INSERT INTO councils (slug, name, gss_code, nation, council_type, \
                         platform, registry_base_url, base_url, support, support_pinned, \
                         support_changed_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11) \
                         RETURNING id",
                    )
                    .bind(entry.slug.as_str())
                    .bind(&entry.name)
                    .bind(&entry.gss_code)
                    .bind(&entry.nation)
                    .bind(&entry.council_type)
                    .bind(entry.platform.as_str())
                    .bind(entry.base_url.clone())
                    .bind(base_url.clone())
                    .bind(support.as_str())
                    .bind(int_flag(pinned.is_some()))
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .step("add a council")?
                    .try_get("id")
                    .step("read a new council's id")?;
                    report.councils_added += 1;
                    id
                }
                Some(current) => {
                    let support = pinned.unwrap_or(current.support);
                    let changed = current.name != entry.name
                        || current.gss_code != entry.gss_code
                        || current.nation != entry.nation
                        || current.council_type != entry.council_type
                        || current.platform != entry.platform
                        || current.base_url != base_url
                        || current.support != support
                        || current.support_pinned != pinned.is_some();
                    if changed {
                        let support_changed_at = if support != current.support {
                            Some(now)
                        } else {
                            current.support_changed_at
                        };
                        sqlx::query(
                            "UPDATE councils SET name = $1, gss_code = $2, nation = $3, \
                             council_type = $4, platform = $5, registry_base_url = $6, \
                             base_url = $7, support = $8, support_pinned = $9, \
                             support_changed_at = $10, updated_at = $11 WHERE id = $12",
                        )
                        .bind(&entry.name)
                        .bind(&entry.gss_code)
                        .bind(&entry.nation)
                        .bind(&entry.council_type)
                        .bind(entry.platform.as_str())
                        .bind(entry.base_url.clone())
                        .bind(base_url.clone())
                        .bind(support.as_str())
                        .bind(int_flag(pinned.is_some()))
                        .bind(support_changed_at)
                        .bind(now)
                        .bind(current.id)
                        .execute(&mut *tx)
                        .await
                        .step("update a council")?;
                        if support != current.support {
                            record_support_change(&mut tx, current.id, support, "settings", now)
                                .await?;
                        }
                        report.councils_updated += 1;
                    } else {
                        report.councils_unchanged += 1;
                    }
                    current.id
                }
            };

            let mut wanted: Vec<(SourceKind, String)> = Vec::new();
            if entry.platform == Platform::ModernGov {
                if let Some(base) = &base_url {
                    wanted.push((SourceKind::ModernGov, base.clone()));
                }
            }
            for feed in overrides.map(|o| o.feeds.as_slice()).unwrap_or_default() {
                wanted.push((feed_kind(feed), feed.clone()));
            }
            let (added, retired) = sync_sources(&mut tx, council_id, &wanted, now).await?;
            report.sources_added += added;
            report.sources_retired += retired;
        }

        tx.commit().await.step("commit the registry sync")?;
        Ok(report)
    }

    /// Councils, optionally filtered, sorted by name.
    pub async fn list_councils(
        &self,
        platform: Option<Platform>,
        support: Option<SupportLevel>,
    ) -> Result<Vec<Council>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COUNCIL_COLUMNS} FROM councils \
             WHERE ($1 = '' OR platform = $1) AND ($2 = '' OR support = $2) \
             ORDER BY name, slug"
        ))
        .bind(platform.map(Platform::as_str).unwrap_or(""))
        .bind(support.map(SupportLevel::as_str).unwrap_or(""))
        .fetch_all(self.pool())
        .await
        .step("list councils")?;
        rows.iter()
            .map(council_from_row)
            .collect::<Result<_, _>>()
            .step("decode councils")
    }

    pub async fn council_by_slug(&self, slug: &CouncilSlug) -> Result<Council, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COUNCIL_COLUMNS} FROM councils WHERE slug = $1"
        ))
        .bind(slug.as_str())
        .fetch_optional(self.pool())
        .await
        .step("read a council")?
        .ok_or_else(|| StoreError::NotFound(format!("council `{slug}`")))?;
        council_from_row(&row).step("decode a council")
    }

    pub async fn council_by_id(&self, id: i64) -> Result<Council, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COUNCIL_COLUMNS} FROM councils WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .step("read a council")?
        .ok_or_else(|| StoreError::NotFound(format!("council {id}")))?;
        council_from_row(&row).step("decode a council")
    }

    /// Active feed URLs attached to a council by the operator.
    pub async fn council_feeds(&self, council_id: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT url FROM sources WHERE council_id = $1 AND active = 1 AND kind <> 'moderngov' \
             ORDER BY url",
        )
        .bind(council_id)
        .fetch_all(self.pool())
        .await
        .step("list a council's feeds")?;
        rows.iter()
            .map(|r| r.try_get("url"))
            .collect::<Result<_, _>>()
            .step("decode feeds")
    }

    /// The operator's direct lever: sets a council's support level and records why.
    /// Returns false when the council already had that level.
    pub async fn set_council_support(
        &self,
        slug: &CouncilSlug,
        level: SupportLevel,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let council = self.council_by_slug(slug).await?;
        if council.support == level {
            return Ok(false);
        }
        let now = self.clock().now_ts();
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE councils SET support = $1, support_changed_at = $2, below_demote_since = NULL, \
             updated_at = $2 WHERE id = $3 AND support <> $1",
        )
        .bind(level.as_str())
        .bind(now)
        .bind(council.id)
        .execute(&mut *tx)
        .await
        .step("set a council's support level")?
        .rows_affected();
        if updated == 1 {
            record_support_change(&mut tx, council.id, level, reason, now).await?;
        }
        tx.commit().await.step("commit a support change")?;
        Ok(updated == 1)
    }
}

/// Records a support change in the promotions history, with the council's current score.
async fn record_support_change(
    tx: &mut WriteTx,
    council_id: i64,
    level: SupportLevel,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    let direction = match level {
        SupportLevel::Full => "promote",
        SupportLevel::Limited => "demote",
    };
    sqlx::query(
        "INSERT INTO promotions (council_id, happened_at, direction, score, rank, reason) \
         VALUES ($1, $2, $3, 0.0, NULL, $4)",
    )
    .bind(council_id)
    .bind(now)
    .bind(direction)
    .bind(reason)
    .execute(&mut **tx)
    .await
    .step("record a support change")?;
    Ok(())
}

/// Makes the council's active sources exactly `wanted`: new ones are added, missing ones are
/// retired (kept, with their history, but no longer polled).
async fn sync_sources(
    tx: &mut WriteTx,
    council_id: i64,
    wanted: &[(SourceKind, String)],
    now: i64,
) -> Result<(u64, u64), StoreError> {
    let rows = sqlx::query("SELECT id, kind, url, active FROM sources WHERE council_id = $1")
        .bind(council_id)
        .fetch_all(&mut **tx)
        .await
        .step("read a council's sources")?;
    let mut added = 0;
    let mut retired = 0;

    for row in &rows {
        let id: i64 = row.try_get("id").step("decode a source")?;
        let kind: String = row.try_get("kind").step("decode a source")?;
        let url: String = row.try_get("url").step("decode a source")?;
        let active = flag(row.try_get("active").step("decode a source")?);
        let keep = wanted.iter().any(|(k, u)| k.as_str() == kind && *u == url);
        if active != keep {
            sqlx::query("UPDATE sources SET active = $1 WHERE id = $2")
                .bind(int_flag(keep))
                .bind(id)
                .execute(&mut **tx)
                .await
                .step("change a source's active flag")?;
            if !keep {
                retired += 1;
            }
        }
    }

    for (kind, url) in wanted {
        let exists = rows.iter().any(|row| {
            row.try_get::<String, _>("kind")
                .is_ok_and(|k| k == kind.as_str())
                && row.try_get::<String, _>("url").is_ok_and(|u| u == *url)
        });
        if !exists {
            sqlx::query(
                "INSERT INTO sources (council_id, kind, url, active, created_at) \
                 VALUES ($1, $2, $3, 1, $4)",
            )
            .bind(council_id)
            .bind(kind.as_str())
            .bind(url)
            .bind(now)
            .execute(&mut **tx)
            .await
            .step("add a source")?;
            added += 1;
        }
    }
    Ok((added, retired))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_kinds_are_guessed_from_the_url() {
        assert_eq!(
            feed_kind("https://e.org/cal/meetings.ics"),
            SourceKind::Ical
        );
        assert_eq!(feed_kind("https://e.org/cal.ICS?x=1"), SourceKind::Ical);
        assert_eq!(feed_kind("webcal://e.org/cal"), SourceKind::Ical);
        assert_eq!(feed_kind("https://e.org/news.rss"), SourceKind::Feed);
        assert_eq!(
            feed_kind("https://e.org/mgRss.aspx?XXR=0"),
            SourceKind::Feed
        );
    }
}
