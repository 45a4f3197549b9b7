//! The reading pages over real HTTP and a real database: finding a council, a fully supported
//! council's meetings, a meeting's page with sanitised agenda text, a digest's web view, the
//! health check and the metrics.

mod web_support;

use chrono::{NaiveDate, TimeZone, Utc};
use council_digest::domain::{CouncilSlug, IsoWeek, SupportLevel};
use council_digest::registry::Registry;
use council_digest::store::meetings::{
    DetailState, NewAgendaItem, NewAttendee, NewDocument, NewMeeting, NewMeetingDetail,
    upsert_meeting,
};
use council_digest::tokens::LinkPurpose;
use sqlx::Row;
use web_support::{TestApp, spawn_apps};

const COUNCIL: &str = "wolverhampton";

#[tokio::test]
async fn the_search_finds_councils_by_part_of_their_name_with_support_and_queue_place() {
    for app in spawn_apps(|_| {}).await {
        let expected: Vec<&str> = Registry::builtin()
            .councils()
            .iter()
            .filter(|c| c.name.to_lowercase().contains("shire"))
            .map(|c| c.name.as_str())
            .collect();
        assert!(expected.len() > 3);
        let page = app.get("/?q=SHIRE").await;
        assert_eq!(page.status, 200);
        let text = page.text();
        assert!(
            text.contains(&format!("{} councils match “SHIRE”", expected.len())),
            "{text}"
        );
        for name in &expected {
            assert!(page.body.contains(name), "{name}");
        }
        assert_eq!(
            page.body.matches("<th scope=\"row\">").count(),
            expected.len()
        );

        let page = app.get("/?q=wolverhampton").await;
        let text = page.text();
        assert!(text.contains("1 council matches “wolverhampton”"));
        let before = Registry::builtin()
            .councils()
            .iter()
            .filter(|c| c.name.as_str() < "City of Wolverhampton Council")
            .count() as u32;
        let place = council_digest::ranking::ordinal(before + 1);
        assert!(
            text.contains(&format!(
                "City of Wolverhampton Council</a></th> <td>Limited</td> <td>{place}</td>"
            )),
            "{text}"
        );

        let page = app.get("/?q=zzzz-no-such-council").await;
        let text = page.text();
        assert!(
            text.contains("No council's name contains “zzzz-no-such-council”"),
            "{text}"
        );
        let page = app.get("/").await;
        assert_eq!(page.body.matches("<th scope=\"row\">").count(), 382);
        for path in ["/councils/no-such-council", "/councils/Not%20A%20Slug"] {
            let page = app.get(path).await;
            assert_eq!(page.status, 404, "{path}");
            assert!(
                page.body
                    .contains("The council you asked for does not exist")
            );
        }
        app.stop().await;
    }
}

/// Stores one meeting of the council's ModernGov source, starting at `starts_at` (UTC).
async fn add_meeting(app: &TestApp, external_id: &str, title: &str, starts_at: &str) -> i64 {
    let council = app
        .store
        .council_by_slug(&COUNCIL.parse::<CouncilSlug>().unwrap())
        .await
        .unwrap();
    let source_id: i64 = sqlx::query("SELECT id FROM sources WHERE council_id = $1")
        .bind(council.id)
        .fetch_one(app.store.pool())
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    let starts = chrono::DateTime::parse_from_rfc3339(starts_at)
        .unwrap()
        .to_utc();
    let local = starts.with_timezone(&chrono_tz::Europe::London);
    let meeting = NewMeeting {
        external_id: external_id.into(),
        committee_external_id: None,
        committee_title: "Planning Committee".into(),
        title: title.into(),
        local_date: local.date_naive(),
        local_time: Some(local.time()),
        timezone: "Europe/London".into(),
        starts_at: starts,
        ends_at: None,
        all_day: false,
        status: "Confirmed".into(),
        location: Some("Civic Centre, St Peter's Square".into()),
        url: Some(format!(
            "https://wolverhampton.moderngov.co.uk/ieListDocuments.aspx?MId={external_id}"
        )),
        parse_warning: None,
        detail: DetailState::Fetched(NewMeetingDetail {
            agenda_items: vec![NewAgendaItem {
                external_id: "1".into(),
                number: Some("1.".into()),
                title: "Land at Bilston Road".into(),
                text_html: Some(
                    "<p onmouseover=\"x()\">Erect <b>40 homes</b></p><script>steal()</script>"
                        .into(),
                ),
                text_plain: Some("Erect 40 homes".into()),
                minutes_html: None,
                minutes_plain: None,
            }],
            documents: vec![NewDocument {
                external_id: "d1".into(),
                agenda_item_external_id: Some("1".into()),
                title: "Officer report".into(),
                url: "https://wolverhampton.moderngov.co.uk/documents/report.pdf".into(),
                published_on: Some(NaiveDate::from_ymd_opt(2026, 2, 2).unwrap()),
            }],
            attendees: vec![NewAttendee {
                external_id: "a1".into(),
                name: "Councillor Ada Jones".into(),
                role: Some("Chair".into()),
                attendance: Some("Expected".into()),
                party: Some("Labour".into()),
            }],
        }),
    };
    let mut tx = app.store.begin_write().await.unwrap();
    let (id, _) = upsert_meeting(&mut tx, council.id, source_id, None, &meeting, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn a_meeting_page_shows_its_time_status_sanitised_agenda_attendees_and_documents() {
    for app in spawn_apps(|_| {}).await {
        // 18:00 UTC on 10 February is 6:00pm in London (GMT).
        let id = add_meeting(&app, "9001", "Planning Committee", "2026-02-10T18:00:00Z").await;
        let page = app.get(&format!("/meetings/{id}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let text = page.text();
        assert!(text.contains("<h1>Planning Committee</h1>"));
        assert!(
            text.contains("<dd>Tuesday 10 February 2026, 6:00pm</dd>"),
            "{text}"
        );
        assert!(text.contains("<dd>Confirmed</dd>"));
        assert!(text.contains("Civic Centre, St Peter&#x27;s Square"));
        assert!(text.contains(
            "<a href=\"https://wolverhampton.moderngov.co.uk/ieListDocuments.aspx?MId&#x3D;9001\" \
             rel=\"noreferrer noopener\">View on council website</a>"
        ));
        assert!(text.contains("<h3>1. Land at Bilston Road</h3>"));
        assert!(text.contains("<p>Erect <b>40 homes</b></p>"), "{text}");
        assert!(!page.body.contains("steal()"));
        assert!(!page.body.contains("onmouseover"));
        assert!(text.contains("Councillor Ada Jones, Chair (Labour) – Expected"));
        assert!(text.contains("Officer report</a>"));

        assert_eq!(app.get("/meetings/999999").await.status, 404);
        assert_eq!(app.get("/meetings/not-a-number").await.status, 404);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_fully_supported_council_lists_upcoming_and_recent_meetings_and_the_subscribe_form() {
    for app in spawn_apps(|_| {}).await {
        let slug: CouncilSlug = COUNCIL.parse().unwrap();
        app.store
            .set_council_support(&slug, SupportLevel::Full, "test")
            .await
            .unwrap();
        // The clock reads Monday 9 February 2026, 07:00 UTC.
        let next = add_meeting(&app, "1", "Cabinet", "2026-02-11T17:30:00Z").await;
        let last = add_meeting(&app, "2", "Full Council", "2026-02-02T19:00:00Z").await;
        add_meeting(&app, "3", "Old Audit Committee", "2025-12-01T10:00:00Z").await;

        let page = app.get(&format!("/councils/{COUNCIL}")).await;
        let text = page.text();
        assert!(!text.contains("Detailed weekly summaries are not provided yet"));
        let upcoming = text.find("Upcoming meetings").unwrap();
        let recent = text.find("Recent meetings").unwrap();
        let cabinet = text
            .find(&format!("<a href=\"/meetings/{next}\">Cabinet</a>"))
            .unwrap();
        let council = text
            .find(&format!("<a href=\"/meetings/{last}\">Full Council</a>"))
            .unwrap();
        assert!(
            upcoming < cabinet && cabinet < recent && recent < council,
            "{text}"
        );
        assert!(text.contains("Wednesday 11 February 2026, 5:30pm"));
        assert!(
            !text.contains("Old Audit Committee"),
            "older than four weeks"
        );
        assert!(text.contains("Subscribe to City of Wolverhampton Council"));
        assert!(!text.contains("Ask for City of Wolverhampton Council to be supported"));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_digest_opens_on_the_web_from_its_signed_link_only() {
    for app in spawn_apps(|_| {}).await {
        let slug: CouncilSlug = COUNCIL.parse().unwrap();
        app.store
            .set_council_support(&slug, SupportLevel::Full, "test")
            .await
            .unwrap();
        add_meeting(&app, "77", "Planning Committee", "2026-02-10T18:00:00Z").await;
        app.subscribe(COUNCIL, "reader@example.org").await;
        let mails = app.mails(1).await;
        let confirm = app.link_in(&mails[0], "/confirm/");
        let (_, cookie, guard) = app.open_form(&confirm).await;
        app.post_form(&confirm, Some(&cookie), &[("guard", &guard)])
            .await;

        let ctx = council_digest::mail::message::MailContext::new(
            &app.settings,
            web_support::signing_key(),
            app.store.clock().clone(),
        )
        .unwrap();
        let renderer = council_digest::mail::templates::Renderer::new(&app.settings).unwrap();
        let week: IsoWeek = "2026-W07".parse().unwrap();
        let report = council_digest::digest::build_week(
            &app.store,
            &app.settings,
            &renderer,
            &ctx,
            week,
            None,
            council_digest::digest::BuildMode::Queue,
        )
        .await
        .unwrap();
        assert_eq!(report.built, 1, "{report:?}");
        let digest_id: i64 = sqlx::query("SELECT id FROM digests")
            .fetch_one(app.store.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();

        let token =
            web_support::signing_key().sign(LinkPurpose::DigestView, &digest_id.to_string());
        let page = app.get(&format!("/digests/{token}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("Planning Committee"), "{}", page.body);
        assert!(page.body.contains("/unsubscribe/"));
        assert!(!page.header("content-security-policy").contains("script"));

        let forged =
            web_support::signing_key().sign(LinkPurpose::Unsubscribe, &digest_id.to_string());
        assert_eq!(app.get(&format!("/digests/{forged}")).await.status, 404);
        let missing = web_support::signing_key().sign(LinkPurpose::DigestView, "424242");
        assert_eq!(app.get(&format!("/digests/{missing}")).await.status, 404);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_health_check_answers_while_the_database_does_and_fails_when_it_is_closed() {
    for app in spawn_apps(|_| {}).await {
        let page = app.get("/healthz").await;
        assert_eq!((page.status, page.body.as_str()), (200, "ok\n"));
        app.store.close().await;
        let page = app.get("/healthz").await;
        assert_eq!(page.status, 503, "{}", app.label);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_metrics_count_sources_deliveries_subscribers_and_promotions_from_the_tables() {
    for app in spawn_apps(|_| {}).await {
        let moderngov_sources = Registry::builtin()
            .councils()
            .iter()
            .filter(|c| c.platform.as_str() == "moderngov" && c.base_url.is_some())
            .count();
        // One confirmed subscriber, one pending, and a source failing since 06:00.
        app.subscribe(COUNCIL, "one@example.org").await;
        let mails = app.mails(1).await;
        let confirm = app.link_in(&mails[0], "/confirm/");
        let (_, cookie, guard) = app.open_form(&confirm).await;
        app.post_form(&confirm, Some(&cookie), &[("guard", &guard)])
            .await;
        app.subscribe("worcester", "two@example.org").await;
        let failing_at = Utc
            .with_ymd_and_hms(2026, 2, 9, 6, 0, 0)
            .unwrap()
            .timestamp();
        sqlx::query(
            "UPDATE sources SET failing_since = $1, consecutive_failures = 3, last_poll_at = $1 \
             WHERE council_id = (SELECT id FROM councils WHERE slug = $2)",
        )
        .bind(failing_at)
        .bind(COUNCIL)
        .execute(app.store.pool())
        .await
        .unwrap();
        let slug: CouncilSlug = "worcester".parse().unwrap();
        app.store
            .set_council_support(&slug, SupportLevel::Full, "test")
            .await
            .unwrap();

        let page = app.get("/metrics").await;
        assert_eq!(page.status, 200);
        assert!(
            page.header("content-type")
                .starts_with("text/plain; version=0.0.4")
        );
        let lines: Vec<&str> = page.body.lines().collect();
        let has = |line: &str| lines.contains(&line);
        assert!(
            has(&format!("council_digest_sources {moderngov_sources}")),
            "{}",
            page.body
        );
        assert!(has("council_digest_sources_failing 1"));
        assert!(has(&format!(
            "council_digest_source_last_poll_timestamp_seconds\
             {{source=\"{}\",council=\"{COUNCIL}\",kind=\"moderngov\"}} {failing_at}",
            source_id(&app).await
        )));
        assert!(has("council_digest_subscribers{state=\"confirmed\"} 1"));
        assert!(has("council_digest_subscribers{state=\"pending\"} 1"));
        assert!(has("council_digest_subscribers{state=\"unsubscribed\"} 0"));
        assert!(has("council_digest_subscriptions{state=\"confirmed\"} 1"));
        assert!(has("council_digest_deliveries{state=\"queued\"} 0"));
        assert!(has(
            "council_digest_support_changes_total{direction=\"promote\"} 1"
        ));
        assert!(has("council_digest_councils{support=\"full\"} 1"));
        assert!(has("council_digest_councils{support=\"limited\"} 381"));
        app.stop().await;
    }
}

async fn source_id(app: &TestApp) -> i64 {
    sqlx::query(
        "SELECT s.id FROM sources s JOIN councils c ON c.id = s.council_id WHERE c.slug = $1",
    )
    .bind(COUNCIL)
    .fetch_one(app.store.pool())
    .await
    .unwrap()
    .try_get(0)
    .unwrap()
}

/// Manchester's `GetMeeting` answer for meeting 4967, captured from the committee system.
const REAL_MEETING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/real/moderngov-ws/manchester_GetMeeting_4967_with_minutes_and_docs.xml"
);

#[tokio::test]
async fn a_real_moderngov_meeting_renders_with_its_agenda_text_and_documents() {
    let Ok(xml) = std::fs::read_to_string(REAL_MEETING) else {
        eprintln!("skipped: {REAL_MEETING} is not present");
        return;
    };
    let base = "https://democracy.manchester.gov.uk";
    let parsed = council_digest::sources::moderngov::parse_meeting_detail(&xml, base).unwrap();
    for app in spawn_apps(|_| {}).await {
        let council = app
            .store
            .council_by_slug(&"manchester".parse::<CouncilSlug>().unwrap())
            .await
            .unwrap();
        let source_id: i64 = sqlx::query("SELECT id FROM sources WHERE council_id = $1")
            .bind(council.id)
            .fetch_one(app.store.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        // 10/02/2026 at "10.00 am", in GMT.
        let meeting = NewMeeting {
            external_id: parsed.meeting_id.clone(),
            committee_external_id: None,
            committee_title: "Audit Committee".into(),
            title: "Audit Committee".into(),
            local_date: NaiveDate::from_ymd_opt(2026, 2, 10).unwrap(),
            local_time: chrono::NaiveTime::from_hms_opt(10, 0, 0),
            timezone: "Europe/London".into(),
            starts_at: Utc.with_ymd_and_hms(2026, 2, 10, 10, 0, 0).unwrap(),
            ends_at: None,
            all_day: false,
            status: parsed.status.clone().unwrap(),
            location: parsed.location.clone(),
            url: Some(format!("{base}/ieListDocuments.aspx?MId=4967")),
            parse_warning: None,
            detail: DetailState::Fetched(parsed.detail.clone()),
        };
        let mut tx = app.store.begin_write().await.unwrap();
        let (id, _) = upsert_meeting(&mut tx, council.id, source_id, None, &meeting, 0)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let page = app.get(&format!("/meetings/{id}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let text = page.text();
        assert!(
            text.contains("<dd>Tuesday 10 February 2026, 10:00am</dd>"),
            "{text}"
        );
        assert!(text.contains("<dd>Confirmed</dd>"));
        assert!(text.contains("Council Antechamber, Level 2, Town Hall Extension"));
        assert!(text.contains("<h3>1. Minutes</h3>"), "{text}");
        assert!(text.contains("Work Programme"));
        assert!(text.contains(
            "To approve as a correct record the minutes of the meeting held on 25 November 2025."
        ));
        assert!(
            !page.body.contains("style=\""),
            "Word's inline styles are removed"
        );
        assert!(text.contains(
            "<a href=\"https://democracy.manchester.gov.uk/mgConvert2PDF.aspx?ID&#x3D;60860\" \
             rel=\"noreferrer noopener\">6 - CHAIR APPROVED Minutes Audit Committee 25 Nov \
             2025</a>"
        ));
        app.stop().await;
    }
}
