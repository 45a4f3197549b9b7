//! Enablement requests: recording, review, automatic approval, and promotion regardless of
//! score, on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.

use council_digest::clock::Clock;
use council_digest::domain::{CouncilSlug, RequestState, SubscriberKind, SupportLevel};
use council_digest::ranking::RankingError;
use council_digest::ranking::promotion::{HoldReason, RequestPromotion, run_promotion};
use council_digest::ranking::requests::{
    NewRequest, approve_request, create_request, list_requests, reject_request, request,
};
use council_digest::registry::Registry;
use council_digest::settings::Settings;
use council_digest::store::Store;
use council_digest::store::testing::{TestDatabase, fresh_databases};
use council_digest::subscriptions::{SubscribeRequest, subscribe};
use sqlx::Row;

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

fn settings(threshold: f64, max_full: u32) -> Settings {
    let mut settings = Settings::defaults();
    settings.promotion.threshold = threshold;
    settings.promotion.max_full_councils = max_full;
    settings
}

async fn databases(settings: &Settings) -> Vec<TestDatabase> {
    council_digest::telemetry::init_for_tests();
    let dbs = fresh_databases(clock()).await;
    for db in &dbs {
        db.store
            .sync_councils(Registry::builtin(), settings)
            .await
            .unwrap();
    }
    dbs
}

fn new_request(council: &str, email: &str) -> NewRequest {
    NewRequest {
        council: slug(council),
        name: "  Sam Planner ".into(),
        organisation: Some("Planning Partners Ltd".into()),
        email: email.parse().unwrap(),
        message: "We follow planning in this borough and would use the full digest.".into(),
        represents_council: false,
    }
}

async fn subscribe_as(
    store: &Store,
    settings: &Settings,
    email: &str,
    council: &str,
    kind: SubscriberKind,
    confirmed: bool,
) {
    let request = SubscribeRequest {
        email: email.parse().unwrap(),
        council: slug(council),
        kind,
        organisation: None,
    };
    subscribe(store, settings, &request, confirmed)
        .await
        .unwrap();
}

async fn support(store: &Store, council: &str) -> SupportLevel {
    store.council_by_slug(&slug(council)).await.unwrap().support
}

#[tokio::test]
async fn a_request_is_recorded_pending_and_an_approval_promotes_regardless_of_score() {
    let settings = settings(25.0, 40);
    for db in databases(&settings).await {
        // One resident follows walsall: score 1, far below 25.
        subscribe_as(
            &db.store,
            &settings,
            "r@example.org",
            "walsall",
            SubscriberKind::Resident,
            true,
        )
        .await;
        let outcome = create_request(
            &db.store,
            &settings,
            &new_request("walsall", "Sam@Example.ORG"),
        )
        .await
        .unwrap();
        assert!(!outcome.approved, "{}", db.label);
        let stored = request(&db.store, outcome.id).await.unwrap();
        assert_eq!(stored.state, RequestState::Pending);
        assert_eq!(stored.name.as_deref(), Some("Sam Planner"));
        assert_eq!(stored.email.as_deref(), Some("Sam@example.org"));
        assert_eq!(stored.council_slug, "walsall");
        assert_eq!(support(&db.store, "walsall").await, SupportLevel::Limited);

        let promotion = approve_request(&db.store, &settings, outcome.id)
            .await
            .unwrap();
        let RequestPromotion::Promoted(change) = promotion else {
            panic!("expected a promotion, got {promotion:?}");
        };
        assert_eq!(
            (change.council.as_str(), change.score, change.notices),
            ("walsall", 1.0, 1)
        );
        assert_eq!(support(&db.store, "walsall").await, SupportLevel::Full);
        let row = sqlx::query("SELECT reason, request_id, score FROM promotions")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("reason"), "request", "{}", db.label);
        assert_eq!(row.get::<Option<i64>, _>("request_id"), Some(outcome.id));

        // Deciding twice is refused; the promotion run has nothing left to do for it.
        let again = approve_request(&db.store, &settings, outcome.id).await;
        assert!(matches!(again, Err(RankingError::AlreadyDecided { .. })));
        let report = run_promotion(&db.store, &settings, false).await.unwrap();
        assert!(report.promoted.is_empty(), "{}", db.label);
    }
}

#[tokio::test]
async fn a_rejection_needs_a_reason_and_keeps_it() {
    let settings = settings(25.0, 40);
    for db in databases(&settings).await {
        let outcome = create_request(
            &db.store,
            &settings,
            &new_request("dudley", "a@example.org"),
        )
        .await
        .unwrap();
        let empty = reject_request(&db.store, outcome.id, "   ").await;
        assert_eq!(empty.unwrap_err().to_string(), "the reason is required");
        reject_request(&db.store, outcome.id, "No committee data published online")
            .await
            .unwrap();
        let stored = request(&db.store, outcome.id).await.unwrap();
        assert_eq!(stored.state, RequestState::Rejected, "{}", db.label);
        assert_eq!(
            stored.reason.as_deref(),
            Some("No committee data published online")
        );
        assert!(stored.decided_at.is_some());
        assert_eq!(support(&db.store, "dudley").await, SupportLevel::Limited);
        let missing = approve_request(&db.store, &settings, 9999).await;
        assert_eq!(
            missing.unwrap_err().to_string(),
            "there is no enablement request 9999"
        );
        let rejected = list_requests(&db.store, Some(RequestState::Rejected))
            .await
            .unwrap();
        assert_eq!(rejected.len(), 1);
        assert!(
            list_requests(&db.store, Some(RequestState::Pending))
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn bad_requests_are_refused_and_leave_nothing_behind() {
    let settings = settings(25.0, 40);
    for db in databases(&settings).await {
        let unknown = create_request(
            &db.store,
            &settings,
            &new_request("atlantis", "a@example.org"),
        )
        .await;
        assert_eq!(
            unknown.unwrap_err().to_string(),
            "there is no council `atlantis`"
        );
        let mut long = new_request("dudley", "a@example.org");
        long.message = "x".repeat(2001);
        let err = create_request(&db.store, &settings, &long)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the message is too long (at most 2000 characters)"
        );
        let mut nameless = new_request("dudley", "a@example.org");
        nameless.name = " ".into();
        let err = create_request(&db.store, &settings, &nameless)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "the name is required");
        assert!(list_requests(&db.store, None).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn auto_approval_applies_to_confirmed_professionals_only() {
    let mut settings = settings(25.0, 40);
    settings.promotion.auto_approve_requests = true;
    for db in databases(&settings).await {
        subscribe_as(
            &db.store,
            &settings,
            "pro@example.org",
            "leeds",
            SubscriberKind::Professional,
            true,
        )
        .await;
        subscribe_as(
            &db.store,
            &settings,
            "unconfirmed.pro@example.org",
            "leeds",
            SubscriberKind::Professional,
            false,
        )
        .await;
        subscribe_as(
            &db.store,
            &settings,
            "resident@example.org",
            "leeds",
            SubscriberKind::Resident,
            true,
        )
        .await;

        let pro = create_request(
            &db.store,
            &settings,
            &new_request("coventry", "pro@example.org"),
        )
        .await
        .unwrap();
        assert!(pro.approved, "{}", db.label);
        assert!(matches!(pro.promotion, Some(RequestPromotion::Promoted(_))));
        assert_eq!(support(&db.store, "coventry").await, SupportLevel::Full);

        for email in [
            "unconfirmed.pro@example.org",
            "resident@example.org",
            "stranger@example.org",
        ] {
            let outcome = create_request(&db.store, &settings, &new_request("york", email))
                .await
                .unwrap();
            assert!(!outcome.approved, "{email} on {}", db.label);
        }
        assert_eq!(support(&db.store, "york").await, SupportLevel::Limited);
    }
}

#[tokio::test]
async fn request_promotions_count_against_capacity_only_when_the_setting_says_so() {
    // Capacity 1; leeds reaches the threshold of 2 with two residents.
    for counts in [false, true] {
        let mut settings = settings(2.0, 1);
        settings.promotion.requests_count_against_capacity = counts;
        for db in databases(&settings).await {
            let outcome = create_request(
                &db.store,
                &settings,
                &new_request("walsall", "a@example.org"),
            )
            .await
            .unwrap();
            let first = approve_request(&db.store, &settings, outcome.id)
                .await
                .unwrap();
            assert!(matches!(first, RequestPromotion::Promoted(_)));
            for n in 0..2 {
                subscribe_as(
                    &db.store,
                    &settings,
                    &format!("r{n}@example.org"),
                    "leeds",
                    SubscriberKind::Resident,
                    true,
                )
                .await;
            }
            let report = run_promotion(&db.store, &settings, false).await.unwrap();
            let promoted: Vec<&str> = report.promoted.iter().map(|c| c.council.as_str()).collect();
            if counts {
                // walsall fills the one place: leeds waits.
                assert!(promoted.is_empty(), "{}", db.label);
                assert_eq!(report.held_back[0].because, HoldReason::Capacity);
                assert_eq!(report.full_councils, 1);

                // A second approved request now waits for room, and is promoted by the run
                // after the operator raises the capacity.
                let second = create_request(
                    &db.store,
                    &settings,
                    &new_request("sandwell", "b@example.org"),
                )
                .await
                .unwrap();
                let waiting = approve_request(&db.store, &settings, second.id)
                    .await
                    .unwrap();
                assert_eq!(waiting, RequestPromotion::WaitingForCapacity);
                assert_eq!(support(&db.store, "sandwell").await, SupportLevel::Limited);
                let mut roomier = settings.clone();
                roomier.promotion.max_full_councils = 2;
                let report = run_promotion(&db.store, &roomier, false).await.unwrap();
                let promoted: Vec<(&str, &str)> = report
                    .promoted
                    .iter()
                    .map(|c| (c.council.as_str(), c.reason.as_str()))
                    .collect();
                assert_eq!(promoted, vec![("sandwell", "request")], "{}", db.label);
            } else {
                // walsall does not count: leeds takes the one place.
                assert_eq!(promoted, vec!["leeds"], "{}", db.label);
                assert_eq!(report.full_councils, 1);
            }
        }
    }
}
