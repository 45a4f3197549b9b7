//! Polling at national scale: all 382 councils, served by a local HTTP server that adds 200 ms
//! of latency to every response, spread over loopback hosts (127.0.1.x) as ModernGov installs
//! are spread over shared hosts: first 48 hosts, where the global limit binds, then 4, where
//! the per-host limit does.
//!
//! Run with `cargo bench --bench poll` (figures go to stdout; BENCHMARKS.md records them).
//! It checks, and prints:
//! - the first (full) poll's wall time against the bound 2 x (latency x requests / limit),
//!   where limit = min(global limit, hosts x per-host limit);
//! - that no host ever saw more requests at once than the per-host limit;
//! - the second poll, where every response is 304 Not Modified, as a fraction of the first in
//!   bytes transferred, CPU time and database writes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use council_digest::clock::Clock;
use council_digest::domain::Platform;
use council_digest::registry::Registry;
use council_digest::settings::{CouncilOverride, Settings};
use council_digest::sources::poll::{PollFilter, PollStatus, poll_sources};

const LATENCY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    not_modified: AtomicU64,
    body_bytes: AtomicU64,
    in_flight: Mutex<HashMap<String, (u64, u64)>>,
}

impl Counters {
    fn enter(&self, host: &str) {
        let mut map = self.in_flight.lock().unwrap();
        let entry = map.entry(host.to_owned()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
    }

    fn leave(&self, host: &str) {
        if let Some(entry) = self.in_flight.lock().unwrap().get_mut(host) {
            entry.0 -= 1;
        }
    }

    fn max_per_host(&self) -> u64 {
        self.in_flight
            .lock()
            .unwrap()
            .values()
            .map(|(_, max)| *max)
            .max()
            .unwrap_or(0)
    }
}

/// Synthetic committee-system responses in the real formats, two live committees per council.
fn body_for(uri: &Uri, query: &HashMap<String, String>) -> Option<(&'static str, String)> {
    let path = uri.path();
    let slug = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("council");
    if path.ends_with("/mgWebService.asmx/GetCommittees") {
        let committees: String = (1..=2)
            .map(|i| {
                format!(
                    "<committee><committeeid>{i}</committeeid><committeetitle>{slug} committee \
                     {i}</committeetitle><committeedeleted>False</committeedeleted>\
                     <committeeexpired>False</committeeexpired></committee>"
                )
            })
            .collect();
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><committees><committeescount> 2\
             </committeescount>{committees}</committees>"
        );
        return Some(("text/xml", xml));
    }
    if path.ends_with("/mgWebService.asmx/GetMeetings") {
        let committee: u64 = query.get("lCommitteeId")?.parse().ok()?;
        let meetings: String = (0..3)
            .map(|k| {
                let id = committee * 100 + k;
                format!(
                    "<meeting><meetingid>{id}</meetingid><meetingdate>{:02}/03/2026\
                     </meetingdate><meetingstatus>Confirmed</meetingstatus><meetingtime>\
                     6.00 pm</meetingtime></meeting>",
                    10 + k
                )
            })
            .collect();
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><getmeetings><meetingscount> 3\
             </meetingscount><committeescount> 1</committeescount><committee><committeeid>\
             {committee}</committeeid><committeetitle>{slug} committee {committee}\
             </committeetitle><committeemeetings>{meetings}</committeemeetings></committee>\
             </getmeetings>"
        );
        return Some(("text/xml", xml));
    }
    if path.ends_with(".ics") {
        let events: String = (0..5)
            .map(|k| {
                format!(
                    "BEGIN:VEVENT\r\nUID:{slug}-{k}@bench\r\nDTSTAMP:20260201T000000Z\r\n\
                     DTSTART;TZID=Europe/London:202603{:02}T100000\r\nSUMMARY:{slug} meeting \
                     {k}\r\nEND:VEVENT\r\n",
                    10 + k
                )
            })
            .collect();
        let ics = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n{events}END:VCALENDAR\r\n"
        );
        return Some(("text/calendar", ics));
    }
    None
}

async fn serve(
    State(counters): State<Arc<Counters>>,
    ConnectInfo(_peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    counters.enter(&host);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(LATENCY).await;
    let response = match body_for(&uri, &query) {
        Some((kind, body)) => {
            let etag = format!("\"{:016x}\"", fxhash(&body));
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == etag);
            if matches {
                counters.not_modified.fetch_add(1, Ordering::Relaxed);
                (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()
            } else {
                counters
                    .body_bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                (
                    [
                        (header::CONTENT_TYPE, kind.to_owned()),
                        (header::ETAG, etag),
                    ],
                    body,
                )
                    .into_response()
            }
        }
        None => StatusCode::NOT_FOUND.into_response(),
    };
    counters.leave(&host);
    response
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

async fn count_rows(store: &council_digest::store::Store) -> i64 {
    use sqlx::Row;
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM meetings) + (SELECT COUNT(*) FROM meeting_changes) \
         + (SELECT COUNT(*) FROM committees) AS n",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    row.try_get("n").unwrap()
}

#[tokio::main]
async fn main() {
    // 48 hosts: the global limit binds. 4 hosts: the per-host limit binds.
    for hosts in [48, 4] {
        println!("== {hosts} hosts ==");
        run(hosts).await;
    }
}

async fn run(hosts: usize) {
    let counters = Arc::new(Counters::default());
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(counters.clone());
    let first = tokio::net::TcpListener::bind("127.0.1.1:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    let mut listeners = vec![first];
    for host in 2..=hosts {
        listeners.push(
            tokio::net::TcpListener::bind(("127.0.1.".to_owned() + &host.to_string(), port))
                .await
                .unwrap(),
        );
    }
    for listener in listeners {
        let app = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }

    let mut settings = Settings::defaults();
    settings.fetch.allow_private_networks = true;
    let registry = Registry::builtin();
    for (i, council) in registry.councils().iter().enumerate() {
        let host = format!("http://127.0.1.{}:{port}", i % hosts + 1);
        let slug = council.slug.to_string();
        let entry = match council.platform {
            Platform::ModernGov => CouncilOverride {
                base_url: Some(format!("{host}/{slug}")),
                ..CouncilOverride::default()
            },
            _ => CouncilOverride {
                feeds: vec![format!("{host}/{slug}/meetings.ics")],
                ..CouncilOverride::default()
            },
        };
        settings.councils.insert(slug, entry);
    }
    settings.validate().expect("bench settings are valid");

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let now = chrono::DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")
        .unwrap()
        .to_utc();
    let store = council_digest::store::Store::connect(&url, 8, Clock::fixed(now))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.sync_councils(registry, &settings).await.unwrap();

    let limit = settings
        .fetch
        .global_concurrency
        .min(hosts * settings.fetch.per_host_concurrency);
    let mut runs = Vec::new();
    for label in ["first (full) poll", "second (all 304) poll"] {
        let requests_before = counters.requests.load(Ordering::Relaxed);
        let bytes_before = counters.body_bytes.load(Ordering::Relaxed);
        let rows_before = count_rows(&store).await;
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let report = poll_sources(&store, &settings, &PollFilter::default())
            .await
            .unwrap();
        let wall = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        let requests = counters.requests.load(Ordering::Relaxed) - requests_before;
        let bytes = counters.body_bytes.load(Ordering::Relaxed) - bytes_before;
        let rows = count_rows(&store).await - rows_before;
        let failed = report
            .sources
            .iter()
            .filter(|s| s.status == PollStatus::Failed)
            .count();
        let bound = 2.0 * LATENCY.as_secs_f64() * requests as f64 / limit as f64;
        println!(
            "{label}: {} sources ({failed} failed), {requests} requests, {wall:.2} s wall \
             (bound {bound:.2} s = 2 x 0.2 s x {requests} / {limit}), {cpu:.2} s CPU, \
             {bytes} body bytes, {rows} rows added",
            report.sources.len()
        );
        assert_eq!(
            failed,
            0,
            "no source fails: {:?}",
            report.sources.iter().find(|s| s.error.is_some())
        );
        runs.push((wall, cpu, bytes, rows, bound));
    }
    let per_host = counters.max_per_host();
    println!(
        "most requests in flight to one host: {per_host} (limit {})",
        settings.fetch.per_host_concurrency
    );
    println!(
        "304 responses in the second poll: {}",
        counters.not_modified.load(Ordering::Relaxed)
    );
    let (first, second) = (runs[0], runs[1]);
    println!(
        "second / first: wall {:.2}, CPU {:.2}, bytes {:.3}, rows {}/{}",
        second.0 / first.0,
        if first.1 > 0.0 {
            second.1 / first.1
        } else {
            0.0
        },
        second.2 as f64 / first.2.max(1) as f64,
        second.3,
        first.3
    );
    assert!(
        first.0 <= first.4,
        "the full poll took longer than its bound"
    );
    assert!(
        per_host as usize <= settings.fetch.per_host_concurrency,
        "per-host limit exceeded"
    );
}
