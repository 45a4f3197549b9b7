//! The meeting store's upserts: what a second, changed or thinner description of a meeting
//! writes, and which changes it records. Runs on SQLite always and on PostgreSQL when
//! TEST_DATABASE_URL is set.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use council_digest::clock::Clock;
use council_digest::registry::Registry;
use council_digest::settings::Settings;
use council_digest::store::Store;
use council_digest::store::meetings::{
    ChangeKind, DetailState, NewAgendaItem, NewDocument, NewMeeting, NewMeetingDetail, Upserted,
    upsert_meeting,
};
use council_digest::store::testing::fresh_databases;
use sqlx::Row;

fn at(raw: &str) -> DateTime<Utc> {
    raw.parse().unwrap()
}

fn item(id: &str, minutes: Option<&str>) -> NewAgendaItem {
    NewAgendaItem {
        external_id: id.to_owned(),
        number: Some(format!("{id}.")),
        title: format!("Item {id}"),
        text_html: Some("<p>Report</p>".to_owned()),
        text_plain: Some("Report".to_owned()),
        minutes_html: minutes.map(|m| format!("<p>{m}</p>")),
        minutes_plain: minutes.map(str::to_owned),
    }
}

fn document(id: &str) -> NewDocument {
    NewDocument {
        external_id: id.to_owned(),
        agenda_item_external_id: Some("1".to_owned()),
        title: format!("Document {id}"),
        url: format!("https://e.gov.uk/mgConvert2PDF.aspx?ID={id}"),
        published_on: None,
    }
}

fn meeting(status: &str, location: Option<&str>, detail: DetailState) -> NewMeeting {
    NewMeeting {
        external_id: "900".to_owned(),
        committee_external_id: None,
        committee_title: "Planning Committee".to_owned(),
        title: "Planning Committee - Thursday, 5th March, 2026 6.00 pm".to_owned(),
        local_date: NaiveDate::from_ymd_opt(2026, 3, 5).unwrap(),
        local_time: NaiveTime::from_hms_opt(18, 0, 0),
        timezone: "Europe/London".to_owned(),
        starts_at: at("2026-03-05T18:00:00Z"),
        ends_at: None,
        all_day: false,
        status: status.to_owned(),
        location: location.map(str::to_owned),
        url: None,
        parse_warning: None,
        detail,
    }
}

async fn source_of(store: &Store) -> (i64, i64) {
    let council = store
        .council_by_slug(&"manchester".parse().unwrap())
        .await
        .unwrap();
    let source: i64 = sqlx::query("SELECT id FROM sources WHERE council_id = $1")
        .bind(council.id)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("id")
        .unwrap();
    (council.id, source)
}

async fn store_one(store: &Store, meeting: &NewMeeting, now: &str) -> (i64, Upserted) {
    let (council, source) = source_of(store).await;
    let mut tx = store.begin_write().await.unwrap();
    let result = upsert_meeting(&mut tx, council, source, None, meeting, at(now).timestamp())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    result
}

#[tokio::test]
async fn status_location_new_documents_and_minutes_are_each_recorded_once() {
    council_digest::telemetry::init_for_tests();
    for db in fresh_databases(Clock::fixed(at("2026-03-01T09:00:00Z"))).await {
        let store = &db.store;
        store
            .sync_councils(Registry::builtin(), &Settings::defaults())
            .await
            .unwrap();
        let first_detail = NewMeetingDetail {
            agenda_items: vec![item("1", None)],
            documents: vec![document("11")],
            attendees: vec![],
        };
        let first = meeting(
            "Confirmed",
            Some("Council Chamber"),
            DetailState::Fetched(first_detail.clone()),
        );
        let (id, result) = store_one(store, &first, "2026-03-01T09:00:00Z").await;
        assert_eq!(result, Upserted::New, "{}", db.label);
        let (same_id, result) = store_one(store, &first, "2026-03-01T10:00:00Z").await;
        assert_eq!((same_id, result), (id, Upserted::Unchanged), "{}", db.label);

        let later_detail = NewMeetingDetail {
            agenda_items: vec![item("1", Some("Approved."))],
            documents: vec![document("11"), document("12")],
            attendees: vec![],
        };
        let later = meeting(
            "Cancelled",
            Some("Committee Room 1"),
            DetailState::Fetched(later_detail),
        );
        let (_, result) = store_one(store, &later, "2026-03-02T09:00:00Z").await;
        assert_eq!(result, Upserted::Changed, "{}", db.label);

        let council = store
            .council_by_slug(&"manchester".parse().unwrap())
            .await
            .unwrap();
        let changes = store
            .meeting_changes_since(council.id, at("2026-03-02T00:00:00Z"))
            .await
            .unwrap();
        let seen: Vec<(ChangeKind, Option<&str>, Option<&str>)> = changes
            .iter()
            .map(|c| (c.kind, c.old_value.as_deref(), c.new_value.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                (ChangeKind::Status, Some("Confirmed"), Some("Cancelled")),
                (
                    ChangeKind::Location,
                    Some("Council Chamber"),
                    Some("Committee Room 1")
                ),
                (ChangeKind::Documents, None, Some("Document 12")),
                (ChangeKind::Minutes, None, None),
            ],
            "{}",
            db.label
        );

        let stored = store.meeting(id).await.unwrap();
        assert!(stored.cancelled);
        assert_eq!(
            stored.starts_at,
            at("2026-03-05T18:00:00Z"),
            "cancelled keeps its time"
        );
        let firsts: Vec<(&str, DateTime<Utc>)> = stored
            .documents
            .iter()
            .map(|d| (d.title.as_str(), d.first_seen_at))
            .collect();
        assert_eq!(
            firsts,
            [
                ("Document 11", at("2026-03-01T09:00:00Z")),
                ("Document 12", at("2026-03-02T09:00:00Z")),
            ]
        );
        assert_eq!(
            stored.agenda_items[0].minutes_plain.as_deref(),
            Some("Approved.")
        );

        // A meeting list without detail or location (limited support) keeps both.
        let thin = meeting("Cancelled", None, DetailState::NotFetched);
        let (_, result) = store_one(store, &thin, "2026-03-03T09:00:00Z").await;
        assert_eq!(result, Upserted::Changed, "{}", db.label);
        let stored = store.meeting(id).await.unwrap();
        assert_eq!(stored.location.as_deref(), Some("Committee Room 1"));
        assert_eq!(stored.agenda_items.len(), 1);
        assert_eq!(stored.documents.len(), 2);
        let later_changes = store
            .meeting_changes_since(council.id, at("2026-03-03T00:00:00Z"))
            .await
            .unwrap();
        assert!(later_changes.is_empty(), "{}: {later_changes:?}", db.label);
        let (_, result) = store_one(store, &thin, "2026-03-04T09:00:00Z").await;
        assert_eq!(result, Upserted::Unchanged, "{}", db.label);
    }
}
