//! Fixture data shared by the digest and mail tests: councils, subscribers and meetings put in
//! through the store's own write API, on a real database.
//!
//! Included by the other test files with `#[path = "digest_common.rs"] mod common;`; on its
//! own it holds no tests.

#![allow(dead_code)]

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use council_digest::clock::Clock;
use council_digest::mail::message::MailContext;
use council_digest::mail::templates::Renderer;
use council_digest::settings::Settings;
use council_digest::sources::uktime::uk_start;
use council_digest::store::Store;
use council_digest::store::meetings::{
    DetailState, NewAgendaItem, NewDocument, NewMeeting, NewMeetingDetail, NewNotice,
    upsert_meeting, upsert_notice,
};
use council_digest::tokens::SigningKey;
use sqlx::Row;

pub const BASE_URL: &str = "https://digest.example.org";

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn time(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

pub fn settings() -> Settings {
    let mut settings = Settings::defaults();
    settings.web.base_url = BASE_URL.to_owned();
    settings.mail.from = "Council Digest <digest@example.org>".to_owned();
    settings.mail.reply_to = "help@example.org".to_owned();
    settings.mail.list_id = "weekly.digest.example.org".to_owned();
    settings.mail.unsubscribe_mailto = "unsubscribe@example.org".to_owned();
    settings
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(b"digest-tests-signing-key-0123456789")
}

pub fn mail_context(settings: &Settings, clock: &Clock) -> MailContext {
    MailContext::new(settings, signing_key(), clock.clone()).unwrap()
}

pub fn renderer() -> Renderer {
    Renderer::built_in().unwrap()
}

/// Adds a council with one committee-system source; returns (council id, source id).
pub async fn add_council(store: &Store, slug: &str, name: &str, support: &str) -> (i64, i64) {
    let now = store.clock().now_ts();
    let council: i64 = sqlx::query(
        "INSERT INTO councils (slug, name, gss_code, nation, council_type, platform, base_url, \
         support, support_pinned, created_at, updated_at) \
         VALUES ($1, $2, 'E06000000', 'England', 'unitary', 'moderngov', $3, $4, 0, $5, $5) \
         RETURNING id",
    )
    .bind(slug)
    .bind(name)
    .bind(format!("https://{slug}.example.gov.uk"))
    .bind(support)
    .bind(now)
    .fetch_one(store.pool())
    .await
    .unwrap()
    .try_get("id")
    .unwrap();
    let source = add_source(
        store,
        council,
        "moderngov",
        &format!("https://{slug}.example.gov.uk"),
    )
    .await;
    (council, source)
}

pub async fn add_source(store: &Store, council: i64, kind: &str, url: &str) -> i64 {
    sqlx::query(
        "INSERT INTO sources (council_id, kind, url, active, created_at) \
         VALUES ($1, $2, $3, 1, $4) RETURNING id",
    )
    .bind(council)
    .bind(kind)
    .bind(url)
    .bind(store.clock().now_ts())
    .fetch_one(store.pool())
    .await
    .unwrap()
    .try_get("id")
    .unwrap()
}

/// Adds a subscriber with confirmed subscriptions to `councils`.
pub async fn add_subscriber(store: &Store, email: &str, kind: &str, councils: &[i64]) -> i64 {
    let now = store.clock().now_ts();
    let id: i64 = sqlx::query(
        "INSERT INTO subscribers (email, kind, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(email)
    .bind(kind)
    .bind(now)
    .fetch_one(store.pool())
    .await
    .unwrap()
    .try_get("id")
    .unwrap();
    for council in councils {
        sqlx::query(
            "INSERT INTO subscriptions (subscriber_id, council_id, state, created_at, \
             confirmed_at) VALUES ($1, $2, 'confirmed', $3, $3)",
        )
        .bind(id)
        .bind(council)
        .bind(now)
        .execute(store.pool())
        .await
        .unwrap();
    }
    id
}

/// A meeting as a committee system would describe it, without detail.
pub fn meeting(id: &str, committee: &str, day: NaiveDate, at: Option<NaiveTime>) -> NewMeeting {
    NewMeeting {
        external_id: id.to_owned(),
        committee_external_id: None,
        committee_title: committee.to_owned(),
        title: committee.to_owned(),
        local_date: day,
        local_time: at,
        timezone: "Europe/London".to_owned(),
        starts_at: uk_start(day, at).0,
        ends_at: None,
        all_day: false,
        status: "Confirmed".to_owned(),
        location: Some("Guildhall, High Street".to_owned()),
        url: Some(format!(
            "https://example.gov.uk/ieListDocuments.aspx?CId=1&MId={id}"
        )),
        parse_warning: None,
        detail: DetailState::NotFetched,
    }
}

pub fn item(id: &str, number: &str, title: &str, text: &str) -> NewAgendaItem {
    NewAgendaItem {
        external_id: id.to_owned(),
        number: Some(number.to_owned()),
        title: title.to_owned(),
        text_html: Some(format!("<p>{text}</p>")),
        text_plain: Some(text.to_owned()),
        minutes_html: None,
        minutes_plain: None,
    }
}

pub fn document(id: &str, title: &str) -> NewDocument {
    NewDocument {
        external_id: id.to_owned(),
        agenda_item_external_id: None,
        title: title.to_owned(),
        url: format!("https://example.gov.uk/documents/s{id}/report.pdf"),
        published_on: None,
    }
}

pub fn with_detail(
    mut meeting: NewMeeting,
    items: Vec<NewAgendaItem>,
    documents: Vec<NewDocument>,
) -> NewMeeting {
    meeting.detail = DetailState::Fetched(NewMeetingDetail {
        agenda_items: items,
        documents,
        attendees: Vec::new(),
    });
    meeting
}

/// Stores a meeting (as one poll would) at the store clock's time.
pub async fn put_meeting(store: &Store, council: i64, source: i64, meeting: &NewMeeting) -> i64 {
    let now = store.clock().now_ts();
    let mut tx = store.begin_write().await.unwrap();
    let (id, _) = upsert_meeting(&mut tx, council, source, None, meeting, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

pub async fn put_notice(store: &Store, council: i64, source: i64, notice: &NewNotice) {
    let now = store.clock().now_ts();
    let mut tx = store.begin_write().await.unwrap();
    upsert_notice(&mut tx, council, source, notice, now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Marks a council's committee-system source as failing since `since`.
pub async fn fail_source(store: &Store, source: i64, since: DateTime<Utc>) {
    sqlx::query(
        "UPDATE sources SET failing_since = $1, last_error_at = $2, last_error = 'timed out', \
         consecutive_failures = 6 WHERE id = $3",
    )
    .bind(since.timestamp())
    .bind(store.clock().now_ts())
    .bind(source)
    .execute(store.pool())
    .await
    .unwrap();
}

/// The id of the delivery queued under `key`.
pub async fn delivery_id(store: &Store, key: &str) -> i64 {
    sqlx::query("SELECT id FROM deliveries WHERE dedupe_key = $1")
        .bind(key)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("id")
        .unwrap()
}

pub async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// The parts of a parsed message: (content type, text) in order.
pub fn parts_of(message: &mail_parser::Message<'_>) -> Vec<(String, String)> {
    use mail_parser::MimeHeaders;
    message
        .parts
        .iter()
        .skip(1)
        .map(|part| {
            let kind = part
                .content_type()
                .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")))
                .unwrap_or_default();
            let text = part.text_contents().unwrap_or("").replace("\r\n", "\n");
            (kind, text)
        })
        .collect()
}

/// Compares `actual` with the file under tests/snapshots, or rewrites it when
/// UPDATE_SNAPSHOTS is set.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "snapshot {} cannot be read ({err}); run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "snapshot {} differs from line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             (UPDATE_SNAPSHOTS=1 rewrites it)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}
