//! A claimed batch rendered the way the drain renders it (a few reads for the whole batch, the
//! templates on the blocking threads) gives, delivery by delivery, the message that rendering
//! each one alone gives, and the same errors.

#[path = "digest_common.rs"]
mod common;

use common::*;
use council_digest::clock::Clock;
use council_digest::digest::{BuildMode, build_week};
use council_digest::mail::message::{render_claimed, render_delivery};
use council_digest::store::Store;
use council_digest::store::deliveries::{NewDelivery, enqueue_delivery};
use council_digest::store::ledger::claim_due;

/// Two full councils and a limited one; five subscribers, three of whom follow only Bath; a
/// first digest for 2026-W06, a moved meeting, then the 2026-W07 run; and a promotion notice.
async fn queue_a_week(store: &Store, clock: &Clock) -> Vec<i64> {
    let settings = settings();
    let renderer = renderer();
    let ctx = mail_context(&settings, clock);
    let (bath, bath_src) = add_council(
        store,
        "bath-and-north-east-somerset",
        "Bath & North East Somerset Council",
        "full",
    )
    .await;
    let (wolves, wolves_src) = add_council(
        store,
        "wolverhampton",
        "City of Wolverhampton Council",
        "full",
    )
    .await;
    let (rutland, _) = add_council(store, "rutland", "Rutland County Council", "limited").await;
    let both = add_subscriber(store, "both@example.org", "resident", &[bath, wolves]).await;
    let bath_only = add_subscriber(store, "bath@example.org", "resident", &[bath]).await;
    let with_limited =
        add_subscriber(store, "mixed@example.org", "resident", &[wolves, rutland]).await;
    let erased = add_subscriber(store, "gone@example.org", "resident", &[bath]).await;
    // The same digest as `bath_only`'s but for the links: a shared rendering serves it.
    let bath_again = add_subscriber(store, "bath.too@example.org", "resident", &[bath]).await;

    let planning = with_detail(
        meeting(
            "p1",
            "Planning Committee",
            date(2026, 2, 10),
            Some(time(10, 0)),
        ),
        vec![item(
            "p1-1",
            "1.",
            "Land at Combe Down",
            "12 dwellings & access.",
        )],
        vec![document("901", "Officer report")],
    );
    put_meeting(store, bath, bath_src, &planning).await;
    let cabinet = meeting("c1", "Cabinet", date(2026, 2, 11), Some(time(18, 30)));
    put_meeting(store, wolves, wolves_src, &cabinet).await;
    build_week(
        store,
        &settings,
        &renderer,
        &ctx,
        "2026-W06".parse().unwrap(),
        None,
        BuildMode::Queue,
    )
    .await
    .unwrap();
    // Sent last week: only this week's run is claimed below.
    sqlx::query("UPDATE deliveries SET state = 'sent'")
        .execute(store.pool())
        .await
        .unwrap();

    clock.set(at("2026-02-05T12:00:00Z"));
    let mut moved = planning.clone();
    moved.local_date = date(2026, 2, 12);
    moved.starts_at = at("2026-02-12T14:00:00Z");
    moved.local_time = Some(time(14, 0));
    put_meeting(store, bath, bath_src, &moved).await;

    clock.set(at("2026-02-09T07:00:00Z"));
    let built = build_week(
        store,
        &settings,
        &renderer,
        &ctx,
        "2026-W07".parse().unwrap(),
        None,
        BuildMode::Queue,
    )
    .await
    .unwrap();
    assert_eq!(built.queued, 5, "{built:?}");

    let mut tx = store.begin_write().await.unwrap();
    enqueue_delivery(
        &mut tx,
        &NewDelivery {
            dedupe_key: format!("notice:promoted:{bath}:{bath_only}"),
            kind: "promoted".to_owned(),
            subscriber_id: Some(bath_only),
            digest_id: None,
            payload: serde_json::json!({ "council_id": bath }),
        },
        store.clock().now_ts(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE subscribers SET email = NULL WHERE id = $1")
        .bind(erased)
        .execute(store.pool())
        .await
        .unwrap();
    vec![both, bath_only, with_limited, erased, bath_again]
}

/// Subject, recipient, Message-ID and the text and HTML parts of a rendered message (the
/// MIME boundaries are random, so whole messages are not compared byte for byte).
fn essentials(eml: &[u8]) -> (String, String, String, Vec<(String, String)>) {
    let parsed = mail_parser::MessageParser::default().parse(eml).unwrap();
    let to = parsed
        .to()
        .and_then(|to| to.first())
        .and_then(|to| to.address())
        .unwrap_or_default()
        .to_owned();
    (
        parsed.subject().unwrap_or_default().to_owned(),
        to,
        parsed.message_id().unwrap_or_default().to_owned(),
        parts_of(&parsed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_batch_renders_each_delivery_as_rendering_it_alone_does() {
    let clock = Clock::fixed(at("2026-02-02T07:00:00Z"));
    for db in council_digest::store::testing::fresh_databases(clock.clone()).await {
        clock.set(at("2026-02-02T07:00:00Z"));
        let store = &db.store;
        let subscribers = queue_a_week(store, &clock).await;
        let settings = settings();
        let renderer = renderer();
        let ctx = mail_context(&settings, &clock);

        let now = store.clock().now_ts();
        let batch = claim_due(store, "test", 100, now, now + 300).await.unwrap();
        // Five digests (one to an erased address) and the notice.
        assert_eq!(batch.len(), 6, "{}", db.label);

        // The second time round every digest but the notice comes from a shared rendering.
        let mut rendered = Vec::new();
        for round in ["first", "second"] {
            rendered = render_claimed(store, &settings, &renderer, &ctx, &batch).await;
            assert_eq!(rendered.len(), batch.len(), "{} {round}", db.label);
            let mut ok = 0;
            for (delivery, batched) in batch.iter().zip(&rendered) {
                let alone = render_delivery(store, &settings, &renderer, &ctx, delivery.id).await;
                match (batched, alone) {
                    (Ok(batched), Ok(alone)) => {
                        ok += 1;
                        assert_eq!(batched.to, alone.to, "{} {round}", db.label);
                        assert_eq!(batched.message_id, alone.message_id, "{} {round}", db.label);
                        assert_eq!(
                            essentials(&batched.message.formatted()),
                            essentials(&alone.message.formatted()),
                            "delivery {} on {} ({round})",
                            delivery.id,
                            db.label
                        );
                    }
                    (Err(batched), Err(alone)) => {
                        assert_eq!(
                            batched.to_string(),
                            alone.to_string(),
                            "{} {round}",
                            db.label
                        );
                        assert_eq!(
                            delivery.subscriber_id,
                            Some(subscribers[3]),
                            "only the erased address fails ({})",
                            db.label
                        );
                    }
                    (batched, alone) => panic!(
                        "delivery {}: batch {:?} but alone {:?} ({})",
                        delivery.id,
                        batched.as_ref().map(|r| &r.message_id),
                        alone.map(|r| r.message_id),
                        db.label
                    ),
                }
            }
            assert_eq!(ok, 5, "{} {round}", db.label);
            // Three distinct digests are kept (the erased address fails before rendering):
            // the two Bath-only subscribers share one.
            assert!(renderer.shared().splicable(), "{}", db.label);
            assert_eq!(renderer.shared().len(), 3, "{}", db.label);
            // Both bodies of each (lettre would encode them as quoted-printable)
            // are encoded once and spliced for each recipient, and the messages above match
            // those lettre encodes alone.
            assert_eq!(renderer.shared().encoded_bodies(), 6, "{}", db.label);
        }

        // The subscriber with two councils gets both, and Bath's moved meeting is marked.
        let both = batch
            .iter()
            .position(|d| d.subscriber_id == Some(subscribers[0]) && d.kind == "digest")
            .unwrap();
        let eml = rendered[both].as_ref().unwrap().message.formatted();
        let (subject, _, _, parts) = essentials(&eml);
        assert_eq!(
            subject,
            "Bath & North East Somerset Council and City of Wolverhampton Council: 2 meetings, \
             week of 9 February 2026 (2026-W07)",
            "{}",
            db.label
        );
        assert!(
            parts[0]
                .1
                .contains("Moved from Tuesday 10 February, 10.00 am"),
            "{}",
            parts[0].1
        );

        // Two recipients of one shared rendering each get their own unsubscribe link.
        for subscriber in [subscribers[1], subscribers[4]] {
            let index = batch
                .iter()
                .position(|d| d.subscriber_id == Some(subscriber) && d.kind == "digest")
                .unwrap();
            let eml = rendered[index].as_ref().unwrap().message.formatted();
            let (_, _, _, parts) = essentials(&eml);
            let token = signing_key().sign(
                council_digest::tokens::LinkPurpose::Unsubscribe,
                &subscriber.to_string(),
            );
            let link = format!("/unsubscribe/{token}");
            assert!(parts[0].1.contains(&link), "{}", parts[0].1);
            assert!(parts[1].1.contains(&link), "{}", parts[1].1);
        }
    }
}
