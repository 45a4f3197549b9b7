//! From the Manchester captures (the real ModernGov web-service answers in
//! ../shared/fixtures/real/moderngov-ws), served over loopback HTTP, polled by the real poller,
//! then built into digests: 2026-W07 shows the Audit Committee of Tuesday 10 February 2026 at
//! 10.00 am with its two items and their documents, and 2026-W03 shows the 13 January
//! meeting, marked cancelled. Skipped (with a notice) when the captures are not there.

#[path = "digest_common.rs"]
mod common;

use std::path::PathBuf;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::*;
use council_digest::clock::Clock;
use council_digest::digest::contents::DigestContents;
use council_digest::digest::{BuildMode, build_week};
use council_digest::mail::message::render_delivery;
use council_digest::registry::Registry;
use council_digest::settings::{CouncilOverride, Settings};
use council_digest::sources::poll::{PollFilter, poll_sources};
use council_digest::store::Store;
use sqlx::Row;

const REAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/real/moderngov-ws"
);

fn captures() -> Option<PathBuf> {
    let dir = PathBuf::from(REAL);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: the real Manchester captures are not at {REAL}");
        None
    }
}

/// Answers the web-service calls from the capture files, as democracy.manchester.gov.uk would.
async fn web_service(
    State(dir): State<PathBuf>,
    uri: axum::http::Uri,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    let file = match uri.path() {
        "/mgWebService.asmx/GetCommittees" => "manchester_GetCommittees_trimmed.xml".to_owned(),
        "/mgWebService.asmx/GetMeetings"
            if query.get("lCommitteeId").map(String::as_str) == Some("144") =>
        {
            "manchester_GetMeetings_audit_cancelled_and_confirmed.xml".to_owned()
        }
        "/mgWebService.asmx/GetMeetings" => {
            return (
                StatusCode::OK,
                [("content-type", "text/xml; charset=utf-8")],
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><getmeetings><meetingscount>0\
                 </meetingscount><committeescount>0</committeescount></getmeetings>"
                    .to_owned(),
            );
        }
        "/mgWebService.asmx/GetMeeting" => match query.get("lMeetingId").map(String::as_str) {
            Some("4966") => "manchester_GetMeeting_4966_cancelled_no_agenda.xml".to_owned(),
            Some("4967") => "manchester_GetMeeting_4967_with_minutes_and_docs.xml".to_owned(),
            _ => {
                return (
                    StatusCode::NOT_FOUND,
                    [("content-type", "text/plain")],
                    String::new(),
                );
            }
        },
        _ => {
            return (
                StatusCode::NOT_FOUND,
                [("content-type", "text/plain")],
                String::new(),
            );
        }
    };
    let body = std::fs::read_to_string(dir.join(file)).unwrap();
    (
        StatusCode::OK,
        [("content-type", "text/xml; charset=utf-8")],
        body,
    )
}

/// Serves the captures on a loopback port; returns the base URL.
async fn serve(dir: PathBuf) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(web_service).with_state(dir);
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn manchester_settings(base: &str) -> Settings {
    let mut settings = settings();
    settings.fetch.allow_private_networks = true;
    settings.councils.insert(
        "manchester".to_owned(),
        CouncilOverride {
            base_url: Some(base.to_owned()),
            feeds: vec![],
            support: Some(council_digest::domain::SupportLevel::Full),
        },
    );
    settings
}

async fn stored_contents(store: &Store, week: &str) -> DigestContents {
    let row = sqlx::query("SELECT id FROM digests WHERE week = $1")
        .bind(week)
        .fetch_one(store.pool())
        .await
        .unwrap();
    council_digest::digest::stored_contents(store, row.try_get("id").unwrap())
        .await
        .unwrap()
}

async fn digest_text(store: &Store, settings: &Settings, clock: &Clock, key: &str) -> String {
    let delivery = delivery_id(store, key).await;
    let rendered = render_delivery(
        store,
        settings,
        &renderer(),
        &mail_context(settings, clock),
        delivery,
    )
    .await
    .unwrap();
    let eml = rendered.message.formatted();
    let parsed = mail_parser::MessageParser::default().parse(&eml).unwrap();
    parts_of(&parsed).remove(0).1
}

#[tokio::test]
async fn the_manchester_captures_give_the_audit_committee_in_w07_and_the_cancelled_meeting_in_w03()
{
    council_digest::telemetry::init_for_tests();
    let Some(dir) = captures() else { return };
    let base = serve(dir).await;
    let settings = manchester_settings(&base);
    let clock = Clock::fixed(at("2026-01-12T06:00:00Z"));

    for db in council_digest::store::testing::fresh_databases(clock.clone()).await {
        clock.set(at("2026-01-12T06:00:00Z"));
        let store = &db.store;
        store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        let manchester = store
            .council_by_slug(&"manchester".parse().unwrap())
            .await
            .unwrap();
        let subscriber =
            add_subscriber(store, "mancunian@example.org", "resident", &[manchester.id]).await;
        let only_manchester = PollFilter {
            councils: vec![manchester.slug.clone()],
            ..PollFilter::default()
        };
        let ctx = mail_context(&settings, &clock);

        // Monday of week 3: poll, then build.
        let polled = poll_sources(store, &settings, &only_manchester)
            .await
            .unwrap();
        assert_eq!(polled.totals().failed, 0, "{}: {polled:?}", db.label);
        clock.set(at("2026-01-12T07:00:00Z"));
        let w03 = build_week(
            store,
            &settings,
            &renderer(),
            &ctx,
            "2026-W03".parse().unwrap(),
            None,
            BuildMode::Queue,
        )
        .await
        .unwrap();
        assert_eq!(
            (w03.built, w03.queued, w03.failed),
            (1, 1, 0),
            "{}",
            db.label
        );

        let contents = stored_contents(store, "2026-W03").await;
        let meetings = &contents.councils[0].meetings;
        assert_eq!(meetings.len(), 1, "{}: {meetings:?}", db.label);
        assert_eq!(meetings[0].local_date, date(2026, 1, 13));
        assert!(meetings[0].cancelled);
        assert!(meetings[0].items.is_empty());
        let text = digest_text(
            store,
            &settings,
            &clock,
            &format!("digest:{subscriber}:2026-W03"),
        )
        .await;
        assert!(
            text.contains(
                "Tuesday 13 January 2026\n\
                 * 10.00 am  Audit Committee - Tuesday, 13th January, 2026 10.00 am\n"
            ),
            "{text}"
        );
        assert!(text.contains("  Status: CANCELLED\n"), "{text}");
        assert!(
            text.contains("  Where: Council Antechamber, Level 2, Town Hall Extension\n"),
            "{text}"
        );

        // Monday of week 7: poll again, then build.
        clock.set(at("2026-02-09T06:00:00Z"));
        let polled = poll_sources(store, &settings, &only_manchester)
            .await
            .unwrap();
        assert_eq!(polled.totals().failed, 0, "{}: {polled:?}", db.label);
        clock.set(at("2026-02-09T07:00:00Z"));
        let w07 = build_week(
            store,
            &settings,
            &renderer(),
            &ctx,
            "2026-W07".parse().unwrap(),
            None,
            BuildMode::Queue,
        )
        .await
        .unwrap();
        assert_eq!(
            (w07.built, w07.queued, w07.failed),
            (1, 1, 0),
            "{}",
            db.label
        );

        let contents = stored_contents(store, "2026-W07").await;
        let meetings = &contents.councils[0].meetings;
        assert_eq!(meetings.len(), 1, "{}: {meetings:?}", db.label);
        let audit = &meetings[0];
        assert_eq!(audit.local_date, date(2026, 2, 10));
        assert_eq!(audit.local_time, Some(time(10, 0)));
        assert!(!audit.cancelled);
        let items: Vec<(Option<&str>, &str)> = audit
            .items
            .iter()
            .map(|i| (i.number.as_deref(), i.title.as_str()))
            .collect();
        assert_eq!(
            items,
            [(Some("1."), "Minutes"), (Some("9."), "Work Programme")]
        );
        let documents: Vec<&str> = audit.documents.iter().map(|d| d.url.as_str()).collect();
        assert_eq!(
            documents,
            [
                "https://democracy.manchester.gov.uk/mgConvert2PDF.aspx?ID=60860",
                "https://democracy.manchester.gov.uk/mgConvert2PDF.aspx?ID=60909",
            ]
        );

        let text = digest_text(
            store,
            &settings,
            &clock,
            &format!("digest:{subscriber}:2026-W07"),
        )
        .await;
        assert!(
            text.contains(
                "Tuesday 10 February 2026\n\
                 * 10.00 am  Audit Committee - Tuesday, 10th February, 2026 10.00 am\n"
            ),
            "{text}"
        );
        assert!(text.contains("  Status: Confirmed\n"), "{text}");
        // The minutes are published, so they are the extracts.
        assert!(
            text.contains(
                "  1. Minutes\n      To approve the minutes of the meeting held on 25 November \
                 2025 as a correct record.\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  9. Work Programme\n      The Committee considered a report of the \
                 Governance and Scrutiny Support Unit which set out its future Work Programme \
                 for the remainder of 2025/26 municipal year.\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "  View on council website: {base}/ieListDocuments.aspx?CId=144&MId=4967\n"
            )),
            "{text}"
        );
        assert!(
            !text.contains("13 January"),
            "week 7 does not reach back to 13 January"
        );
    }
}
