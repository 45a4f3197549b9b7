//! The daemon end to end, as one real process, driven only through its public interfaces.
//!
//! A local HTTP server answers the ModernGov web-service paths and serves iCalendar files; three
//! registry councils are pointed at it through the settings. The `council-digest` binary runs
//! with `run` on a controlled clock (Monday 9 February 2026, a minute before the weekly run), a
//! real SMTP server on loopback, and SQLite or PostgreSQL. The test subscribes residents and a
//! professional over HTTP, confirms each through the link in the e-mail the SMTP server
//! received, lets promotion make two councils full, lets the weekly job build and send, and
//! checks the digests: meetings at the right local times, the cancelled meeting marked, agenda
//! items and document links, one-click unsubscribe, nobody mailed twice.
//!
//! One copy runs on the real captures in ../shared/fixtures/real (skipped with a notice when
//! that folder is absent) and one on the project's own fixtures in tests/fixtures/e2e.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use support::smtp::{FaultMode, SmtpServer};

const BIN: &str = env!("CARGO_BIN_EXE_council-digest");
/// The daemon's clock starts here: Monday 9 February 2026 (GMT), 06:59:30, half a minute
/// before the default weekly run at 07:00 in ISO week 2026-W07.
const CLOCK_START: &str = "2026-02-09T06:59:30Z";

/// Where the fixture files of one run come from, and which councils they feed.
struct FixtureSet {
    /// Council whose ModernGov base is pointed at the local server.
    moderngov_council: &'static str,
    committees: PathBuf,
    /// GetMeetings response per committee id; other committees get an empty list.
    meetings: BTreeMap<String, PathBuf>,
    /// GetMeeting response per meeting id.
    meeting: BTreeMap<String, PathBuf>,
    empty_meetings: PathBuf,
    /// (council slug, file served as its iCalendar feed)
    calendars: Vec<(&'static str, PathBuf)>,
}

fn real_fixtures() -> Option<FixtureSet> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real");
    if !root.is_dir() {
        return None;
    }
    let mg = root.join("moderngov-ws");
    Some(FixtureSet {
        moderngov_council: "manchester",
        committees: mg.join("manchester_GetCommittees_trimmed.xml"),
        meetings: BTreeMap::from([(
            "144".to_owned(),
            mg.join("manchester_GetMeetings_audit_cancelled_and_confirmed.xml"),
        )]),
        meeting: BTreeMap::from([
            (
                "4966".to_owned(),
                mg.join("manchester_GetMeeting_4966_cancelled_no_agenda.xml"),
            ),
            (
                "4967".to_owned(),
                mg.join("manchester_GetMeeting_4967_with_minutes_and_docs.xml"),
            ),
        ]),
        empty_meetings: own_dir().join("moderngov/GetMeetings_empty.xml"),
        calendars: vec![
            (
                "amber-valley",
                root.join("ics/stpaul_schools_google_recurrence_ids.ics"),
            ),
            ("angus", root.join("ics/chicago_clihtf_tribe_events.ics")),
        ],
    })
}

fn own_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/e2e")
}

fn own_fixtures() -> FixtureSet {
    let mg = own_dir().join("moderngov");
    FixtureSet {
        moderngov_council: "hammersmith-and-fulham",
        committees: mg.join("GetCommittees.xml"),
        meetings: BTreeMap::from([("501".to_owned(), mg.join("GetMeetings_501.xml"))]),
        meeting: BTreeMap::from([
            ("9001".to_owned(), mg.join("GetMeeting_9001.xml")),
            ("9002".to_owned(), mg.join("GetMeeting_9002.xml")),
        ]),
        empty_meetings: mg.join("GetMeetings_empty.xml"),
        calendars: vec![
            ("amber-valley", own_dir().join("ics/council-meetings.ics")),
            ("angus", own_dir().join("ics/council-meetings.ics")),
        ],
    }
}

// ---------------------------------------------------------------------------------------------
// The council systems' side: a real HTTP server on loopback.

#[derive(Clone)]
struct Served {
    files: Arc<FixtureSet>,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn serve_fixture(
    State(served): State<Served>,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    served.requests.lock().unwrap().push(uri.to_string());
    let path = uri.path();
    let files = &served.files;
    let file = if path.ends_with("/mgWebService.asmx/GetCommittees") {
        Some(files.committees.clone())
    } else if path.ends_with("/mgWebService.asmx/GetMeetings") {
        let committee = query.get("lCommitteeId").cloned().unwrap_or_default();
        Some(
            files
                .meetings
                .get(&committee)
                .cloned()
                .unwrap_or(files.empty_meetings.clone()),
        )
    } else if path.ends_with("/mgWebService.asmx/GetMeeting") {
        query
            .get("lMeetingId")
            .and_then(|id| files.meeting.get(id))
            .cloned()
    } else if let Some(slug) = path.strip_prefix("/ics/") {
        let slug = slug.trim_end_matches(".ics");
        files
            .calendars
            .iter()
            .find(|(s, _)| *s == slug)
            .map(|(_, p)| p.clone())
    } else {
        None
    };
    match file {
        Some(file) => {
            let body = std::fs::read(&file).unwrap();
            let kind = if path.starts_with("/ics/") {
                "text/calendar"
            } else {
                "text/xml"
            };
            ([(header::CONTENT_TYPE, kind)], body).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such fixture").into_response(),
    }
}

async fn start_council_server(files: FixtureSet) -> (String, Served) {
    let served = Served {
        files: Arc::new(files),
        requests: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(serve_fixture)
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, served)
}

// ---------------------------------------------------------------------------------------------
// The daemon as a real process.

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(config: &Path, workdir: &Path) -> Daemon {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(["run", "--clock", CLOCK_START])
            .current_dir(workdir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("daemon: {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no daemon log line containing {needle:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn settings_text(
    database_url: &str,
    web_port: u16,
    smtp_port: u16,
    councils: &str,
    dir: &Path,
) -> String {
    format!(
        r#"
[database]
url = "{database_url}"
[web]
bind = "127.0.0.1:{web_port}"
base_url = "http://127.0.0.1:{web_port}"
[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout_seconds = 10
[mail]
from = "Council Digest <digest@example.org>"
unsubscribe_mailto = "unsubscribe@example.org"
outbox_dir = "{outbox}"
[tokens]
signing_key = "end-to-end-test-key-end-to-end-test-key"
[fetch]
allow_private_networks = true
[poll]
window_days_back = 60
window_days_ahead = 60
[schedule]
poll_full = "*/3 * * * * *"
poll_limited = "0 0 0 1 1 *"
# Only the three councils pointed at the local server are polled; no other council's site.
poll_on_start = false
promotion = "*/2 * * * * *"
digest = "0 0 7 * * Mon"
delivery = "*/2 * * * * *"
[ranking]
resident_weight = 1.0
professional_weight = 3.0
[promotion]
threshold = 2.0
max_full_councils = 10
max_per_run = 5
[digest]
days_back = 28
days_ahead = 7
{councils}
"#,
        outbox = dir.join("outbox").display()
    )
}

// ---------------------------------------------------------------------------------------------
// A visitor's browser without JavaScript: keeps the anti-forgery cookie, reads form tokens.

struct Visitor {
    client: reqwest::Client,
    cookie: Option<String>,
}

impl Visitor {
    fn new() -> Visitor {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Visitor {
            client,
            cookie: None,
        }
    }

    fn remember_cookie(&mut self, headers: &HeaderMap) {
        if let Some(value) = headers
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
        {
            self.cookie = value.split(';').next().map(str::to_owned);
        }
    }

    async fn get(&mut self, url: &str) -> (StatusCode, String) {
        let mut request = self.client.get(url);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        self.remember_cookie(response.headers());
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    async fn post(&mut self, url: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut request = self.client.post(url).form(fields);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        self.remember_cookie(response.headers());
        let status = response.status();
        (status, response.text().await.unwrap())
    }
}

fn form_guard(page: &str) -> String {
    let marker = "name=\"guard\" value=\"";
    let start = page
        .find(marker)
        .expect("the page has a form with an anti-forgery token");
    let rest = &page[start + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Subscribes through the council page's form, as a person would.
async fn subscribe(base: &str, slug: &str, email: &str, organisation: Option<&str>) {
    let mut visitor = Visitor::new();
    let (status, page) = visitor.get(&format!("{base}/councils/{slug}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let guard = form_guard(&page);
    let kind = if organisation.is_some() {
        "professional"
    } else {
        "resident"
    };
    let fields = [
        ("guard", guard.as_str()),
        ("email", email),
        ("kind", kind),
        ("organisation", organisation.unwrap_or("")),
        ("website", ""),
    ];
    let (status, page) = visitor
        .post(&format!("{base}/councils/{slug}/subscribe"), &fields)
        .await;
    assert!(
        status.is_success() || status.is_redirection(),
        "subscribe: {status} {page}"
    );
}

/// Opens the confirmation link from the e-mail and presses the button.
async fn confirm(link: &str) {
    let mut visitor = Visitor::new();
    let (status, page) = visitor.get(link).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let guard = form_guard(&page);
    let (status, page) = visitor.post(link, &[("guard", guard.as_str())]).await;
    assert!(
        status.is_success() || status.is_redirection(),
        "confirm: {status} {page}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reading the mail the SMTP server received.

struct Mail {
    to: String,
    subject: String,
    text: String,
    html: String,
    list_unsubscribe: Option<String>,
    list_unsubscribe_post: Option<String>,
}

fn parse_mail(raw: &support::smtp::Received) -> Mail {
    let message = mail_parser::MessageParser::default()
        .parse(&raw.data)
        .expect("a MIME message");
    let header_text = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    Mail {
        to: raw.rcpt_tos.join(","),
        subject: message.subject().unwrap_or_default().to_owned(),
        text: message
            .body_text(0)
            .map(|t| t.replace("\r\n", "\n"))
            .unwrap_or_default(),
        html: message
            .body_html(0)
            .map(|t| t.into_owned())
            .unwrap_or_default(),
        list_unsubscribe: header_text("List-Unsubscribe"),
        list_unsubscribe_post: header_text("List-Unsubscribe-Post"),
    }
}

async fn wait_for_mail(
    smtp: &SmtpServer,
    limit: Duration,
    done: impl Fn(&[Mail]) -> bool,
) -> Vec<Mail> {
    let deadline = Instant::now() + limit;
    loop {
        let mails: Vec<Mail> = smtp.received().iter().map(parse_mail).collect();
        if done(&mails) {
            return mails;
        }
        if Instant::now() > deadline {
            let subjects: Vec<String> = mails
                .iter()
                .map(|m| format!("{} <- {}", m.to, m.subject))
                .collect();
            panic!(
                "the expected mail did not arrive; got:\n{}",
                subjects.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn link_after(text: &str, prefix: &str) -> String {
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no link {prefix} in:\n{text}"));
    text[start..].split_whitespace().next().unwrap().to_owned()
}

fn is_digest(mail: &Mail) -> bool {
    mail.subject.contains("(2026-W07)")
}

fn digest_for<'a>(mails: &'a [Mail], to: &str) -> &'a Mail {
    let found: Vec<&Mail> = mails
        .iter()
        .filter(|m| is_digest(m) && m.to == to)
        .collect();
    assert_eq!(found.len(), 1, "exactly one digest for {to}");
    found[0]
}

/// The text of one meeting's block in a plain-text digest: from its title line to the next
/// meeting or section.
fn meeting_block<'a>(text: &'a str, title_part: &str) -> &'a str {
    let start = text
        .find(title_part)
        .unwrap_or_else(|| panic!("no {title_part:?} in:\n{text}"));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let rest = &text[line_start..];
    let end = rest[1..]
        .find("\n* ")
        .or_else(|| rest[1..].find("\n=="))
        .map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

/// The meetings listed under one day heading of a plain-text digest.
fn day_section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{text}"));
    let rest = &text[start + heading.len() + 2..];
    let next_heading = rest.match_indices('\n').map(|(i, _)| i + 1).find(|&i| {
        rest[i..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
    });
    &rest[..next_heading.unwrap_or(rest.len())]
}

// ---------------------------------------------------------------------------------------------
// The scenario.

/// What one fixture set must produce, worked out by hand from its files.
struct Expected {
    /// A line in the ModernGov council's digest with the meeting's local time and title.
    confirmed_meeting: (&'static str, &'static str),
    confirmed_items: &'static [&'static str],
    confirmed_document_url: &'static str,
    cancelled_meeting: &'static str,
    /// (title, local time) of an iCalendar meeting in amber-valley's digest.
    calendar_meeting: (&'static str, &'static str),
    /// (day heading, a meeting listed that day, a meeting not listed that day)
    calendar_day: Option<(&'static str, &'static str, &'static str)>,
}

async fn run_scenario(files: FixtureSet, expected: Expected, database_url: String) {
    let dir = tempfile::tempdir().unwrap();
    let moderngov_council = files.moderngov_council;
    let calendar_slugs: Vec<&str> = files.calendars.iter().map(|(s, _)| *s).collect();
    let (council_base, served) = start_council_server(files).await;
    let smtp = SmtpServer::start(FaultMode::Accept);
    let web_port = free_port();
    let base = format!("http://127.0.0.1:{web_port}");

    let mut councils = format!(
        "[councils.{moderngov_council}]\nbase_url = \"{council_base}/{moderngov_council}\"\n"
    );
    for slug in &calendar_slugs {
        councils.push_str(&format!(
            "[councils.{slug}]\nfeeds = [\"{council_base}/ics/{slug}.ics\"]\n"
        ));
    }
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        settings_text(&database_url, web_port, smtp.port, &councils, dir.path()),
    )
    .unwrap();

    let mut daemon = Daemon::start(&config, dir.path());
    daemon.wait_for("web server listening", Duration::from_secs(60));

    // Residents A and D, and a professional C; B follows a council that stays limited too.
    let a = "ann.resident@example.org";
    let b = "bob.resident@example.org";
    let c = "cat.reporter@example.org";
    let d = "dev.resident@example.org";
    subscribe(&base, moderngov_council, a, None).await;
    subscribe(&base, "amber-valley", b, None).await;
    subscribe(&base, "angus", b, None).await;
    subscribe(&base, moderngov_council, c, Some("Local Gazette")).await;
    subscribe(&base, "amber-valley", d, None).await;

    let confirmations = wait_for_mail(&smtp, Duration::from_secs(20), |mails| {
        mails
            .iter()
            .filter(|m| m.subject.starts_with("Confirm"))
            .count()
            == 5
    })
    .await;
    for mail in confirmations
        .iter()
        .filter(|m| m.subject.starts_with("Confirm"))
    {
        assert!(
            mail.list_unsubscribe_post.is_none(),
            "no one-click on a confirmation"
        );
        confirm(&link_after(&mail.text, &format!("{base}/confirm/"))).await;
    }

    // Promotion (threshold 2): the ModernGov council has 1 resident + 1 professional x 3 = 4,
    // amber-valley 2 residents = 2; angus 1 resident = 1 stays limited, 1 more needed.
    let mails = wait_for_mail(&smtp, Duration::from_secs(60), |mails| {
        mails.iter().filter(|m| is_digest(m)).count() >= 4
    })
    .await;

    let mail_a = digest_for(&mails, a);
    assert_eq!(
        mail_a.list_unsubscribe_post.as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let unsubscribe = mail_a
        .list_unsubscribe
        .clone()
        .expect("List-Unsubscribe on a digest");
    assert!(
        unsubscribe.contains(&format!("<{base}/unsubscribe/")),
        "{unsubscribe}"
    );
    assert!(
        unsubscribe.contains("<mailto:unsubscribe@example.org"),
        "{unsubscribe}"
    );

    let (time, title) = expected.confirmed_meeting;
    let block = meeting_block(&mail_a.text, title);
    assert!(block.starts_with(&format!("* {time}")), "{block}");
    for item in expected.confirmed_items {
        assert!(block.contains(item), "item {item:?} in:\n{block}");
    }
    assert!(block.contains(expected.confirmed_document_url), "{block}");
    assert!(
        mail_a
            .html
            .contains(&expected.confirmed_document_url.replace('&', "&amp;"))
    );
    assert!(
        !mail_a.html.to_ascii_lowercase().contains("<script"),
        "{}",
        mail_a.html
    );
    let cancelled = meeting_block(&mail_a.text, expected.cancelled_meeting);
    assert!(cancelled.contains("CANCELLED"), "{cancelled}");

    let mail_b = digest_for(&mails, b);
    let (title, time) = expected.calendar_meeting;
    let block = meeting_block(&mail_b.text, title);
    assert!(block.starts_with(&format!("* {time}")), "{block}");
    if let Some((day, present, absent)) = expected.calendar_day {
        let section = day_section(&mail_b.text, day);
        assert!(
            section.contains(present),
            "{present:?} on {day}:\n{section}"
        );
        assert!(
            !section.contains(absent),
            "{absent:?} not on {day}:\n{section}"
        );
    }
    assert!(
        mail_b.text.contains("Councils with limited support"),
        "{}",
        mail_b.text
    );
    assert!(mail_b.text.contains("Angus Council"), "{}", mail_b.text);
    digest_for(&mails, c);
    digest_for(&mails, d);

    // One-click unsubscribe, as a mail provider does it: a bare POST, no cookie, no form token.
    let one_click = link_after(&unsubscribe, &format!("{base}/unsubscribe/"));
    let one_click = one_click.trim_end_matches(['>', ',']);
    let response = reqwest::Client::new()
        .post(one_click)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "one-click: {}",
        response.status()
    );
    let listed = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "subscribers",
            "list",
            "--json",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let people: serde_json::Value = serde_json::from_str(&listed).expect("subscribers as JSON");
    let ann = people
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["email"] == a)
        .unwrap_or_else(|| panic!("{a} listed: {listed}"));
    assert!(ann.to_string().contains("unsubscribed"), "{ann}");

    // Two more delivery ticks: still exactly one digest per subscriber.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mails: Vec<Mail> = smtp.received().iter().map(parse_mail).collect();
    for person in [a, b, c, d] {
        digest_for(&mails, person);
    }
    assert!(
        served
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("GetMeeting?")),
        "full support fetched meeting details"
    );

    let status = daemon.terminate();
    assert!(status.success(), "daemon exit: {status}");
}

fn real_expected() -> Expected {
    Expected {
        // Tuesday 10 February 2026, 10.00 am GMT: meeting 4967.
        confirmed_meeting: ("10.00 am", "Audit Committee - Tuesday, 10th February, 2026"),
        confirmed_items: &["1. Minutes", "9. Work Programme"],
        confirmed_document_url: "https://democracy.manchester.gov.uk/mgConvert2PDF.aspx?ID=60860",
        // Tuesday 13 January 2026: meeting 4966, cancelled.
        cancelled_meeting: "Audit Committee - Tuesday, 13th January, 2026",
        // St Paul: the occurrence of 10 February was moved to Wednesday 4 February, 4.30 pm in
        // Chicago (CST, UTC-6), the meeting's own local time.
        calendar_meeting: ("Committee of the Board Meeting", "4.30 pm"),
        // ...and is no longer listed on Tuesday 10 February, where the ribbon cutting (4.00 pm
        // Chicago time) still is.
        calendar_day: Some((
            "Tuesday 10 February 2026",
            "Hidden River Middle School Ribbon Cutting",
            "Committee of the Board Meeting",
        )),
    }
}

fn own_expected() -> Expected {
    Expected {
        confirmed_meeting: (
            "6.00 pm",
            "Planning & Highways Committee - Tuesday, 10th February",
        ),
        confirmed_items: &[
            "1. Apologies for absence",
            "2. Land at Mill Lane & Canal Street",
        ],
        confirmed_document_url: "/hammersmith-and-fulham/documents/s88001/Officer%20report%20Mill%20Lane.pdf",
        cancelled_meeting: "Planning & Highways Committee - Thursday, 12th February",
        calendar_meeting: ("Licensing Sub-Committee", "2.00 pm"),
        calendar_day: Some((
            "Friday 13 February 2026",
            "Overview and Scrutiny Board",
            "Licensing",
        )),
    }
}

async fn postgres_url() -> Option<String> {
    let admin = council_digest::store::testing::postgres_admin_url()?;
    Some(council_digest::store::testing::fresh_postgres_url(&admin).await)
}

fn sqlite_url() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("council-digest.db").display()
    );
    (dir, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_runs_end_to_end_on_real_captures_with_sqlite() {
    let Some(files) = real_fixtures() else {
        eprintln!("skipped: ../shared/fixtures/real is absent; the own-fixture copy still runs");
        return;
    };
    let (_dir, url) = sqlite_url();
    run_scenario(files, real_expected(), url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_runs_end_to_end_on_real_captures_with_postgres() {
    let Some(files) = real_fixtures() else {
        eprintln!("skipped: ../shared/fixtures/real is absent; the own-fixture copy still runs");
        return;
    };
    let Some(url) = postgres_url().await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    run_scenario(files, real_expected(), url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_runs_end_to_end_on_own_fixtures_with_sqlite() {
    let (_dir, url) = sqlite_url();
    run_scenario(own_fixtures(), own_expected(), url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_runs_end_to_end_on_own_fixtures_with_postgres() {
    let Some(url) = postgres_url().await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    run_scenario(own_fixtures(), own_expected(), url).await;
}
