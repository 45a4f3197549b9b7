//! Subscribers and subscriptions through the core operations the web pages and the CLI share,
//! on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.

use council_digest::clock::Clock;
use council_digest::domain::{CouncilSlug, EmailAddress, SubscriberKind, SubscriptionState};
use council_digest::ranking::demand_ranking;
use council_digest::registry::Registry;
use council_digest::settings::Settings;
use council_digest::store::Store;
use council_digest::store::deliveries::{NewDelivery, enqueue_delivery};
use council_digest::store::testing::{TestDatabase, fresh_databases};
use council_digest::subscriptions::{
    ConfirmOutcome, SubscribeOutcome, SubscribeRequest, SubscriptionError, cancel_pending, confirm,
    erase, export, pending_by_token, set_followed_councils, subscribe, subscriber_view,
    unsubscribe_all,
};
use sqlx::Row;

const HOUR: i64 = 3600;

fn at(offset_seconds: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-02-09T07:00:00Z")
        .unwrap()
        .to_utc()
        + chrono::Duration::seconds(offset_seconds)
}

fn slug(s: &str) -> CouncilSlug {
    s.parse().unwrap()
}

fn email(s: &str) -> EmailAddress {
    s.parse().unwrap()
}

async fn databases(clock: &Clock) -> Vec<TestDatabase> {
    council_digest::telemetry::init_for_tests();
    let dbs = fresh_databases(clock.clone()).await;
    for db in &dbs {
        db.store
            .sync_councils(Registry::builtin(), &Settings::defaults())
            .await
            .unwrap();
    }
    dbs
}

fn resident(address: &str, council: &str) -> SubscribeRequest {
    SubscribeRequest {
        email: email(address),
        council: slug(council),
        kind: SubscriberKind::Resident,
        organisation: None,
    }
}

/// Subscribes and returns (subscriber id, raw token) of the pending subscription.
async fn pending(store: &Store, request: &SubscribeRequest) -> (i64, String) {
    match subscribe(store, &Settings::defaults(), request, false)
        .await
        .unwrap()
    {
        SubscribeOutcome::ConfirmationNeeded {
            subscriber_id,
            token,
            ..
        } => (subscriber_id, token),
        other => panic!("expected a pending subscription, got {other:?}"),
    }
}

async fn states(store: &Store, subscriber_id: i64) -> Vec<(String, SubscriptionState)> {
    subscriber_view(store, subscriber_id)
        .await
        .unwrap()
        .subscriptions
        .into_iter()
        .map(|(council, state)| (council.slug.to_string(), state))
        .collect()
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

async fn residents_of(store: &Store, council: &str) -> i64 {
    demand_ranking(store, &Settings::defaults())
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.council.slug.as_str() == council)
        .unwrap()
        .residents
}

#[tokio::test]
async fn a_second_subscribe_of_the_same_address_adds_the_council_to_the_same_subscriber() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (first, _) = pending(&db.store, &resident("Jo.Bloggs@Example.ORG", "leeds")).await;
        let (second, _) = pending(&db.store, &resident(" jo.bloggs@example.org ", "york")).await;
        // The domain is lowercased and space trimmed, but the local part keeps its case.
        let (third, _) = pending(&db.store, &resident("Jo.Bloggs@example.org", "walsall")).await;
        assert_eq!(first, third, "{}", db.label);
        assert_ne!(first, second, "local parts differ in case: {}", db.label);
        assert_eq!(
            states(&db.store, first).await,
            vec![
                ("leeds".to_owned(), SubscriptionState::Pending),
                ("walsall".to_owned(), SubscriptionState::Pending),
            ]
        );
        let view = subscriber_view(&db.store, first).await.unwrap();
        assert_eq!(view.email.as_str(), "Jo.Bloggs@example.org");
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM subscribers").await,
            2
        );
    }
}

#[tokio::test]
async fn confirming_counts_the_subscription_and_the_token_is_kept_only_as_a_hash() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (id, token) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        // 128 bits, URL-safe base64 without padding: 22 characters.
        assert_eq!(token.len(), 22);
        assert_eq!(
            residents_of(&db.store, "leeds").await,
            0,
            "pending does not count"
        );
        let stored: Vec<String> = sqlx::query("SELECT token_hash FROM tokens")
            .fetch_all(db.store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("token_hash"))
            .collect();
        assert_eq!(stored, vec![council_digest::tokens::hash_token(&token)]);
        assert!(!stored[0].contains(&token));

        // The confirm page's GET looks and changes nothing.
        let (seen, council) = pending_by_token(&db.store, &token).await.unwrap();
        assert_eq!((seen, council.slug.as_str()), (id, "leeds"));
        assert_eq!(states(&db.store, id).await[0].1, SubscriptionState::Pending);

        let leeds = db.store.council_by_slug(&slug("leeds")).await.unwrap();
        assert_eq!(
            confirm(&db.store, &token).await.unwrap(),
            ConfirmOutcome::Confirmed {
                subscriber_id: id,
                council_id: leeds.id
            }
        );
        assert_eq!(
            confirm(&db.store, &token).await.unwrap(),
            ConfirmOutcome::AlreadyConfirmed {
                subscriber_id: id,
                council_id: leeds.id
            }
        );
        assert_eq!(residents_of(&db.store, "leeds").await, 1, "{}", db.label);
        assert!(matches!(
            confirm(&db.store, "not-a-token").await,
            Err(SubscriptionError::InvalidToken)
        ));
    }
}

#[tokio::test]
async fn a_confirmation_token_expires_after_the_configured_hours() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (id, token) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        // Default ttl is 48 hours: valid one second before, expired at 48 h.
        clock.set(at(48 * HOUR - 1));
        assert!(pending_by_token(&db.store, &token).await.is_ok());
        clock.set(at(48 * HOUR));
        assert!(matches!(
            confirm(&db.store, &token).await,
            Err(SubscriptionError::ExpiredToken)
        ));
        assert_eq!(states(&db.store, id).await[0].1, SubscriptionState::Pending);
        // Subscribing again issues a fresh token that works.
        let (_, fresh) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        assert_ne!(fresh, token);
        assert!(matches!(
            confirm(&db.store, &fresh).await,
            Ok(ConfirmOutcome::Confirmed { .. })
        ));
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM subscriptions").await,
            1,
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn after_unsubscribing_a_new_subscribe_needs_a_fresh_confirmation() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (id, old) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        let (_, never_used) = pending(&db.store, &resident("a@example.org", "york")).await;
        confirm(&db.store, &old).await.unwrap();
        assert_eq!(unsubscribe_all(&db.store, id).await.unwrap(), 2);
        assert_eq!(unsubscribe_all(&db.store, id).await.unwrap(), 0);
        assert_eq!(residents_of(&db.store, "leeds").await, 0);
        // Neither the used link nor the one never clicked brings a subscription back.
        for token in [&old, &never_used] {
            assert!(matches!(
                confirm(&db.store, token).await,
                Err(SubscriptionError::InvalidToken)
            ));
        }

        let (again, fresh) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        assert_eq!(again, id);
        assert_eq!(
            states(&db.store, id).await,
            // By council name: "City of York Council" before "Leeds City Council".
            vec![
                ("york".to_owned(), SubscriptionState::Unsubscribed),
                ("leeds".to_owned(), SubscriptionState::Pending),
            ],
            "{}",
            db.label
        );
        assert_eq!(residents_of(&db.store, "leeds").await, 0);
        confirm(&db.store, &fresh).await.unwrap();
        assert_eq!(residents_of(&db.store, "leeds").await, 1, "{}", db.label);
    }
}

#[tokio::test]
async fn an_operator_can_add_a_confirmed_professional_with_an_organisation() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let request = SubscribeRequest {
            email: email("planner@example.org"),
            council: slug("leeds"),
            kind: SubscriberKind::Professional,
            organisation: Some(" Planning Partners ".into()),
        };
        let outcome = subscribe(&db.store, &Settings::defaults(), &request, true)
            .await
            .unwrap();
        let SubscribeOutcome::Confirmed { subscriber_id } = outcome else {
            panic!("expected confirmed, got {outcome:?}");
        };
        let view = subscriber_view(&db.store, subscriber_id).await.unwrap();
        assert_eq!(view.kind, SubscriberKind::Professional);
        assert_eq!(view.organisation.as_deref(), Some("Planning Partners"));
        assert_eq!(count(&db.store, "SELECT COUNT(*) FROM tokens").await, 0);
        assert_eq!(
            subscribe(&db.store, &Settings::defaults(), &request, true)
                .await
                .unwrap(),
            SubscribeOutcome::AlreadyConfirmed { subscriber_id }
        );
        // A stranger typing the address as a resident does not change a confirmed subscriber.
        pending(&db.store, &resident("planner@example.org", "york")).await;
        let view = subscriber_view(&db.store, subscriber_id).await.unwrap();
        assert_eq!(view.kind, SubscriberKind::Professional, "{}", db.label);
    }
}

#[tokio::test]
async fn an_unknown_council_or_a_suppressed_address_changes_nothing() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let err = subscribe(
            &db.store,
            &Settings::defaults(),
            &resident("a@example.org", "atlantis"),
            false,
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "there is no council `atlantis`");
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM subscribers").await,
            0
        );

        let (id, _) = pending(&db.store, &resident("b@example.org", "leeds")).await;
        sqlx::query("UPDATE subscribers SET suppressed_at = 1 WHERE id = $1")
            .bind(id)
            .execute(db.store.pool())
            .await
            .unwrap();
        let err = subscribe(
            &db.store,
            &Settings::defaults(),
            &resident("b@example.org", "york"),
            false,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, SubscriptionError::Suppressed), "{}", db.label);
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM subscriptions").await,
            1
        );
    }
    assert!("not an address".parse::<EmailAddress>().is_err());
}

#[tokio::test]
async fn preferences_drop_councils_and_add_new_ones_pending_confirmation() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (id, leeds_token) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        confirm(&db.store, &leeds_token).await.unwrap();
        let (_, york_token) = pending(&db.store, &resident("a@example.org", "york")).await;
        confirm(&db.store, &york_token).await.unwrap();

        let changes = set_followed_councils(
            &db.store,
            &Settings::defaults(),
            id,
            &[slug("leeds"), slug("walsall"), slug("walsall")],
        )
        .await
        .unwrap();
        let added: Vec<&str> = changes
            .added
            .iter()
            .map(|a| a.council.slug.as_str())
            .collect();
        let removed: Vec<&str> = changes.removed.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(
            (added, removed),
            (vec!["walsall"], vec!["york"]),
            "{}",
            db.label
        );
        assert_eq!(
            states(&db.store, id).await,
            vec![
                ("york".to_owned(), SubscriptionState::Unsubscribed),
                ("leeds".to_owned(), SubscriptionState::Confirmed),
                ("walsall".to_owned(), SubscriptionState::Pending),
            ]
        );
        confirm(&db.store, &changes.added[0].token).await.unwrap();

        // An unknown slug anywhere in the list changes nothing.
        let err = set_followed_councils(&db.store, &Settings::defaults(), id, &[slug("atlantis")])
            .await
            .unwrap_err();
        assert!(matches!(err, SubscriptionError::UnknownCouncil(_)));
        assert_eq!(
            states(&db.store, id).await[2].1,
            SubscriptionState::Confirmed
        );
    }
}

#[tokio::test]
async fn cancelling_a_pending_subscription_removes_a_subscriber_left_with_nothing() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (_, token) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        cancel_pending(&db.store, &token).await.unwrap();
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM subscribers").await,
            0
        );
        assert_eq!(count(&db.store, "SELECT COUNT(*) FROM tokens").await, 0);
        assert!(matches!(
            cancel_pending(&db.store, &token).await,
            Err(SubscriptionError::InvalidToken)
        ));

        let (id, kept) = pending(&db.store, &resident("b@example.org", "leeds")).await;
        confirm(&db.store, &kept).await.unwrap();
        let (_, york) = pending(&db.store, &resident("b@example.org", "york")).await;
        cancel_pending(&db.store, &york).await.unwrap();
        assert_eq!(
            states(&db.store, id).await,
            vec![("leeds".to_owned(), SubscriptionState::Confirmed)],
            "{}",
            db.label
        );
        // A confirmed subscription's link cannot cancel it.
        assert!(cancel_pending(&db.store, &kept).await.is_err());
    }
}

#[tokio::test]
async fn an_export_holds_everything_about_the_person_and_no_token() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (id, token) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        clock.set(at(60));
        confirm(&db.store, &token).await.unwrap();
        let exported = export(&db.store, &email("a@example.org")).await.unwrap();
        assert_eq!(exported["subscriber"]["id"], id);
        assert_eq!(exported["subscriber"]["email"], "a@example.org");
        assert_eq!(exported["subscriber"]["kind"], "resident");
        assert_eq!(
            exported["subscriptions"],
            serde_json::json!([{
                "council": "leeds",
                "council_name": "Leeds City Council",
                "state": "confirmed",
                "created_at": at(0).timestamp(),
                "confirmed_at": at(60).timestamp(),
                "unsubscribed_at": null,
            }]),
            "{}",
            db.label
        );
        assert_eq!(exported["tokens"][0]["purpose"], "confirm");
        let text = exported.to_string();
        assert!(!text.contains(&token));
        assert!(!text.contains(&council_digest::tokens::hash_token(&token)));
        assert!(matches!(
            export(&db.store, &email("nobody@example.org")).await,
            Err(SubscriptionError::UnknownSubscriber)
        ));
    }
}

#[tokio::test]
async fn erasing_deletes_the_person_and_tokens_and_leaves_deliveries_without_an_address() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (id, token) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        confirm(&db.store, &token).await.unwrap();
        pending(&db.store, &resident("a@example.org", "york")).await;
        let (other, _) = pending(&db.store, &resident("keep@example.org", "leeds")).await;
        let mut tx = db.store.begin_write().await.unwrap();
        for subscriber in [id, other] {
            enqueue_delivery(
                &mut tx,
                &NewDelivery {
                    dedupe_key: format!("digest:{subscriber}:2026-W07"),
                    kind: "digest".into(),
                    subscriber_id: Some(subscriber),
                    digest_id: None,
                    payload: serde_json::json!({}),
                },
                1,
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        sqlx::query("UPDATE deliveries SET recipient = 'a@example.org' WHERE subscriber_id = $1")
            .bind(id)
            .execute(db.store.pool())
            .await
            .unwrap();

        let report = erase(&db.store, &email("a@example.org")).await.unwrap();
        assert_eq!(
            (
                report.subscriptions,
                report.tokens,
                report.deliveries_anonymised
            ),
            (2, 2, 1),
            "{}",
            db.label
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM subscribers").await,
            1
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM subscriptions").await,
            1
        );
        // The other person's pending token stays; the erased person's two are gone.
        assert_eq!(count(&db.store, "SELECT COUNT(*) FROM tokens").await, 1);
        let rows = sqlx::query("SELECT subscriber_id, recipient FROM deliveries ORDER BY id")
            .fetch_all(db.store.pool())
            .await
            .unwrap();
        let kept: Vec<(Option<i64>, Option<String>)> = rows
            .iter()
            .map(|r| (r.get("subscriber_id"), r.get("recipient")))
            .collect();
        assert_eq!(
            kept,
            vec![(None, None), (Some(other), None)],
            "{}",
            db.label
        );
        assert!(matches!(
            erase(&db.store, &email("a@example.org")).await,
            Err(SubscriptionError::UnknownSubscriber)
        ));
    }
}

#[tokio::test]
async fn the_link_of_an_earlier_confirmation_mail_says_already_confirmed() {
    let clock = Clock::fixed(at(0));
    for db in databases(&clock).await {
        clock.set(at(0));
        let (id, first) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        let (_, second) = pending(&db.store, &resident("a@example.org", "leeds")).await;
        assert_ne!(first, second);
        assert!(matches!(
            confirm(&db.store, &second).await,
            Ok(ConfirmOutcome::Confirmed { subscriber_id, .. }) if subscriber_id == id
        ));
        assert!(matches!(
            confirm(&db.store, &first).await,
            Ok(ConfirmOutcome::AlreadyConfirmed { subscriber_id, .. }) if subscriber_id == id
        ));
        assert_eq!(residents_of(&db.store, "leeds").await, 1, "{}", db.label);
    }
}
