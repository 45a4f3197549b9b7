//! Storage on both backends: the registry sync, support levels and the ledger's dedupe key.
//! Runs on SQLite always and on PostgreSQL when TEST_DATABASE_URL is set.

use council_digest::clock::Clock;
use council_digest::domain::{CouncilSlug, SupportLevel};
use council_digest::registry::Registry;
use council_digest::settings::{CouncilOverride, Settings};
use council_digest::store::deliveries::{Enqueued, NewDelivery, enqueue_delivery};
use council_digest::store::testing::fresh_databases;

fn clock() -> Clock {
    Clock::fixed(
        chrono::DateTime::parse_from_rfc3339("2026-02-09T07:00:00Z")
            .unwrap()
            .to_utc(),
    )
}

fn slug(s: &str) -> CouncilSlug {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_registry_sync_loads_382_councils_and_a_second_changes_nothing() {
    council_digest::telemetry::init_for_tests();
    for db in fresh_databases(clock()).await {
        let settings = Settings::defaults();
        let first = db
            .store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        assert_eq!(first.councils_added, 382, "{}", db.label);
        let moderngov_with_base = Registry::builtin()
            .councils()
            .iter()
            .filter(|c| c.platform.as_str() == "moderngov" && c.base_url.is_some())
            .count() as u64;
        assert_eq!(first.sources_added, moderngov_with_base, "{}", db.label);

        let second = db
            .store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        assert_eq!(
            second.councils_added + second.councils_updated,
            0,
            "{}",
            db.label
        );
        assert_eq!(second.councils_unchanged, 382, "{}", db.label);
        assert_eq!(
            second.sources_added + second.sources_retired,
            0,
            "{}",
            db.label
        );

        let wolverhampton = db
            .store
            .council_by_slug(&slug("wolverhampton"))
            .await
            .unwrap();
        assert_eq!(wolverhampton.name, "City of Wolverhampton Council");
        assert_eq!(wolverhampton.gss_code, "E08000031");
        assert_eq!(wolverhampton.support, SupportLevel::Limited);
    }
}

#[tokio::test]
async fn a_sync_applies_overrides_and_never_resets_support_set_by_an_operator() {
    for db in fresh_databases(clock()).await {
        let mut settings = Settings::defaults();
        db.store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        assert!(
            db.store
                .set_council_support(&slug("leeds"), SupportLevel::Full, "operator")
                .await
                .unwrap()
        );

        settings.councils.insert(
            "wolverhampton".into(),
            CouncilOverride {
                base_url: Some("https://democracy.example.org/".into()),
                feeds: vec![
                    "https://example.org/news.rss".into(),
                    "https://e.org/m.ics".into(),
                ],
                support: Some(SupportLevel::Full),
            },
        );
        let report = db
            .store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        assert_eq!(report.councils_updated, 1, "{}", db.label);
        // The ModernGov source moves to the new base: one retired, three added.
        assert_eq!(
            (report.sources_added, report.sources_retired),
            (3, 1),
            "{}",
            db.label
        );

        let wolverhampton = db
            .store
            .council_by_slug(&slug("wolverhampton"))
            .await
            .unwrap();
        assert_eq!(
            wolverhampton.base_url.as_deref(),
            Some("https://democracy.example.org")
        );
        assert_eq!(wolverhampton.support, SupportLevel::Full);
        assert!(wolverhampton.support_pinned);
        let leeds = db.store.council_by_slug(&slug("leeds")).await.unwrap();
        assert_eq!(leeds.support, SupportLevel::Full, "{}", db.label);

        let full = db
            .store
            .list_councils(None, Some(SupportLevel::Full))
            .await
            .unwrap();
        let names: Vec<&str> = full.iter().map(|c| c.slug.as_str()).collect();
        // Sorted by name: "City of Wolverhampton Council" comes before "Leeds City Council".
        assert_eq!(names, vec!["wolverhampton", "leeds"], "{}", db.label);
    }
}

#[tokio::test]
async fn queueing_the_same_message_twice_keeps_one_row() {
    for db in fresh_databases(clock()).await {
        let delivery = NewDelivery {
            dedupe_key: "digest:1:2026-W07".into(),
            kind: "digest".into(),
            subscriber_id: None,
            digest_id: None,
            payload: serde_json::json!({}),
        };
        let mut tx = db.store.begin_write().await.unwrap();
        let first = enqueue_delivery(&mut tx, &delivery, 1).await.unwrap();
        let second = enqueue_delivery(&mut tx, &delivery, 2).await.unwrap();
        tx.commit().await.unwrap();
        assert!(matches!(first, Enqueued::Queued(_)), "{}", db.label);
        assert_eq!(second, Enqueued::AlreadyQueued, "{}", db.label);
    }
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_not_a_panic() {
    let err =
        council_digest::store::Store::connect("postgres://nobody@127.0.0.1:1/none", 1, clock())
            .await
            .unwrap_err();
    assert!(
        err.to_string().contains("cannot open the database"),
        "{err}"
    );
}

#[tokio::test]
async fn polls_and_failed_polls_are_counted_per_source_and_exported_as_metrics() {
    for db in fresh_databases(clock()).await {
        db.store
            .sync_councils(Registry::builtin(), &Settings::defaults())
            .await
            .unwrap();
        let wolverhampton = db
            .store
            .council_by_slug(&slug("wolverhampton"))
            .await
            .unwrap();
        let source = db.store.council_sources(wolverhampton.id).await.unwrap()[0].source_id;

        // Two failures, then a success: three polls, two of them failed.
        db.store
            .record_source_failure(source, "connection refused", 10)
            .await
            .unwrap();
        db.store
            .record_source_failure(source, "connection refused", 20)
            .await
            .unwrap();
        let mut tx = db.store.begin_write().await.unwrap();
        council_digest::store::sources::record_source_success(&mut tx, source, 30, Some(40))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let text = council_digest::web::metrics::render_metrics(&db.store)
            .await
            .unwrap();
        let labels = format!("source=\"{source}\",council=\"wolverhampton\",kind=\"moderngov\"");
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&format!("council_digest_source_polls_total{{{labels}}} 3").as_str()),
            "{}: {text}",
            db.label
        );
        assert!(
            lines.contains(
                &format!("council_digest_source_poll_failures_total{{{labels}}} 2").as_str()
            ),
            "{}",
            db.label
        );
        assert!(
            lines.contains(
                &format!("council_digest_source_consecutive_failures{{{labels}}} 0").as_str()
            ),
            "{}",
            db.label
        );
    }
}
