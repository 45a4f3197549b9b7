//! Digest runs on a real database: who gets a digest, that a week is recorded and queued once,
//! dry runs, one subscriber at a time, paging, and the web view of a recorded digest.

#[path = "digest_common.rs"]
mod common;

use common::*;
use council_digest::clock::Clock;
use council_digest::digest::{BuildMode, BuildReport, DigestError, build_week};
use council_digest::domain::EmailAddress;
use council_digest::settings::Settings;
use council_digest::store::Store;
use council_digest::tokens::LinkPurpose;

fn clock() -> Clock {
    Clock::fixed(at("2026-02-09T07:00:00Z"))
}

async fn run(
    store: &Store,
    settings: &Settings,
    only: Option<&EmailAddress>,
    mode: BuildMode,
) -> Result<BuildReport, DigestError> {
    let ctx = mail_context(settings, store.clock());
    build_week(
        store,
        settings,
        &renderer(),
        &ctx,
        "2026-W07".parse().unwrap(),
        only,
        mode,
    )
    .await
}

/// A full council with one meeting on Tuesday 10 February and a limited council.
async fn two_councils(store: &Store) -> (i64, i64) {
    let (full, source) = add_council(store, "bury", "Bury Council", "full").await;
    let (limited, _) = add_council(store, "rutland", "Rutland County Council", "limited").await;
    put_meeting(
        store,
        full,
        source,
        &meeting("m1", "Cabinet", date(2026, 2, 10), Some(time(18, 0))),
    )
    .await;
    (full, limited)
}

#[tokio::test]
async fn building_the_same_week_twice_records_and_queues_each_digest_once() {
    council_digest::telemetry::init_for_tests();
    for db in council_digest::store::testing::fresh_databases(clock()).await {
        let store = &db.store;
        let (full, limited) = two_councils(store).await;
        let a = add_subscriber(store, "a@example.org", "resident", &[full]).await;
        let b = add_subscriber(store, "b@example.org", "professional", &[full, limited]).await;
        let settings = settings();

        let first = run(store, &settings, None, BuildMode::Queue).await.unwrap();
        assert_eq!(
            (
                first.subscribers,
                first.built,
                first.queued,
                first.already_built
            ),
            (2, 2, 2, 0),
            "{}",
            db.label
        );
        let second = run(store, &settings, None, BuildMode::Queue).await.unwrap();
        assert_eq!(
            (
                second.subscribers,
                second.built,
                second.queued,
                second.already_built
            ),
            (2, 0, 0, 2),
            "{}",
            db.label
        );

        assert_eq!(count(store, "SELECT COUNT(*) FROM digests").await, 2);
        assert_eq!(count(store, "SELECT COUNT(*) FROM deliveries").await, 2);
        for subscriber in [a, b] {
            let key = format!("digest:{subscriber}:2026-W07");
            let n = count(
                store,
                &format!(
                    "SELECT COUNT(*) FROM deliveries d JOIN digests g ON g.id = d.digest_id \
                     WHERE d.dedupe_key = '{key}' AND d.kind = 'digest' AND d.state = 'queued' \
                     AND g.subscriber_id = {subscriber} AND g.week = '2026-W07'"
                ),
            )
            .await;
            assert_eq!(n, 1, "{}: {key}", db.label);
        }
    }
}

#[tokio::test]
async fn subscribers_with_only_limited_councils_get_no_digest_unless_the_settings_say_so() {
    for db in council_digest::store::testing::fresh_databases(clock()).await {
        let store = &db.store;
        let (_, limited) = two_councils(store).await;
        add_subscriber(store, "waiting@example.org", "resident", &[limited]).await;
        let mut settings = settings();

        let report = run(store, &settings, None, BuildMode::Queue).await.unwrap();
        assert_eq!((report.built, report.all_limited), (0, 1), "{}", db.label);
        assert_eq!(count(store, "SELECT COUNT(*) FROM deliveries").await, 0);

        settings.digest.send_when_all_limited = true;
        let report = run(store, &settings, None, BuildMode::Queue).await.unwrap();
        assert_eq!((report.built, report.all_limited), (1, 0), "{}", db.label);
        let digest: i64 = sqlx::query_scalar("SELECT id FROM digests")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let contents = council_digest::digest::stored_contents(store, digest)
            .await
            .unwrap();
        assert!(contents.councils.is_empty());
        assert_eq!(contents.limited.len(), 1);
        assert_eq!(contents.limited[0].name, "Rutland County Council");
        // Only Rutland is limited, and 25 points at 1 per resident less the 1 it has is 24.
        assert_eq!(
            (contents.limited[0].position, contents.limited[0].waiting),
            (Some(1), 1)
        );
        assert_eq!(contents.limited[0].needed, 24);

        let delivery: i64 = sqlx::query_scalar("SELECT id FROM deliveries")
            .fetch_one(store.pool())
            .await
            .unwrap();
        let ctx = mail_context(&settings, store.clock());
        let rendered = council_digest::mail::message::render_delivery(
            store,
            &settings,
            &renderer(),
            &ctx,
            delivery,
        )
        .await
        .unwrap();
        let eml = rendered.message.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&eml).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Rutland County Council: support status, week of 9 February 2026 (2026-W07)")
        );
        let text = parsed.body_text(0).unwrap();
        assert!(
            text.contains("It is 1st of 1 waiting. It needs 24 more subscribers"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn suppressed_pending_and_unsubscribed_subscribers_get_no_digest() {
    let db = council_digest::store::testing::fresh_sqlite(clock()).await;
    let store = &db.store;
    let (full, _) = two_councils(store).await;
    let kept = add_subscriber(store, "kept@example.org", "resident", &[full]).await;
    let suppressed = add_subscriber(store, "bounced@example.org", "resident", &[full]).await;
    sqlx::query("UPDATE subscribers SET suppressed_at = 1 WHERE id = $1")
        .bind(suppressed)
        .execute(store.pool())
        .await
        .unwrap();
    for state in ["pending", "unsubscribed"] {
        let id = add_subscriber(store, &format!("{state}@example.org"), "resident", &[full]).await;
        sqlx::query("UPDATE subscriptions SET state = $1 WHERE subscriber_id = $2")
            .bind(state)
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
    }

    let report = run(store, &settings(), None, BuildMode::Queue)
        .await
        .unwrap();
    assert_eq!((report.subscribers, report.built), (1, 1));
    let who: i64 = sqlx::query_scalar("SELECT subscriber_id FROM digests")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(who, kept);
}

#[tokio::test]
async fn a_dry_run_writes_one_eml_per_digest_and_records_nothing() {
    let db = council_digest::store::testing::fresh_sqlite(clock()).await;
    let store = &db.store;
    let (full, _) = two_councils(store).await;
    let a = add_subscriber(store, "a@example.org", "resident", &[full]).await;
    let b = add_subscriber(store, "b@example.org", "resident", &[full]).await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("eml");

    let report = run(
        store,
        &settings(),
        None,
        BuildMode::DryRun {
            out: Some(dir.clone()),
        },
    )
    .await
    .unwrap();
    assert_eq!((report.built, report.queued), (2, 0));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("digest-2026-W07-subscriber-{a}.eml"),
            format!("digest-2026-W07-subscriber-{b}.eml"),
        ]
    );
    let eml = std::fs::read(dir.join(&names[0])).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&eml).unwrap();
    assert_eq!(
        parsed.subject(),
        Some("Bury Council: 1 meeting, week of 9 February 2026 (2026-W07)")
    );
    assert_eq!(
        parsed.to().unwrap().first().unwrap().address(),
        Some("a@example.org")
    );
    assert!(parsed.body_text(0).unwrap().contains("* 6.00 pm  Cabinet"));
    assert_eq!(count(store, "SELECT COUNT(*) FROM digests").await, 0);
    assert_eq!(count(store, "SELECT COUNT(*) FROM deliveries").await, 0);

    let printed = run(store, &settings(), None, BuildMode::DryRun { out: None })
        .await
        .unwrap();
    let preview = printed.preview.unwrap();
    assert!(preview.contains("To: a@example.org\r\n"), "{preview}");
    assert_eq!(count(store, "SELECT COUNT(*) FROM digests").await, 0);
}

#[tokio::test]
async fn one_subscriber_can_be_built_alone_and_an_unknown_address_is_an_error() {
    let db = council_digest::store::testing::fresh_sqlite(clock()).await;
    let store = &db.store;
    let (full, _) = two_councils(store).await;
    add_subscriber(store, "a@example.org", "resident", &[full]).await;
    let b = add_subscriber(store, "b@example.org", "resident", &[full]).await;

    let only: EmailAddress = "b@example.org".parse().unwrap();
    let report = run(store, &settings(), Some(&only), BuildMode::Queue)
        .await
        .unwrap();
    assert_eq!((report.subscribers, report.built), (1, 1));
    let who: i64 = sqlx::query_scalar("SELECT subscriber_id FROM digests")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(who, b);

    let nobody: EmailAddress = "nobody@example.org".parse().unwrap();
    let err = run(store, &settings(), Some(&nobody), BuildMode::Queue)
        .await
        .unwrap_err();
    assert!(matches!(err, DigestError::NoSuchSubscriber), "{err}");
}

#[tokio::test]
async fn each_council_is_read_once_per_run_and_subscribers_are_read_page_by_page() {
    let db = council_digest::store::testing::fresh_sqlite(clock()).await;
    let store = &db.store;
    let (bury, _) = two_councils(store).await;
    let (leeds, leeds_src) = add_council(store, "leeds", "Leeds City Council", "full").await;
    put_meeting(
        store,
        leeds,
        leeds_src,
        &meeting(
            "m2",
            "Executive Board",
            date(2026, 2, 11),
            Some(time(13, 0)),
        ),
    )
    .await;
    // 1,100 subscribers: more than two pages of 500.
    let mut tx = store.begin_write().await.unwrap();
    for n in 0..1100 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO subscribers (email, kind, created_at) VALUES ($1, 'resident', 0) \
             RETURNING id",
        )
        .bind(format!("r{n}@example.org"))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        let follows: &[i64] = if n % 2 == 0 { &[bury, leeds] } else { &[leeds] };
        for council in follows {
            sqlx::query(
                "INSERT INTO subscriptions (subscriber_id, council_id, state, created_at, \
                 confirmed_at) VALUES ($1, $2, 'confirmed', 0, 0)",
            )
            .bind(id)
            .bind(council)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();

    let report = run(store, &settings(), None, BuildMode::Queue)
        .await
        .unwrap();
    assert_eq!(
        (
            report.subscribers,
            report.built,
            report.queued,
            report.failed
        ),
        (1100, 1100, 1100, 0)
    );
    assert_eq!(report.councils_loaded, 2);
    // Each council's part is stored once for all its subscribers.
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM digest_sections").await,
        2
    );
    // Every even subscriber follows both councils: two sections in their record.
    let both = count(
        store,
        "SELECT COUNT(*) FROM digests WHERE contents LIKE '%\"section_id\":%\"section_id\":%'",
    )
    .await;
    assert_eq!(both, 550);
    let first: i64 = sqlx::query_scalar("SELECT MIN(id) FROM digests")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let names: Vec<String> = council_digest::digest::stored_contents(store, first)
        .await
        .unwrap()
        .councils
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["Bury Council", "Leeds City Council"]);
}

#[tokio::test]
async fn a_stored_address_that_does_not_parse_is_skipped_and_the_others_are_built() {
    let db = council_digest::store::testing::fresh_sqlite(clock()).await;
    let store = &db.store;
    let (full, _) = two_councils(store).await;
    add_subscriber(store, "not an address", "resident", &[full]).await;
    add_subscriber(store, "fine@example.org", "resident", &[full]).await;
    let report = run(store, &settings(), None, BuildMode::Queue)
        .await
        .unwrap();
    assert_eq!((report.built, report.failed), (1, 0));
}

#[tokio::test]
async fn the_web_view_of_a_digest_has_its_links_but_none_to_itself() {
    let db = council_digest::store::testing::fresh_sqlite(clock()).await;
    let store = &db.store;
    let (full, _) = two_councils(store).await;
    let a = add_subscriber(store, "a@example.org", "resident", &[full]).await;
    let settings = settings();
    run(store, &settings, None, BuildMode::Queue).await.unwrap();
    let digest_id: i64 = sqlx::query_scalar("SELECT id FROM digests")
        .fetch_one(store.pool())
        .await
        .unwrap();

    let ctx = mail_context(&settings, store.clock());
    let html = council_digest::digest::render_digest_html_for_web(
        store,
        &settings,
        &renderer(),
        &ctx,
        digest_id,
    )
    .await
    .unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("<p style=\"margin:0;font-weight:bold;\">Cabinet</p>"),
        "{html}"
    );
    let unsubscribe = signing_key().sign(LinkPurpose::Unsubscribe, &a.to_string());
    assert!(
        html.contains(&format!("{BASE_URL}/unsubscribe/{unsubscribe}")),
        "{html}"
    );
    assert!(!html.contains("View this digest in a browser"), "{html}");
    assert!(!html.contains("/digests/"), "{html}");

    let missing = council_digest::digest::render_digest_html_for_web(
        store,
        &settings,
        &renderer(),
        &ctx,
        digest_id + 100,
    )
    .await
    .unwrap_err();
    assert!(matches!(
        missing,
        council_digest::mail::MailError::NotFound(_)
    ));
}

#[tokio::test]
async fn a_council_promoted_since_the_last_digest_lists_no_changes_and_the_others_do() {
    let clock = Clock::fixed(at("2026-01-26T12:00:00Z"));
    let db = council_digest::store::testing::fresh_sqlite(clock.clone()).await;
    let store = &db.store;
    let (promoted, p_src) = add_council(store, "bury", "Bury Council", "full").await;
    let (steady, s_src) = add_council(store, "leeds", "Leeds City Council", "full").await;
    add_subscriber(store, "a@example.org", "resident", &[promoted, steady]).await;
    let settings = settings();
    let ctx = mail_context(&settings, &clock);
    let build = |week: &'static str| {
        let (settings, ctx) = (&settings, &ctx);
        async move {
            build_week(
                store,
                settings,
                &renderer(),
                ctx,
                week.parse().unwrap(),
                None,
                BuildMode::Queue,
            )
            .await
            .unwrap()
        }
    };
    let first = meeting("b1", "Cabinet", date(2026, 2, 10), Some(time(18, 0)));
    let second = meeting(
        "l1",
        "Executive Board",
        date(2026, 2, 11),
        Some(time(13, 0)),
    );
    put_meeting(store, promoted, p_src, &first).await;
    put_meeting(store, steady, s_src, &second).await;

    clock.set(at("2026-02-02T07:00:00Z"));
    build("2026-W06").await;

    clock.set(at("2026-02-04T12:00:00Z"));
    sqlx::query("UPDATE councils SET support_changed_at = $1 WHERE id = $2")
        .bind(clock.now_ts())
        .bind(promoted)
        .execute(store.pool())
        .await
        .unwrap();
    for (council, source, mut changed) in [(promoted, p_src, first), (steady, s_src, second)] {
        changed.location = Some("Civic Centre".to_owned());
        put_meeting(store, council, source, &changed).await;
    }

    clock.set(at("2026-02-09T07:00:00Z"));
    build("2026-W07").await;
    let digest: i64 = sqlx::query_scalar("SELECT id FROM digests WHERE week = '2026-W07'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let contents = council_digest::digest::stored_contents(store, digest)
        .await
        .unwrap();
    let changes: Vec<(&str, usize)> = contents
        .councils
        .iter()
        .map(|c| (c.name.as_str(), c.changes.len()))
        .collect();
    assert_eq!(changes, [("Bury Council", 0), ("Leeds City Council", 1)]);
    assert_eq!(
        contents.councils[1].changes[0].change,
        council_digest::digest::contents::Change::Location {
            from: Some("Guildhall, High Street".to_owned())
        }
    );
}

#[tokio::test]
async fn a_meeting_published_in_another_zone_keeps_its_own_local_day_and_time() {
    let db = council_digest::store::testing::fresh_sqlite(clock()).await;
    let store = &db.store;
    let (council, source) = add_council(store, "bury", "Bury Council", "full").await;
    add_subscriber(store, "a@example.org", "resident", &[council]).await;
    // 7.30 pm in Chicago on Saturday 14 February is 01:30 UTC on Sunday 15 February: it is in
    // the window by its instant, and listed on its own day at its own time, as its title says.
    let mut late = meeting("x2", "Board Meeting", date(2026, 2, 14), Some(time(19, 30)));
    late.timezone = "America/Chicago".to_owned();
    late.starts_at = at("2026-02-15T01:30:00Z");
    put_meeting(store, council, source, &late).await;

    run(store, &settings(), None, BuildMode::Queue)
        .await
        .unwrap();
    let digest: i64 = sqlx::query_scalar("SELECT id FROM digests")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let contents = council_digest::digest::stored_contents(store, digest)
        .await
        .unwrap();
    let shown: Vec<(chrono::NaiveDate, Option<chrono::NaiveTime>)> = contents.councils[0]
        .meetings
        .iter()
        .map(|m| (m.local_date, m.local_time))
        .collect();
    assert_eq!(shown, [(date(2026, 2, 14), Some(time(19, 30)))]);
}
