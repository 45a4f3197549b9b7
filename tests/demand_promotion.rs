//! The demand ranking and the promotion run, with hand-computed expectations, on SQLite and
//! (when TEST_DATABASE_URL is set) PostgreSQL.
//!
//! Weights are the defaults unless a test says otherwise: a resident counts 1, a professional 3.

use council_digest::clock::Clock;
use council_digest::domain::{CouncilSlug, SubscriberKind, SupportLevel};
use council_digest::ranking::promotion::{HoldReason, PromotionReport, run_promotion};
use council_digest::ranking::{council_standing, demand_ranking};
use council_digest::registry::Registry;
use council_digest::settings::{CouncilOverride, Settings};
use council_digest::store::Store;
use council_digest::store::testing::{TestDatabase, fresh_databases};
use council_digest::subscriptions::{SubscribeRequest, subscribe, unsubscribe_all};
use sqlx::Row;

const T0: &str = "2026-02-09T07:00:00Z";
const DAY: i64 = 86_400;

fn at(offset_seconds: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(T0).unwrap().to_utc()
        + chrono::Duration::seconds(offset_seconds)
}

fn slug(s: &str) -> CouncilSlug {
    s.parse().unwrap()
}

/// Settings with a small threshold so that hand-made subscribers can reach it.
fn settings(threshold: f64, max_full: u32, max_per_run: u32) -> Settings {
    let mut settings = Settings::defaults();
    settings.promotion.threshold = threshold;
    settings.promotion.max_full_councils = max_full;
    settings.promotion.max_per_run = max_per_run;
    settings
}

async fn databases(clock: &Clock, settings: &Settings) -> Vec<TestDatabase> {
    council_digest::telemetry::init_for_tests();
    let dbs = fresh_databases(clock.clone()).await;
    for db in &dbs {
        db.store
            .sync_councils(Registry::builtin(), settings)
            .await
            .unwrap();
    }
    dbs
}

/// Adds `count` confirmed subscribers of `kind` to a council, confirmed at the clock's time.
async fn add_confirmed(
    store: &Store,
    settings: &Settings,
    council: &str,
    kind: SubscriberKind,
    count: usize,
) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = SubscribeRequest {
            email: format!("person{n}@example.org").parse().unwrap(),
            council: slug(council),
            kind,
            organisation: None,
        };
        match subscribe(store, settings, &request, true).await.unwrap() {
            council_digest::subscriptions::SubscribeOutcome::Confirmed { subscriber_id } => {
                ids.push(subscriber_id)
            }
            other => panic!("expected a confirmed subscription, got {other:?}"),
        }
    }
    ids
}

/// slug, position, residents, professionals, score, needed.
type RankLine<'a> = (&'a str, Option<u32>, i64, i64, f64, u64);

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

fn promoted(report: &PromotionReport) -> Vec<&str> {
    report.promoted.iter().map(|c| c.council.as_str()).collect()
}

fn held(report: &PromotionReport) -> Vec<(&str, HoldReason)> {
    report
        .held_back
        .iter()
        .map(|h| (h.council.as_str(), h.because))
        .collect()
}

async fn support(store: &Store, council: &str) -> SupportLevel {
    store.council_by_slug(&slug(council)).await.unwrap().support
}

/// Queued notices as (kind, dedupe key), by id.
async fn notices(store: &Store) -> Vec<(String, String)> {
    sqlx::query("SELECT kind, dedupe_key FROM deliveries ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("kind"), r.get("dedupe_key")))
        .collect()
}

/// Promotions history as (council slug, direction, score, rank, reason), oldest first.
async fn history(store: &Store) -> Vec<(String, String, f64, Option<i64>, String)> {
    sqlx::query(
        "SELECT c.slug AS slug, p.direction AS direction, p.score AS score, p.rank AS rank, \
         p.reason AS reason FROM promotions p JOIN councils c ON c.id = p.council_id \
         ORDER BY p.id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get("slug"),
            r.get("direction"),
            r.get("score"),
            r.get("rank"),
            r.get("reason"),
        )
    })
    .collect()
}

/// Four councils: leeds 5 residents; bristol 1 professional (3), confirmed last; coventry 3
/// residents, confirmed before bristol; dudley 2 residents.
async fn four_councils(store: &Store, settings: &Settings, clock: &Clock) {
    clock.set(at(0));
    add_confirmed(store, settings, "leeds", SubscriberKind::Resident, 5).await;
    clock.set(at(60));
    add_confirmed(store, settings, "coventry", SubscriberKind::Resident, 3).await;
    clock.set(at(120));
    add_confirmed(store, settings, "bristol", SubscriberKind::Professional, 1).await;
    add_confirmed(store, settings, "dudley", SubscriberKind::Resident, 2).await;
    clock.set(at(3600));
}

#[tokio::test]
async fn ranking_weighs_professionals_and_breaks_ties_by_who_reached_the_score_first() {
    let clock = Clock::fixed(at(0));
    let settings = settings(3.0, 40, 5);
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        four_councils(&db.store, &settings, &clock).await;
        // bristol and coventry tie at 3; coventry's last confirmation (t+60) came before
        // bristol's (t+120), so coventry ranks higher. 382 councils, none full: 382 waiting.
        let ranking = demand_ranking(&db.store, &settings).await.unwrap();
        let top: Vec<RankLine> = ranking
            .iter()
            .take(4)
            .map(|s| {
                (
                    s.council.slug.as_str(),
                    s.position,
                    s.residents,
                    s.professionals,
                    s.score,
                    s.needed,
                )
            })
            .collect();
        assert_eq!(
            top,
            vec![
                ("leeds", Some(1), 5, 0, 5.0, 0),
                ("coventry", Some(2), 3, 0, 3.0, 0),
                ("bristol", Some(3), 0, 1, 3.0, 0),
                ("dudley", Some(4), 2, 0, 2.0, 1),
            ],
            "{}",
            db.label
        );
        assert!(ranking.iter().all(|s| s.waiting == 382), "{}", db.label);
        // After them the councils with no subscribers, by name: "Aberdeen City Council" first.
        assert_eq!(ranking[4].council.slug.as_str(), "aberdeen-city");
        assert_eq!(ranking[4].needed, 3);

        let dudley = db.store.council_by_slug(&slug("dudley")).await.unwrap();
        let standing = council_standing(&db.store, &settings, dudley.id)
            .await
            .unwrap();
        assert_eq!(
            standing.summary(),
            "4th of 382 waiting; 1 more subscriber needed"
        );
    }
}

#[tokio::test]
async fn equal_scores_reached_at_the_same_moment_rank_by_name() {
    let clock = Clock::fixed(at(0));
    let settings = settings(3.0, 40, 5);
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        // Walsall and Sandwell both get 2 residents at the same second: Sandwell's name sorts
        // first. York gets 2 residents a second earlier, so it leads the three.
        clock.set(at(10));
        add_confirmed(&db.store, &settings, "york", SubscriberKind::Resident, 2).await;
        clock.set(at(11));
        add_confirmed(&db.store, &settings, "walsall", SubscriberKind::Resident, 2).await;
        add_confirmed(
            &db.store,
            &settings,
            "sandwell",
            SubscriberKind::Resident,
            2,
        )
        .await;
        let ranking = demand_ranking(&db.store, &settings).await.unwrap();
        let top: Vec<&str> = ranking
            .iter()
            .take(3)
            .map(|s| s.council.slug.as_str())
            .collect();
        assert_eq!(top, vec!["york", "sandwell", "walsall"], "{}", db.label);
    }
}

#[tokio::test]
async fn a_run_promotes_in_rank_order_up_to_the_per_run_cap_and_the_next_run_takes_the_rest() {
    let clock = Clock::fixed(at(0));
    let settings = settings(3.0, 40, 2);
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        four_councils(&db.store, &settings, &clock).await;

        let first = run_promotion(&db.store, &settings, false).await.unwrap();
        assert_eq!(promoted(&first), vec!["leeds", "coventry"], "{}", db.label);
        assert_eq!(held(&first), vec![("bristol", HoldReason::RunLimit)]);
        assert_eq!(first.full_councils, 2);
        // One notice per confirmed subscriber: 5 for leeds, 3 for coventry.
        assert_eq!(first.notices_queued, 8, "{}", db.label);
        assert_eq!(
            history(&db.store).await,
            vec![
                (
                    "leeds".into(),
                    "promote".into(),
                    5.0,
                    Some(1),
                    "threshold".into()
                ),
                (
                    "coventry".into(),
                    "promote".into(),
                    3.0,
                    Some(2),
                    "threshold".into()
                ),
            ],
            "{}",
            db.label
        );
        let queued = notices(&db.store).await;
        assert_eq!(queued.len(), 8);
        assert!(
            queued
                .iter()
                .all(|(kind, key)| kind == "promoted" && key.starts_with("notice:promoted:"))
        );

        // Next run: bristol, now 1st among the limited councils.
        let second = run_promotion(&db.store, &settings, false).await.unwrap();
        assert_eq!(promoted(&second), vec!["bristol"], "{}", db.label);
        assert_eq!(second.promoted[0].rank, Some(1));
        assert_eq!(second.notices_queued, 1);

        // A third run has nothing left to do and queues nothing.
        let third = run_promotion(&db.store, &settings, false).await.unwrap();
        assert!(
            third.promoted.is_empty() && third.held_back.is_empty(),
            "{}",
            db.label
        );
        assert_eq!(notices(&db.store).await.len(), 9, "{}", db.label);
        assert_eq!(support(&db.store, "dudley").await, SupportLevel::Limited);
    }
}

#[tokio::test]
async fn capacity_counts_councils_named_full_in_the_settings() {
    let clock = Clock::fixed(at(0));
    let mut settings = settings(3.0, 2, 5);
    settings.councils.insert(
        "york".into(),
        CouncilOverride {
            support: Some(SupportLevel::Full),
            ..CouncilOverride::default()
        },
    );
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        four_councils(&db.store, &settings, &clock).await;
        // York is full already; room for one more: leeds. coventry and bristol wait.
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert_eq!(promoted(&report), vec!["leeds"], "{}", db.label);
        assert_eq!(
            held(&report),
            vec![
                ("coventry", HoldReason::Capacity),
                ("bristol", HoldReason::Capacity)
            ],
            "{}",
            db.label
        );
        assert_eq!((report.full_councils, report.max_full_councils), (2, 2));
        assert_eq!(support(&db.store, "coventry").await, SupportLevel::Limited);
    }
}

#[tokio::test]
async fn a_capacity_below_the_councils_already_full_promotes_nothing_and_demotes_nothing() {
    let clock = Clock::fixed(at(0));
    let settings = settings(3.0, 1, 5);
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        for council in ["york", "walsall"] {
            db.store
                .set_council_support(&slug(council), SupportLevel::Full, "operator")
                .await
                .unwrap();
        }
        four_councils(&db.store, &settings, &clock).await;
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert!(report.promoted.is_empty() && report.demoted.is_empty());
        assert_eq!(report.held_back.len(), 3, "{}", db.label);
        assert_eq!((report.full_councils, report.max_full_councils), (2, 1));
        assert_eq!(support(&db.store, "york").await, SupportLevel::Full);
        assert_eq!(support(&db.store, "leeds").await, SupportLevel::Limited);
    }
}

#[tokio::test]
async fn a_raised_or_lowered_threshold_applies_at_the_next_run() {
    let clock = Clock::fixed(at(0));
    let strict = settings(6.0, 40, 5);
    for db in databases(&clock, &strict).await {
        clock.set(at(0));
        four_councils(&db.store, &strict, &clock).await;
        // Nobody reaches 6 (leeds has 5).
        let report = run_promotion(&db.store, &strict, false).await.unwrap();
        assert!(report.promoted.is_empty(), "{}", db.label);
        let leeds = demand_ranking(&db.store, &strict).await.unwrap();
        assert_eq!(leeds[0].needed, 1);

        // The operator lowers it to 3: coventry, bristol and leeds go at the next run.
        let relaxed = settings(3.0, 40, 5);
        let report = run_promotion(&db.store, &relaxed, false).await.unwrap();
        assert_eq!(
            promoted(&report),
            vec!["leeds", "coventry", "bristol"],
            "{}",
            db.label
        );
        // Raising it again later demotes nobody: nothing decided is revisited.
        let report = run_promotion(&db.store, &strict, false).await.unwrap();
        assert!(report.promoted.is_empty() && report.demoted.is_empty());
        assert_eq!(support(&db.store, "coventry").await, SupportLevel::Full);
    }
}

#[tokio::test]
async fn a_dry_run_reports_the_promotions_and_changes_nothing() {
    let clock = Clock::fixed(at(0));
    let settings = settings(3.0, 40, 5);
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        four_councils(&db.store, &settings, &clock).await;
        let dry = run_promotion(&db.store, &settings, true).await.unwrap();
        assert!(dry.dry_run);
        assert_eq!(promoted(&dry), vec!["leeds", "coventry", "bristol"]);
        assert!(dry.promoted.iter().all(|c| c.promotion_id.is_none()));
        assert_eq!(dry.notices_queued, 9);
        assert_eq!(support(&db.store, "leeds").await, SupportLevel::Limited);
        assert!(history(&db.store).await.is_empty(), "{}", db.label);
        assert!(notices(&db.store).await.is_empty(), "{}", db.label);
    }
}

#[tokio::test]
async fn notices_go_to_confirmed_subscribers_only_and_never_twice() {
    let clock = Clock::fixed(at(0));
    let settings = settings(2.0, 40, 5);
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        let ids = add_confirmed(&db.store, &settings, "leeds", SubscriberKind::Resident, 3).await;
        // A pending subscriber of leeds and an unsubscribed one get nothing.
        let pending = SubscribeRequest {
            email: "pending.person@example.org".parse().unwrap(),
            council: slug("leeds"),
            kind: SubscriberKind::Resident,
            organisation: None,
        };
        subscribe(&db.store, &settings, &pending, false)
            .await
            .unwrap();
        unsubscribe_all(&db.store, ids[2]).await.unwrap();

        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        let promotion_id = report.promoted[0].promotion_id.unwrap();
        let expected: Vec<(String, String)> = ids[..2]
            .iter()
            .map(|id| {
                (
                    "promoted".to_owned(),
                    format!("notice:promoted:{promotion_id}:{id}"),
                )
            })
            .collect();
        assert_eq!(notices(&db.store).await, expected, "{}", db.label);
        let payload: String = sqlx::query("SELECT payload FROM deliveries ORDER BY id")
            .fetch_one(db.store.pool())
            .await
            .unwrap()
            .get("payload");
        let leeds = db.store.council_by_slug(&slug("leeds")).await.unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&payload).unwrap(),
            serde_json::json!({"council_id": leeds.id})
        );

        run_promotion(&db.store, &settings, false).await.unwrap();
        assert_eq!(notices(&db.store).await, expected, "{}", db.label);
    }
}

#[tokio::test]
async fn without_a_demotion_floor_a_council_whose_demand_left_stays_full() {
    let clock = Clock::fixed(at(0));
    let settings = settings(2.0, 40, 5);
    assert_eq!(settings.promotion.demotion_floor(), None);
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        let ids = add_confirmed(&db.store, &settings, "leeds", SubscriberKind::Resident, 2).await;
        run_promotion(&db.store, &settings, false).await.unwrap();
        for id in ids {
            unsubscribe_all(&db.store, id).await.unwrap();
        }
        clock.set(at(365 * DAY));
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert!(report.demoted.is_empty() && report.demotion_pending.is_empty());
        assert_eq!(
            support(&db.store, "leeds").await,
            SupportLevel::Full,
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn with_a_demotion_floor_a_council_below_it_for_the_whole_period_returns_to_limited() {
    let clock = Clock::fixed(at(0));
    let mut settings = settings(3.0, 40, 5);
    settings.promotion.demote_below = 2.0;
    settings.promotion.demote_after_days = 28;
    settings.councils.insert(
        "york".into(),
        CouncilOverride {
            support: Some(SupportLevel::Full),
            ..CouncilOverride::default()
        },
    );
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        let leeds = add_confirmed(&db.store, &settings, "leeds", SubscriberKind::Resident, 3).await;
        let first = run_promotion(&db.store, &settings, false).await.unwrap();
        assert_eq!(promoted(&first), vec!["leeds"]);

        // Day 1: two of three leave; score 1 < 2 starts the clock. York (pinned, score 0) is
        // never a candidate.
        clock.set(at(DAY));
        unsubscribe_all(&db.store, leeds[0]).await.unwrap();
        unsubscribe_all(&db.store, leeds[1]).await.unwrap();
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert!(report.demoted.is_empty());
        assert_eq!(report.demotion_pending.len(), 1, "{}", db.label);
        assert_eq!(report.demotion_pending[0].council.as_str(), "leeds");
        assert_eq!(
            report.demotion_pending[0].demote_at,
            at(29 * DAY).timestamp()
        );

        // Day 28 (27 days below): still full.
        clock.set(at(28 * DAY));
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert!(report.demoted.is_empty(), "{}", db.label);

        // Day 29: 28 days below, demoted; its one remaining subscriber is told.
        clock.set(at(29 * DAY));
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        let demoted: Vec<&str> = report.demoted.iter().map(|c| c.council.as_str()).collect();
        assert_eq!(demoted, vec!["leeds"], "{}", db.label);
        let demotion_id = report.demoted[0].promotion_id.unwrap();
        assert_eq!(support(&db.store, "leeds").await, SupportLevel::Limited);
        assert_eq!(support(&db.store, "york").await, SupportLevel::Full);
        let queued = notices(&db.store).await;
        assert_eq!(
            queued.last().unwrap(),
            &(
                "demoted".to_owned(),
                format!("notice:demoted:{demotion_id}:{}", leeds[2])
            )
        );
        assert_eq!(
            history(&db.store).await.last().unwrap(),
            &(
                "leeds".into(),
                "demote".into(),
                1.0,
                None,
                "threshold".into()
            )
        );
    }
}

#[tokio::test]
async fn demand_recovering_before_the_period_ends_stops_the_demotion_clock() {
    let clock = Clock::fixed(at(0));
    let mut settings = settings(2.0, 40, 5);
    settings.promotion.demote_below = 2.0;
    settings.promotion.demote_after_days = 28;
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        let leeds = add_confirmed(&db.store, &settings, "leeds", SubscriberKind::Resident, 2).await;
        run_promotion(&db.store, &settings, false).await.unwrap();
        clock.set(at(DAY));
        unsubscribe_all(&db.store, leeds[0]).await.unwrap();
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert_eq!(report.demotion_pending.len(), 1);

        // Day 10: back to 2; the clock stops. Day 20: below again; it starts afresh.
        clock.set(at(10 * DAY));
        add_confirmed(&db.store, &settings, "leeds", SubscriberKind::Resident, 1).await;
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert!(report.demotion_pending.is_empty(), "{}", db.label);
        clock.set(at(20 * DAY));
        unsubscribe_all(&db.store, leeds[1]).await.unwrap();
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert_eq!(
            report.demotion_pending[0].below_since,
            at(20 * DAY).timestamp()
        );
        clock.set(at(40 * DAY));
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert!(report.demoted.is_empty(), "{}", db.label);
        assert_eq!(support(&db.store, "leeds").await, SupportLevel::Full);
    }
}

#[test]
fn invalid_weights_thresholds_and_capacities_are_refused_by_name() {
    let mut bad = Settings::defaults();
    bad.ranking.professional_weight = -3.0;
    bad.promotion.threshold = 0.0;
    let err = bad.validate().unwrap_err();
    assert!(
        err.problems
            .iter()
            .any(|p| p.starts_with("ranking.professional_weight")),
        "{err}"
    );
    assert!(
        err.problems
            .iter()
            .any(|p| p.starts_with("promotion.threshold")),
        "{err}"
    );

    let mut weightless = Settings::defaults();
    weightless.ranking.resident_weight = 0.0;
    weightless.ranking.professional_weight = 0.0;
    let err = weightless.validate().unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert!(
        err.problems[0].contains("at least one must be above zero"),
        "{err}"
    );

    let mut pinned = Settings::defaults();
    pinned.promotion.max_full_councils = 0;
    pinned.councils.insert(
        "york".into(),
        CouncilOverride {
            support: Some(SupportLevel::Full),
            ..CouncilOverride::default()
        },
    );
    let err = pinned.validate().unwrap_err();
    assert!(
        err.to_string().contains("promotion.max_full_councils"),
        "{err}"
    );
}

#[tokio::test]
async fn two_promotion_runs_at_once_on_postgresql_promote_each_council_once() {
    let clock = Clock::fixed(at(0));
    // Room for two: the second run must see the first's promotions to stop at capacity.
    let settings = settings(3.0, 2, 5);
    let mut ran = false;
    for db in databases(&clock, &settings).await {
        clock.set(at(0));
        if db.label != "postgres" {
            continue;
        }
        ran = true;
        four_councils(&db.store, &settings, &clock).await;
        let other = Store::connect(&db.url, 4, clock.clone()).await.unwrap();
        let (a, b) = tokio::join!(
            tokio::spawn({
                let store = db.store.clone();
                let settings = settings.clone();
                async move { run_promotion(&store, &settings, false).await }
            }),
            tokio::spawn({
                let settings = settings.clone();
                async move { run_promotion(&other, &settings, false).await }
            }),
        );
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        let mut all: Vec<&str> = promoted(&a).into_iter().chain(promoted(&b)).collect();
        all.sort();
        assert_eq!(all, vec!["coventry", "leeds"]);
        assert!(a.promoted.is_empty() || b.promoted.is_empty());
        assert_eq!(history(&db.store).await.len(), 2);
        assert_eq!(support(&db.store, "bristol").await, SupportLevel::Limited);
        // 5 + 3 confirmed subscribers, each told once.
        assert_eq!(notices(&db.store).await.len(), 8);
    }
    if !ran {
        eprintln!("skipped: TEST_DATABASE_URL is not set, so there is no PostgreSQL to race on");
    }
}
