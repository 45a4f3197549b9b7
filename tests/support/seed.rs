//! Seeding the delivery ledger directly with SQL for delivery tests: subscribers, and queued
//! "promoted" notices about Leeds (rendered at send time by the real templates).
#![allow(dead_code)]

use council_digest::registry::Registry;
use council_digest::settings::Settings;
use council_digest::store::Store;
use council_digest::store::deliveries::{Enqueued, NewDelivery, enqueue_delivery};
use sqlx::Row;

/// `reader1@example.org` ... `reader{n}@example.org`.
pub fn addresses(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("reader{i}@example.org")).collect()
}

/// Loads the registry and queues a "promoted" notice about Leeds for each address; returns
/// (subscriber id, delivery id) for each, in order.
pub async fn seed_notices(store: &Store, addresses: &[String]) -> Vec<(i64, i64)> {
    store
        .sync_councils(Registry::builtin(), &Settings::defaults())
        .await
        .expect("load the registry");
    let leeds = leeds_id(store).await;
    let now = store.clock().now_ts();
    let mut out = Vec::new();
    for chunk in addresses.chunks(1000) {
        let mut tx = store.begin_write().await.expect("begin seeding");
        for address in chunk {
            let subscriber_id: i64 = sqlx::query(
                "INSERT INTO subscribers (email, kind, hard_failures, created_at) \
                 VALUES ($1, 'resident', 0, $2) RETURNING id",
            )
            .bind(address)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .expect("add a subscriber")
            .get("id");
            let queued = enqueue_delivery(&mut tx, &notice(subscriber_id, leeds, "first"), now)
                .await
                .expect("queue a notice");
            let Enqueued::Queued(delivery_id) = queued else {
                panic!("a fresh delivery was not queued");
            };
            out.push((subscriber_id, delivery_id));
        }
        tx.commit().await.expect("commit seeding");
    }
    out
}

/// Queues one more notice (distinguished by `tag`) for a seeded subscriber.
pub async fn queue_another(store: &Store, subscriber_id: i64, tag: &str) -> i64 {
    let leeds = leeds_id(store).await;
    let mut tx = store.begin_write().await.expect("begin queueing");
    let queued = enqueue_delivery(
        &mut tx,
        &notice(subscriber_id, leeds, tag),
        store.clock().now_ts(),
    )
    .await
    .expect("queue a notice");
    tx.commit().await.expect("commit a queued notice");
    match queued {
        Enqueued::Queued(id) => id,
        other => panic!("not queued: {other:?}"),
    }
}

async fn leeds_id(store: &Store) -> i64 {
    store
        .council_by_slug(&"leeds".parse().expect("a slug"))
        .await
        .expect("Leeds is in the registry")
        .id
}

fn notice(subscriber_id: i64, council_id: i64, tag: &str) -> NewDelivery {
    NewDelivery {
        dedupe_key: format!("notice:promoted:{tag}:{subscriber_id}"),
        kind: "promoted".to_owned(),
        subscriber_id: Some(subscriber_id),
        digest_id: None,
        payload: serde_json::json!({ "council_id": council_id }),
    }
}
