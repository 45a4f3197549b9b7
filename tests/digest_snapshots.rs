//! The rendered digest, text and HTML, for fixed fixture data: a full council with a moved, a
//! cancelled and a new meeting, a full council with an empty week and a failing source, and a
//! limited council. Built and queued by a real run on each database, then rendered from the
//! queued delivery and compared with the files under tests/snapshots/ (UPDATE_SNAPSHOTS=1
//! rewrites them).

#[path = "digest_common.rs"]
mod common;

use common::*;
use council_digest::clock::Clock;
use council_digest::digest::{BuildMode, build_week};
use council_digest::mail::message::render_delivery;
use council_digest::store::Store;
use council_digest::store::meetings::NewNotice;

/// What the tests need to find again.
struct World {
    resident: i64,
}

/// The fixture: two full councils, three limited ones, and three subscribers; a first digest
/// for 2026-W06, then a week of changes.
async fn build_world(store: &Store, clock: &Clock) -> World {
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
    let bath_feed = add_source(store, bath, "feed", "https://www.bathnes.gov.uk/news.rss").await;
    let (wolves, wolves_src) = add_council(
        store,
        "wolverhampton",
        "City of Wolverhampton Council",
        "full",
    )
    .await;
    let (anglesey, _) = add_council(
        store,
        "isle-of-anglesey",
        "Ynys Môn – Isle of Anglesey County Council",
        "limited",
    )
    .await;
    let (rutland, _) = add_council(store, "rutland", "Rutland County Council", "limited").await;
    add_council(
        store,
        "torfaen",
        "Torfaen County Borough Council",
        "limited",
    )
    .await;

    let resident = add_subscriber(
        store,
        "resident@example.org",
        "resident",
        &[bath, wolves, anglesey],
    )
    .await;
    add_subscriber(
        store,
        "limited.only@example.org",
        "resident",
        &[anglesey, rutland],
    )
    .await;
    add_subscriber(store, "planner@example.org", "professional", &[rutland]).await;

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
            "Land at Combe Down, Bath",
            "Erection of 12 dwellings & associated access; officers recommend approval.",
        )],
        vec![document("901", "Officer report: Combe Down")],
    );
    let cabinet = with_detail(
        meeting("c1", "Cabinet", date(2026, 2, 11), Some(time(18, 30))),
        vec![
            item(
                "c1-1",
                "1.",
                "Budget 2026/27",
                "To recommend the budget to Council.",
            ),
            item(
                "c1-2",
                "2.",
                "Bus <Fares> & Passes",
                "A report on concessionary travel.",
            ),
        ],
        vec![],
    );
    let mut audit = with_detail(
        meeting("a1", "Audit Committee", date(2026, 2, 3), Some(time(10, 0))),
        vec![item(
            "a1-1",
            "4.",
            "Internal audit plan",
            "The plan for 2026/27.",
        )],
        vec![],
    );
    put_meeting(store, bath, bath_src, &planning).await;
    put_meeting(store, bath, bath_src, &cabinet).await;
    put_meeting(store, bath, bath_src, &audit).await;

    clock.set(at("2026-02-02T07:00:00Z"));
    let first = build_week(
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
    assert_eq!(first.built, 1, "only the resident has a full council");

    clock.set(at("2026-02-04T12:00:00Z"));
    let mut moved = planning.clone();
    moved.local_date = date(2026, 2, 12);
    moved.local_time = Some(time(14, 0));
    moved.starts_at =
        council_digest::sources::uktime::uk_start(moved.local_date, moved.local_time).0;
    put_meeting(store, bath, bath_src, &moved).await;
    let mut cancelled = cabinet.clone();
    cancelled.status = "Cancelled".to_owned();
    put_meeting(store, bath, bath_src, &cancelled).await;
    put_meeting(
        store,
        bath,
        bath_src,
        &meeting(
            "l1",
            "Licensing Sub-Committee",
            date(2026, 2, 13),
            Some(time(10, 0)),
        ),
    )
    .await;
    if let council_digest::store::meetings::DetailState::Fetched(detail) = &mut audit.detail {
        detail.agenda_items[0].minutes_plain =
            Some("RESOLVED: that the internal audit plan be approved.".to_owned());
        detail.agenda_items[0].minutes_html =
            Some("<p>RESOLVED: that the internal audit plan be approved.</p>".to_owned());
        detail
            .documents
            .push(document("902", "Printed minutes 3 February 2026"));
    }
    put_meeting(store, bath, bath_src, &audit).await;

    clock.set(at("2026-02-06T10:00:00Z"));
    put_notice(
        store,
        bath,
        bath_feed,
        &NewNotice {
            external_id: "n1".to_owned(),
            title: "Have your say on parking charges".to_owned(),
            link: Some("https://www.bathnes.gov.uk/consult?id=7&lang=en".to_owned()),
            published_at: Some(at("2026-02-06T10:00:00Z")),
            summary_html: None,
            summary_plain: Some("A consultation until March.".to_owned()),
        },
    )
    .await;
    fail_source(store, wolves_src, at("2026-02-05T09:00:00Z")).await;

    clock.set(at("2026-02-09T07:00:00Z"));
    let second = build_week(
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
    // The other two follow only limited councils.
    assert_eq!((second.built, second.queued, second.all_limited), (1, 1, 2));
    World { resident }
}

#[tokio::test]
async fn the_weekly_digest_renders_exactly_as_its_text_and_html_snapshots() {
    council_digest::telemetry::init_for_tests();
    let clock = Clock::fixed(at("2026-01-26T12:00:00Z"));
    for db in council_digest::store::testing::fresh_databases(clock.clone()).await {
        clock.set(at("2026-01-26T12:00:00Z"));
        let world = build_world(&db.store, &clock).await;
        let settings = settings();
        let key = format!("digest:{}:2026-W07", world.resident);
        let delivery = delivery_id(&db.store, &key).await;

        let rendered = render_delivery(
            &db.store,
            &settings,
            &renderer(),
            &mail_context(&settings, &clock),
            delivery,
        )
        .await
        .unwrap();
        let eml = rendered.message.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&eml).unwrap();
        let parts = parts_of(&parsed);
        assert_eq!(parts.len(), 2, "{}", db.label);
        assert_eq!(parts[0].0, "text/plain", "{}", db.label);
        assert_eq!(parts[1].0, "text/html", "{}", db.label);

        assert_snapshot("digest_2026-W07.txt", &parts[0].1);
        assert_snapshot("digest_2026-W07.html", &parts[1].1);
    }
}

#[tokio::test]
async fn the_digest_marks_moves_cancellations_and_new_meetings_in_plain_words() {
    let clock = Clock::fixed(at("2026-01-26T12:00:00Z"));
    let db = council_digest::store::testing::fresh_sqlite(clock.clone()).await;
    let world = build_world(&db.store, &clock).await;
    let settings = settings();
    let delivery = delivery_id(&db.store, &format!("digest:{}:2026-W07", world.resident)).await;
    let rendered = render_delivery(
        &db.store,
        &settings,
        &renderer(),
        &mail_context(&settings, &clock),
        delivery,
    )
    .await
    .unwrap();
    let eml = rendered.message.formatted();
    let parsed = mail_parser::MessageParser::default().parse(&eml).unwrap();
    let text = parsed.body_text(0).unwrap().into_owned();
    let html = parsed.body_html(0).unwrap().into_owned();

    // Worked out from the fixture: Planning moved from Tue 10 Feb 10:00 to Thu 12 Feb 14:00.
    assert!(
        text.contains(
            "Planning Committee, Thursday 12 February: moved from Tuesday 10 February, 10.00 am"
        ),
        "{text}"
    );
    assert!(text.contains("* 2.00 pm  Planning Committee"), "{text}");
    assert!(
        text.contains("Cancelled: Cabinet, Wednesday 11 February"),
        "{text}"
    );
    assert!(text.contains("  Status: CANCELLED"), "{text}");
    assert!(
        text.contains("New meeting: Licensing Sub-Committee, Friday 13 February"),
        "{text}"
    );
    assert!(
        text.contains("Audit Committee, Tuesday 3 February: new documents published"),
        "{text}"
    );
    assert!(
        text.contains("Audit Committee, Tuesday 3 February: minutes published"),
        "{text}"
    );
    // Minutes, once published, are the item's extract.
    assert!(
        text.contains("RESOLVED: that the internal audit plan be approved."),
        "{text}"
    );
    // Text keeps names and URLs exactly; HTML escapes them.
    assert!(
        text.contains("== Bath & North East Somerset Council =="),
        "{text}"
    );
    assert!(text.contains("2. Bus <Fares> & Passes"), "{text}");
    assert!(
        text.contains("https://www.bathnes.gov.uk/consult?id=7&lang=en"),
        "{text}"
    );
    assert!(
        html.contains("Bath &amp; North East Somerset Council"),
        "{html}"
    );
    assert!(html.contains("Bus &lt;Fares&gt; &amp; Passes"), "{html}");
    assert!(!html.contains("<Fares>"), "{html}");
    // The empty week and the failing source.
    assert!(
        text.contains(
            "No meetings of City of Wolverhampton Council are listed from Monday 2 February \
             to Sunday 15 February 2026."
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "We have not been able to reach City of Wolverhampton Council's committee \
             website since Thursday 5 February 2026"
        ),
        "{text}"
    );
    // The limited council: Rutland (1 resident + 1 professional = 4) ranks above Anglesey
    // (2 residents = 2), Torfaen (0) last; 25 - 2 = 23 more residents needed.
    assert!(
        text.contains("Ynys Môn – Isle of Anglesey County Council"),
        "{text}"
    );
    assert!(
        text.contains("It is 2nd of 3 waiting. It needs 23 more subscribers"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{BASE_URL}/councils/isle-of-anglesey")),
        "{text}"
    );
    // Subject: councils, meetings this week (Planning, Licensing; Cabinet cancelled), week.
    assert_eq!(
        parsed.subject(),
        Some(
            "Bath & North East Somerset Council, City of Wolverhampton Council and \
             Ynys Môn – Isle of Anglesey County Council: 2 meetings (1 cancelled), \
             week of 9 February 2026 (2026-W07)"
        )
    );
}
