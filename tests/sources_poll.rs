//! Polling over real HTTP on loopback: a small axum server in the test serves ModernGov web
//! service answers, iCalendar files and failures (ETag/304, 429 + Retry-After, 500, a slow
//! body, an oversize body, an HTML page with status 200) to councils whose base URLs point at
//! it. Runs on SQLite always and on PostgreSQL when TEST_DATABASE_URL is set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use council_digest::clock::Clock;
use council_digest::domain::{CouncilSlug, SupportLevel};
use council_digest::registry::Registry;
use council_digest::settings::{CouncilOverride, Settings};
use council_digest::sources::poll::{PollFilter, PollReport, PollStatus, poll_sources};
use council_digest::store::Store;
use council_digest::store::meetings::ChangeKind;
use council_digest::store::testing::fresh_databases;
use sqlx::Row;

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/real");
const OWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// What the test server answers for one path (and committee or meeting id).
#[derive(Clone)]
enum Reply {
    /// 200 with an ETag; 304 when the request's If-None-Match matches it.
    Document { body: Vec<u8>, etag: String },
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Sends the first bytes, then stalls far longer than the client's timeout.
    Slow(Vec<u8>),
    /// Answers after a pause, so that requests overlap and the limits show.
    Delayed(Vec<u8>),
    /// A gzip-compressed body with `Content-Encoding: gzip`.
    Gzip(Vec<u8>),
}

#[derive(Default)]
struct ServerState {
    replies: HashMap<String, Reply>,
    /// Each request's key and whether it carried If-None-Match.
    requests: Vec<(String, bool)>,
    in_flight: usize,
    most_in_flight: usize,
    user_agents: std::collections::BTreeSet<String>,
}

#[derive(Clone)]
struct TestServer {
    base: String,
    state: Arc<Mutex<ServerState>>,
}

impl TestServer {
    async fn start() -> TestServer {
        let state = Arc::new(Mutex::new(ServerState::default()));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer { base, state }
    }

    fn set(&self, key: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .replies
            .insert(key.to_owned(), reply);
    }

    fn document(&self, key: &str, body: Vec<u8>) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = format!("\"{:016x}\"", hasher.finish());
        self.set(key, Reply::Document { body, etag });
    }

    fn requests_to(&self, key: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.requests.iter().filter(|(k, _)| k == key).count()
    }

    fn conditional_requests(&self, key: &str) -> usize {
        let state = self.state.lock().unwrap();
        state
            .requests
            .iter()
            .filter(|(k, conditional)| k == key && *conditional)
            .count()
    }
}

/// The key of a request: its path, plus `#id` for a committee or meeting id in the query.
fn request_key(request: &Request) -> String {
    let path = request.uri().path().to_owned();
    let id = request.uri().query().and_then(|query| {
        query.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            matches!(name, "lCommitteeId" | "lMeetingId").then(|| value.to_owned())
        })
    });
    match id {
        Some(id) => format!("{path}#{id}"),
        None => path,
    }
}

async fn answer(State(state): State<Arc<Mutex<ServerState>>>, request: Request) -> Response {
    let key = request_key(&request);
    let if_none_match = request
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let reply = {
        let mut state = state.lock().unwrap();
        state.requests.push((key.clone(), if_none_match.is_some()));
        if let Some(agent) = request
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
        {
            state.user_agents.insert(agent.to_owned());
        }
        state.replies.get(&key).cloned()
    };
    let mut response = match reply {
        None => Response::new(Body::from(format!("nothing at {key}"))),
        Some(Reply::Document { body, etag }) => {
            if if_none_match.as_deref() == Some(etag.as_str()) {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                response
            } else {
                let mut response = Response::new(Body::from(body));
                response
                    .headers_mut()
                    .insert("etag", HeaderValue::from_str(&etag).unwrap());
                response
            }
        }
        Some(Reply::Status {
            status,
            headers,
            body,
        }) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            let map: &mut HeaderMap = response.headers_mut();
            for (name, value) in headers {
                map.insert(name, HeaderValue::from_str(&value).unwrap());
            }
            response
        }
        Some(Reply::Delayed(body)) => {
            {
                let mut state = state.lock().unwrap();
                state.in_flight += 1;
                state.most_in_flight = state.most_in_flight.max(state.in_flight);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            state.lock().unwrap().in_flight -= 1;
            Response::new(Body::from(body))
        }
        Some(Reply::Gzip(plain)) => {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&plain).unwrap();
            let mut response = Response::new(Body::from(encoder.finish().unwrap()));
            response
                .headers_mut()
                .insert("content-encoding", HeaderValue::from_static("gzip"));
            response
        }
        Some(Reply::Slow(first)) => {
            let chunks = futures::stream::unfold(0u8, move |step| {
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, std::io::Error>(bytes::Bytes::from(first)), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            Some((Ok(bytes::Bytes::from_static(b"</committees>")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::new(Body::from_stream(chunks))
        }
    };
    if response.status() == StatusCode::OK && !response.headers().contains_key("content-type") {
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
    }
    response
}

fn at(raw: &str) -> DateTime<Utc> {
    raw.parse().unwrap()
}

fn slug(raw: &str) -> CouncilSlug {
    raw.parse().unwrap()
}

fn own(path: &str) -> Vec<u8> {
    std::fs::read(format!("{OWN}/{path}")).unwrap()
}

/// Settings for polling the test server: loopback allowed, short timeouts, a small body cap,
/// and each named council's committee system (or feed) pointed at it.
fn settings_for(
    server: &TestServer,
    councils: &[(&str, SupportLevel, Option<&str>)],
    feeds: &[(&str, &str)],
) -> Settings {
    let mut settings = Settings::defaults();
    settings.fetch.allow_private_networks = true;
    settings.fetch.timeout_seconds = 2;
    settings.fetch.connect_timeout_seconds = 2;
    settings.fetch.max_body_bytes = 64 * 1024;
    settings.fetch.backoff_base_seconds = 10;
    settings.fetch.backoff_max_seconds = 3_600;
    settings.poll.window_days_back = 30;
    settings.poll.window_days_ahead = 60;
    for (council, support, prefix) in councils {
        let entry = settings.councils.entry((*council).to_owned()).or_default();
        entry.support = Some(*support);
        entry.base_url = prefix.map(|p| format!("{}{p}", server.base));
    }
    for (council, path) in feeds {
        let entry: &mut CouncilOverride =
            settings.councils.entry((*council).to_owned()).or_default();
        entry.feeds.push(format!("{}{path}", server.base));
    }
    settings
}

async fn poll(store: &Store, settings: &Settings, councils: &[&str]) -> PollReport {
    let filter = PollFilter {
        councils: councils.iter().map(|c| slug(c)).collect(),
        support: None,
        due_only: false,
    };
    poll_sources(store, settings, &filter).await.unwrap()
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

/// Serves the real Manchester captures under `/manchester`; `None` when they are not here.
fn serve_manchester(server: &TestServer) -> Option<()> {
    let dir = format!("{REAL}/moderngov-ws");
    let read = |name: &str| std::fs::read(format!("{dir}/{name}")).ok();
    let Some(committees) = read("manchester_GetCommittees_trimmed.xml") else {
        eprintln!("skipping: the real ModernGov captures are not in {dir}");
        return None;
    };
    let ws = "/manchester/mgWebService.asmx";
    server.document(&format!("{ws}/GetCommittees"), committees);
    server.document(
        &format!("{ws}/GetMeetings#144"),
        read("manchester_GetMeetings_audit_cancelled_and_confirmed.xml")?,
    );
    server.document(
        &format!("{ws}/GetMeetings#163"),
        own("moderngov/GetMeetings_empty.xml"),
    );
    server.document(
        &format!("{ws}/GetMeeting#4966"),
        read("manchester_GetMeeting_4966_cancelled_no_agenda.xml")?,
    );
    server.document(
        &format!("{ws}/GetMeeting#4967"),
        read("manchester_GetMeeting_4967_with_minutes_and_docs.xml")?,
    );
    Some(())
}

#[tokio::test]
async fn manchester_meetings_are_stored_and_a_second_poll_of_the_same_data_writes_nothing() {
    council_digest::telemetry::init_for_tests();
    let server = TestServer::start().await;
    if serve_manchester(&server).is_none() {
        return;
    }
    let settings = settings_for(
        &server,
        &[("manchester", SupportLevel::Full, Some("/manchester"))],
        &[],
    );
    let clock = Clock::fixed(at("2026-02-01T09:00:00Z"));
    for db in fresh_databases(clock.clone()).await {
        clock.set(at("2026-02-01T09:00:00Z"));
        let store = &db.store;
        store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        let council = store.council_by_slug(&slug("manchester")).await.unwrap();

        let lists_before = server.requests_to("/manchester/mgWebService.asmx/GetMeetings#144");
        let first = poll(store, &settings, &["manchester"]).await;
        assert_eq!(first.sources.len(), 1, "{}", db.label);
        let outcome = &first.sources[0];
        assert_eq!(
            outcome.status,
            PollStatus::Stored,
            "{}: {:?}",
            db.label,
            outcome.error
        );
        assert_eq!(
            (outcome.new, outcome.changed, outcome.unchanged),
            (2, 0, 0),
            "{}",
            db.label
        );

        let meetings = store
            .meetings_between(
                council.id,
                at("2026-01-01T00:00:00Z"),
                at("2026-03-01T00:00:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(meetings.len(), 2, "{}", db.label);
        let cancelled = &meetings[0];
        assert_eq!(cancelled.status, "Cancelled");
        assert!(cancelled.cancelled);
        assert_eq!(cancelled.starts_at, at("2026-01-13T10:00:00Z"));
        assert_eq!(cancelled.committee_title, "Audit Committee");
        assert!(cancelled.agenda_items.is_empty());

        let confirmed = &meetings[1];
        assert_eq!(confirmed.status, "Confirmed");
        assert!(!confirmed.cancelled);
        assert_eq!(confirmed.starts_at, at("2026-02-10T10:00:00Z"));
        assert_eq!(confirmed.ends_at, Some(at("2026-02-10T14:00:00Z")));
        assert_eq!(confirmed.timezone, "Europe/London");
        assert!(
            confirmed
                .location
                .as_deref()
                .unwrap()
                .starts_with("Council Antechamber"),
            "{:?}",
            confirmed.location
        );
        assert_eq!(
            confirmed.title,
            "Audit Committee - Tuesday, 10th February, 2026 10.00 am"
        );
        assert_eq!(
            confirmed.url.as_deref(),
            Some(
                format!(
                    "{}/manchester/ieListDocuments.aspx?CId=144&MId=4967",
                    server.base
                )
                .as_str()
            )
        );
        let items: Vec<(Option<&str>, &str)> = confirmed
            .agenda_items
            .iter()
            .map(|i| (i.number.as_deref(), i.title.as_str()))
            .collect();
        assert_eq!(
            items,
            [(Some("1."), "Minutes"), (Some("9."), "Work Programme")]
        );
        assert!(
            confirmed
                .documents
                .iter()
                .any(|d| d.url.ends_with("mgConvert2PDF.aspx?ID=60860")),
            "{:?}",
            confirmed.documents
        );
        assert_eq!(confirmed.attendees[0].name, "Councillor Basil Curley");
        let changes = store
            .meeting_changes_since(council.id, at("2026-01-01T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(changes.len(), 2, "{}", db.label);
        assert!(changes.iter().all(|c| c.kind == ChangeKind::New));

        // The same answers an hour later: nothing is written (updated_at would move).
        let counts = store.meeting_row_counts().await.unwrap();
        clock.set(at("2026-02-01T10:00:00Z"));
        let second = poll(store, &settings, &["manchester"]).await;
        let outcome = &second.sources[0];
        assert_eq!(outcome.status, PollStatus::Stored, "{}", db.label);
        assert_eq!(
            (outcome.new, outcome.changed, outcome.unchanged),
            (0, 0, 2),
            "{}",
            db.label
        );
        assert_eq!(
            store.meeting_row_counts().await.unwrap(),
            counts,
            "{}",
            db.label
        );
        let since_first = at("2026-02-01T09:30:00Z").timestamp();
        for table in ["meetings", "committees", "http_cache"] {
            let written = count(
                store,
                &format!("SELECT COUNT(*) FROM {table} WHERE updated_at > {since_first}"),
            )
            .await;
            assert_eq!(written, 0, "{}: {table} was written", db.label);
        }
        let health = store.council_sources(council.id).await.unwrap();
        assert_eq!(health[0].last_success_at, Some(at("2026-02-01T10:00:00Z")));
        assert_eq!(health[0].consecutive_failures, 0);
        // The expired committee (312) was not asked for its meetings.
        assert_eq!(
            server.requests_to("/manchester/mgWebService.asmx/GetMeetings#312"),
            0
        );
        assert_eq!(
            server.requests_to("/manchester/mgWebService.asmx/GetMeetings#144") - lists_before,
            2
        );
    }
}

#[tokio::test]
async fn a_moved_meeting_and_one_gone_from_the_list_are_recorded_not_deleted() {
    council_digest::telemetry::init_for_tests();
    let server = TestServer::start().await;
    if serve_manchester(&server).is_none() {
        return;
    }
    let settings = settings_for(
        &server,
        &[("manchester", SupportLevel::Full, Some("/manchester"))],
        &[],
    );
    let clock = Clock::fixed(at("2026-02-01T09:00:00Z"));
    for db in fresh_databases(clock.clone()).await {
        clock.set(at("2026-02-01T09:00:00Z"));
        serve_manchester(&server);
        let store = &db.store;
        store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        let council = store.council_by_slug(&slug("manchester")).await.unwrap();
        poll(store, &settings, &["manchester"]).await;

        // 4967 moves to 11.00 am and 4966 drops out of the committee's list.
        let ws = "/manchester/mgWebService.asmx";
        let list = std::fs::read_to_string(format!(
            "{REAL}/moderngov-ws/manchester_GetMeetings_audit_cancelled_and_confirmed.xml"
        ))
        .unwrap();
        let start = list.find("<meeting>").unwrap();
        let end = list.find("</meeting>").unwrap() + "</meeting>".len();
        let list = format!("{}{}", &list[..start], &list[end..]).replace("10.00 am", "11.00 am");
        server.document(&format!("{ws}/GetMeetings#144"), list.into_bytes());
        let detail = std::fs::read_to_string(format!(
            "{REAL}/moderngov-ws/manchester_GetMeeting_4967_with_minutes_and_docs.xml"
        ))
        .unwrap()
        .replacen(
            "<meetingtime>10.00 am</meetingtime>",
            "<meetingtime>11.00 am</meetingtime>",
            1,
        );
        server.document(&format!("{ws}/GetMeeting#4967"), detail.into_bytes());

        clock.set(at("2026-02-02T09:00:00Z"));
        let report = poll(store, &settings, &["manchester"]).await;
        let outcome = &report.sources[0];
        assert_eq!(
            (outcome.changed, outcome.withdrawn),
            (1, 1),
            "{}: {outcome:?}",
            db.label
        );

        let changes = store
            .meeting_changes_since(council.id, at("2026-02-02T00:00:00Z"))
            .await
            .unwrap();
        let kinds: Vec<ChangeKind> = changes.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [ChangeKind::Moved, ChangeKind::Withdrawn],
            "{}",
            db.label
        );
        assert_eq!(
            changes[0].old_value.as_deref(),
            Some("2026-02-10T10:00:00+00:00")
        );
        assert_eq!(
            changes[0].new_value.as_deref(),
            Some("2026-02-10T11:00:00+00:00")
        );
        assert_eq!(changes[0].seen_at, at("2026-02-02T09:00:00Z"));

        let meetings = store
            .meetings_between(
                council.id,
                at("2026-01-01T00:00:00Z"),
                at("2026-03-01T00:00:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(
            meetings.len(),
            2,
            "{}: a withdrawn meeting is kept",
            db.label
        );
        assert_eq!(meetings[0].withdrawn_at, Some(at("2026-02-02T09:00:00Z")));
        assert_eq!(meetings[1].starts_at, at("2026-02-10T11:00:00Z"));
        assert_eq!(meetings[1].withdrawn_at, None);
    }
}

#[tokio::test]
async fn each_failure_is_recorded_against_its_own_source_and_the_others_are_unaffected() {
    council_digest::telemetry::init_for_tests();
    let server = TestServer::start().await;
    let ws = "mgWebService.asmx";
    // A healthy limited council with ETags, and an iCalendar feed with an ETag.
    server.document(
        &format!("/good/{ws}/GetCommittees"),
        own("moderngov/GetCommittees.xml"),
    );
    server.document(
        &format!("/good/{ws}/GetMeetings#7"),
        own("moderngov/GetMeetings_odd_values.xml"),
    );
    server.document("/feeds/planning.ics", own("ical/series_with_overrides.ics"));
    // One failure each.
    server.set(
        &format!("/busy/{ws}/GetCommittees"),
        Reply::Status {
            status: 429,
            headers: vec![("retry-after", "120".to_owned())],
            body: "slow down".to_owned(),
        },
    );
    server.set(
        &format!("/broken/{ws}/GetCommittees"),
        Reply::Status {
            status: 500,
            headers: vec![],
            body: "oops".to_owned(),
        },
    );
    server.set(
        &format!("/slow/{ws}/GetCommittees"),
        Reply::Slow(b"<?xml version=\"1.0\"?><committees>".to_vec()),
    );
    let mut oversize = b"<?xml version=\"1.0\"?><committees>".to_vec();
    oversize.extend(std::iter::repeat_n(b' ', 100 * 1024));
    oversize.extend_from_slice(b"</committees>");
    server.document(&format!("/big/{ws}/GetCommittees"), oversize);
    server.set(
        &format!("/login/{ws}/GetCommittees"),
        Reply::Status {
            status: 200,
            headers: vec![("content-type", "text/html".to_owned())],
            body: "<!DOCTYPE html><html><body>Please sign in</body></html>".to_owned(),
        },
    );

    let councils = [
        ("adur", SupportLevel::Limited, Some("/good")),
        ("arun", SupportLevel::Limited, Some("/busy")),
        ("ashfield", SupportLevel::Limited, Some("/broken")),
        ("ashford", SupportLevel::Limited, Some("/slow")),
        ("babergh", SupportLevel::Limited, Some("/big")),
        ("barnet", SupportLevel::Limited, Some("/login")),
    ];
    let settings = settings_for(&server, &councils, &[("adur", "/feeds/planning.ics")]);
    let names: Vec<&str> = councils.iter().map(|c| c.0).collect();
    let clock = Clock::fixed(at("2026-03-01T09:00:00Z"));
    for db in fresh_databases(clock.clone()).await {
        clock.set(at("2026-03-01T09:00:00Z"));
        let store = &db.store;
        store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();

        let report = poll(store, &settings, &names).await;
        let by_council = |report: &PollReport, council: &str, kind: &str| {
            report
                .sources
                .iter()
                .find(|s| s.council.as_str() == council && s.kind.as_str() == kind)
                .cloned()
                .unwrap()
        };
        let good = by_council(&report, "adur", "moderngov");
        assert_eq!(
            good.status,
            PollStatus::Stored,
            "{}: {:?}",
            db.label,
            good.error
        );
        assert_eq!(good.new, 2, "{}", db.label);
        // Limited support: the meeting list only, no meeting details; no deleted committee.
        assert_eq!(
            server.requests_to("/good/mgWebService.asmx/GetMeeting#501"),
            0
        );
        assert_eq!(
            server.requests_to("/good/mgWebService.asmx/GetMeetings#8"),
            0
        );
        let calendar = by_council(&report, "adur", "ical");
        assert_eq!(
            calendar.status,
            PollStatus::Stored,
            "{}: {:?}",
            db.label,
            calendar.error
        );
        assert_eq!(calendar.new, 5, "{}", db.label);
        let expected = [
            ("arun", "HTTP 429"),
            ("ashfield", "HTTP 500"),
            ("ashford", "timed out"),
            ("babergh", "more than 65536 bytes"),
            ("barnet", "HTML page"),
        ];
        for (council, error) in expected {
            let outcome = by_council(&report, council, "moderngov");
            assert_eq!(
                outcome.status,
                PollStatus::Failed,
                "{}: {council}",
                db.label
            );
            let message = outcome.error.unwrap_or_default();
            assert!(
                message.contains(error),
                "{}: {council}: {message}",
                db.label
            );
        }
        assert_eq!(report.totals().failed, 5, "{}", db.label);

        let failing = store.list_sources(true).await.unwrap();
        let mut failing_councils: Vec<&str> =
            failing.iter().map(|s| s.council_slug.as_str()).collect();
        failing_councils.sort();
        assert_eq!(
            failing_councils,
            ["arun", "ashfield", "ashford", "babergh", "barnet"]
        );
        let now = at("2026-03-01T09:00:00Z");
        for source in &failing {
            assert_eq!(source.consecutive_failures, 1, "{}", source.council_slug);
            assert_eq!(source.failing_since, Some(now));
            assert_eq!(source.last_success_at, None);
            let wait = (source.next_poll_at.unwrap() - now).num_seconds();
            if source.council_slug == "arun" {
                assert_eq!(wait, 120, "Retry-After is honoured");
            } else {
                assert!((5..=10).contains(&wait), "{}: {wait}", source.council_slug);
            }
        }
        let adur = store.council_by_slug(&slug("adur")).await.unwrap();
        for source in store.council_sources(adur.id).await.unwrap() {
            assert_eq!(source.consecutive_failures, 0);
            assert_eq!(source.last_success_at, Some(now));
            assert_eq!(source.last_error, None);
        }

        // An hour later the calendar and the limited council's lists answer 304, and the
        // failing sources fail again, one more each.
        clock.set(at("2026-03-01T10:00:00Z"));
        let before = server.conditional_requests("/feeds/planning.ics");
        let second = poll(store, &settings, &names).await;
        assert_eq!(
            server.conditional_requests("/feeds/planning.ics"),
            before + 1,
            "{}",
            db.label
        );
        let calendar = by_council(&second, "adur", "ical");
        assert_eq!(calendar.status, PollStatus::NotModified, "{}", db.label);
        let good = by_council(&second, "adur", "moderngov");
        assert_eq!(
            good.status,
            PollStatus::NotModified,
            "{}: {good:?}",
            db.label
        );
        assert_eq!((good.new, good.changed), (0, 0), "{}", db.label);
        let adur_meetings = store
            .meetings_between(
                adur.id,
                at("2026-01-01T00:00:00Z"),
                at("2026-12-31T00:00:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(
            adur_meetings.len(),
            7,
            "{}: 2 ModernGov + 5 calendar",
            db.label
        );
        assert!(
            adur_meetings.iter().all(|m| m.withdrawn_at.is_none()),
            "{}",
            db.label
        );
        for source in store.list_sources(true).await.unwrap() {
            assert_eq!(source.consecutive_failures, 2, "{}", source.council_slug);
            assert_eq!(
                source.failing_since,
                Some(now),
                "failing since the first failure"
            );
        }

        // With due_only, sources still waiting out their backoff are left alone.
        let due = poll_sources(
            store,
            &settings,
            &PollFilter {
                councils: names.iter().map(|c| slug(c)).collect(),
                support: None,
                due_only: true,
            },
        )
        .await
        .unwrap();
        let polled: Vec<&str> = due.sources.iter().map(|s| s.council.as_str()).collect();
        assert_eq!(polled, ["adur", "adur"], "{}", db.label);

        // Once the waits are over (at most 20 s after two failures, 120 s for Retry-After),
        // every failing source is tried again: a failing source is never given up on.
        clock.set(at("2026-03-01T10:05:00Z"));
        let due = poll_sources(
            store,
            &settings,
            &PollFilter {
                councils: names.iter().map(|c| slug(c)).collect(),
                support: None,
                due_only: true,
            },
        )
        .await
        .unwrap();
        assert_eq!(due.sources.len(), 7, "{}", db.label);
        assert_eq!(due.totals().failed, 5, "{}", db.label);

        let agents = server.state.lock().unwrap().user_agents.clone();
        assert_eq!(
            agents,
            [settings.fetch.user_agent.clone()].into(),
            "{}",
            db.label
        );
    }
}

#[tokio::test]
async fn a_malformed_answer_stores_nothing_and_keeps_the_earlier_data() {
    council_digest::telemetry::init_for_tests();
    let server = TestServer::start().await;
    let ws = "/good/mgWebService.asmx";
    server.document(
        &format!("{ws}/GetCommittees"),
        own("moderngov/GetCommittees.xml"),
    );
    server.document(
        &format!("{ws}/GetMeetings#7"),
        own("moderngov/GetMeetings_odd_values.xml"),
    );
    let bare = "<?xml version=\"1.0\"?><meeting><meetingid>501</meetingid>\
                <meetingdate>01/07/2026</meetingdate><meetingstatus>Confirmed</meetingstatus>\
                <meetingtime>To be confirmed</meetingtime><agendaitems></agendaitems></meeting>";
    server.document(&format!("{ws}/GetMeeting#501"), bare.as_bytes().to_vec());
    server.document(
        &format!("{ws}/GetMeeting#502"),
        own("moderngov/GetMeeting_relative_links.xml"),
    );
    let settings = settings_for(&server, &[("adur", SupportLevel::Full, Some("/good"))], &[]);
    let clock = Clock::fixed(at("2026-06-20T09:00:00Z"));
    for db in fresh_databases(clock.clone()).await {
        clock.set(at("2026-06-20T09:00:00Z"));
        server.document(
            &format!("{ws}/GetMeeting#502"),
            own("moderngov/GetMeeting_relative_links.xml"),
        );
        let store = &db.store;
        store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        let first = poll(store, &settings, &["adur"]).await;
        assert_eq!(
            first.sources[0].new, 2,
            "{}: {:?}",
            db.label, first.sources[0].error
        );
        let counts = store.meeting_row_counts().await.unwrap();
        assert_eq!(
            counts["documents"], 1,
            "{}: one public document, on 502",
            db.label
        );

        // The detail of the second meeting is cut off half-way: the whole poll is refused.
        let full = own("moderngov/GetMeeting_relative_links.xml");
        server.document(
            &format!("{ws}/GetMeeting#502"),
            full[..full.len() / 2].to_vec(),
        );
        clock.set(at("2026-06-20T10:00:00Z"));
        let second = poll(store, &settings, &["adur"]).await;
        let outcome = &second.sources[0];
        assert_eq!(outcome.status, PollStatus::Failed, "{}", db.label);
        assert!(
            outcome.error.as_deref().unwrap().contains("GetMeeting"),
            "{outcome:?}"
        );
        assert_eq!(
            store.meeting_row_counts().await.unwrap(),
            counts,
            "{}",
            db.label
        );
        let adur = store.council_by_slug(&slug("adur")).await.unwrap();
        let health = store.council_sources(adur.id).await.unwrap();
        assert_eq!(health[0].last_success_at, Some(at("2026-06-20T09:00:00Z")));
        assert_eq!(health[0].consecutive_failures, 1);
        assert!(
            health[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("GetMeeting")
        );
    }
}

#[tokio::test]
async fn feed_items_become_notices_and_display_form_items_become_meetings() {
    council_digest::telemetry::init_for_tests();
    let server = TestServer::start().await;
    server.document("/news.rss", own("feeds/news_windows1252.rss"));
    server.document("/meetings.rss", own("feeds/moderngov_meetings.rss"));
    let settings = settings_for(
        &server,
        &[],
        &[
            ("amber-valley", "/news.rss"),
            ("amber-valley", "/meetings.rss"),
        ],
    );
    let clock = Clock::fixed(at("2026-02-03T09:00:00Z"));
    for db in fresh_databases(clock.clone()).await {
        let store = &db.store;
        store
            .sync_councils(Registry::builtin(), &settings)
            .await
            .unwrap();
        let report = poll(store, &settings, &["amber-valley"]).await;
        let totals = report.totals();
        assert_eq!(
            (totals.sources, totals.failed, totals.new),
            (2, 0, 5),
            "{}",
            db.label
        );

        let council = store.council_by_slug(&slug("amber-valley")).await.unwrap();
        let notices = store
            .notices_between(
                council.id,
                at("2025-01-01T00:00:00Z"),
                at("2027-01-01T00:00:00Z"),
            )
            .await
            .unwrap();
        let titles: Vec<&str> = notices.iter().map(|n| n.title.as_str()).collect();
        // Newest first; undated items count from when they were first seen (now).
        assert_eq!(
            titles,
            [
                "Road closure on the High Street",
                "Bin collections",
                "Council tax: £1,234 for a band D home",
                "New documents published",
            ],
            "{}",
            db.label
        );
        let meetings = store
            .meetings_between(
                council.id,
                at("2025-09-01T00:00:00Z"),
                at("2025-10-01T00:00:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(meetings.len(), 1, "{}", db.label);
        assert_eq!(meetings[0].starts_at, at("2025-09-10T17:00:00Z"));
        assert_eq!(
            meetings[0].committee_title,
            "Children, Young and People Scrutiny Panel"
        );

        let again = poll(store, &settings, &["amber-valley"]).await;
        assert!(
            again
                .sources
                .iter()
                .all(|s| s.status == PollStatus::NotModified),
            "{}: {:?}",
            db.label,
            again.sources
        );
    }
}

#[tokio::test]
async fn requests_to_one_host_and_in_all_stay_within_their_limits() {
    council_digest::telemetry::init_for_tests();
    let server = TestServer::start().await;
    let councils = ["adur", "arun", "ashfield", "ashford"];
    for council in councils {
        server.set(
            &format!("/{council}/mgWebService.asmx/GetCommittees"),
            Reply::Delayed(own("moderngov/GetMeetings_empty.xml")),
        );
    }
    let prefixes: Vec<String> = councils.iter().map(|c| format!("/{c}")).collect();
    let entries: Vec<(&str, SupportLevel, Option<&str>)> = councils
        .iter()
        .zip(&prefixes)
        .map(|(c, p)| (*c, SupportLevel::Limited, Some(p.as_str())))
        .collect();
    let mut settings = settings_for(&server, &entries, &[]);
    let clock = Clock::fixed(at("2026-03-01T09:00:00Z"));
    let db = fresh_databases(clock).await.remove(0);
    db.store
        .sync_councils(Registry::builtin(), &settings)
        .await
        .unwrap();

    // All four councils share the host 127.0.0.1.
    for (per_host, global, most) in [(1, 16, 1), (3, 2, 2)] {
        settings.fetch.per_host_concurrency = per_host;
        settings.fetch.global_concurrency = global;
        server.state.lock().unwrap().most_in_flight = 0;
        let report = poll(&db.store, &settings, &councils).await;
        // Each answer is the wrong document (a meeting list), so each source fails alike.
        assert_eq!(report.totals().failed, 4);
        assert_eq!(
            server.state.lock().unwrap().most_in_flight,
            most,
            "{per_host}/{global}"
        );
    }
}

#[tokio::test]
async fn compressed_answers_are_read_and_the_size_cap_applies_after_decompression() {
    council_digest::telemetry::init_for_tests();
    let server = TestServer::start().await;
    server.set(
        "/planning.ics",
        Reply::Gzip(own("ical/series_with_overrides.ics")),
    );
    // About 100 bytes on the wire, 1 MiB once decompressed.
    let mut bomb = b"BEGIN:VCALENDAR\r\n".to_vec();
    bomb.extend(std::iter::repeat_n(b'X', 1024 * 1024));
    server.set("/bomb.ics", Reply::Gzip(bomb));
    let settings = settings_for(
        &server,
        &[],
        &[("amber-valley", "/planning.ics"), ("angus", "/bomb.ics")],
    );
    let clock = Clock::fixed(at("2026-03-01T09:00:00Z"));
    let db = fresh_databases(clock).await.remove(0);
    db.store
        .sync_councils(Registry::builtin(), &settings)
        .await
        .unwrap();
    let report = poll(&db.store, &settings, &["amber-valley", "angus"]).await;
    let planning = &report.sources[0];
    assert_eq!(planning.council.as_str(), "amber-valley");
    assert_eq!(
        (planning.status, planning.new),
        (PollStatus::Stored, 5),
        "{planning:?}"
    );
    let bomb = &report.sources[1];
    assert_eq!(bomb.status, PollStatus::Failed);
    assert!(
        bomb.error
            .as_deref()
            .unwrap()
            .contains("more than 65536 bytes"),
        "{bomb:?}"
    );
}

#[tokio::test]
async fn a_redirect_to_anything_but_http_or_https_is_not_followed() {
    let server = TestServer::start().await;
    for (path, target) in [
        ("/to-file", "file:///etc/passwd".to_owned()),
        ("/to-ftp", "ftp://example.org/x.ics".to_owned()),
    ] {
        server.set(
            path,
            Reply::Status {
                status: 302,
                headers: vec![("location", target)],
                body: String::new(),
            },
        );
    }
    server.document("/fine.ics", own("ical/series_with_overrides.ics"));
    server.set(
        "/to-fine",
        Reply::Status {
            status: 301,
            headers: vec![("location", format!("{}/fine.ics", server.base))],
            body: String::new(),
        },
    );
    let mut settings = Settings::defaults().fetch;
    settings.allow_private_networks = true;
    settings.allow_file_urls = true;
    let fetcher = council_digest::sources::fetch::Fetcher::new(&settings).unwrap();
    let calendar = council_digest::sources::fetch::Expect::Calendar;
    for path in ["/to-file", "/to-ftp"] {
        let result = fetcher
            .fetch(&format!("{}{path}", server.base), None, calendar)
            .await;
        let err = result.unwrap_err().to_string();
        // Not followed: the redirect itself is the (failed) answer.
        assert!(
            err.contains("HTTP 302") || err.contains("redirect"),
            "{path}: {err}"
        );
    }
    let followed = fetcher
        .fetch(&format!("{}/to-fine", server.base), None, calendar)
        .await
        .unwrap();
    assert!(matches!(
        followed,
        council_digest::sources::fetch::Fetched::Body { .. }
    ));
}
