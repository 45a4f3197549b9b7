//! Delivery benchmark (not a timed test): one week for many subscribers over the 382 councils,
//! built, rendered and sent to Postfix's `smtp-sink` on loopback, beside Postfix's
//! `smtp-source` sending the same number of messages of the same size over the same number of
//! connections to the same sink, in one run. The drain and smtp-source take turns
//! (`BENCH_ROUNDS` drains, default 3, with smtp-source before, between and after them); each
//! drain's rate is divided by the mean of the smtp-source runs beside it and the median ratio
//! is reported. Peak memory is compared between two sizes, each measured in its own process.
//!
//! Needs Debian's `postfix` package (for `/usr/sbin/smtp-sink` and `/usr/sbin/smtp-source`).
//!
//! ```text
//! cargo bench --bench delivery              # 10,000 and 100,000 subscribers, release build
//! BENCH_SIZES=2000 cargo bench --bench delivery
//! ```
//!
//! `BENCH_CONNECTIONS` sets the SMTP connections (`smtp.pool_size`, and smtp-source's sessions;
//! default 8) and `BENCH_WORKERS` the concurrent senders (`delivery.workers`; default twice the
//! connections, so that connections stay busy while sent marks are written). The database is
//! a SQLite file in a temporary folder. The drain runs as a task on the runtime's threads, as
//! the daemon's delivery job does. Results are printed as a table for BENCHMARKS.md.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime, TimeZone};
use council_digest::clock::Clock;
use council_digest::delivery::{Drain, MailRenderer, Mailer};
use council_digest::digest::build::{BuildMode, build_week};
use council_digest::domain::{IsoWeek, UK_ZONE};
use council_digest::mail::message::{render_claimed, render_delivery};
use council_digest::registry::Registry;
use council_digest::settings::{Settings, TlsMode};
use council_digest::store::Store;
use council_digest::store::ledger::ClaimedDelivery;
use council_digest::store::meetings::{DetailState, NewAgendaItem, NewMeeting, NewMeetingDetail};
use council_digest::tokens::SigningKey;
use futures::StreamExt;
use sqlx::Row;

const CHILD_ENV: &str = "COUNCIL_DIGEST_BENCH_CHILD";

fn main() {
    if let Ok(size) = std::env::var(CHILD_ENV) {
        let size: usize = size.parse().expect("a subscriber count");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let result = runtime.block_on(run_one(size));
        println!("RESULT {}", serde_json::to_string(&result).expect("json"));
        return;
    }

    // `cargo bench` passes `--bench`; nothing else is accepted.
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".to_owned())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SIZES: comma-separated counts")
        })
        .collect();
    for tool in ["/usr/sbin/smtp-sink", "/usr/sbin/smtp-source"] {
        if !Path::new(tool).exists() {
            eprintln!("skipped: {tool} is missing (apt-get install -y postfix)");
            return;
        }
    }

    let mut results = Vec::new();
    for size in sizes {
        eprintln!("== {size} subscribers");
        let output = Command::new(std::env::current_exe().expect("this program's path"))
            .env(CHILD_ENV, size.to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("run a benchmark process");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("the {size} run failed: {stdout}"));
        let result: serde_json::Value = serde_json::from_str(line).expect("a result");
        results.push(result);
    }

    println!();
    println!(
        "| subscribers | councils | build /s | render /s | build+render /s | send /s \
         (render+SMTP+ledger, median) | SMTP alone /s | smtp-source /s (median) | ratio \
         (median) | ratio per round | message bytes | connections | workers | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        let rounds: Vec<String> = r["ratios"]
            .as_array()
            .map(|ratios| {
                ratios
                    .iter()
                    .map(|x| format!("{:.2}", x.as_f64().unwrap_or(0.0)))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} | {:.0} |",
            r["subscribers"],
            r["councils"],
            r["build_per_s"].as_f64().unwrap_or(0.0),
            r["render_per_s"].as_f64().unwrap_or(0.0),
            r["build_render_per_s"].as_f64().unwrap_or(0.0),
            r["send_per_s"].as_f64().unwrap_or(0.0),
            r["transport_per_s"].as_f64().unwrap_or(0.0),
            r["smtp_source_per_s"].as_f64().unwrap_or(0.0),
            r["ratio"].as_f64().unwrap_or(0.0),
            rounds.join(", "),
            r["message_bytes"],
            r["connections"],
            r["workers"],
            r["peak_rss_mb"].as_f64().unwrap_or(0.0),
        );
    }
}

/// A Postfix smtp-sink on a free loopback port, killed on drop.
struct Sink {
    child: Child,
    addr: SocketAddr,
}

impl Sink {
    fn start() -> Sink {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "1024"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Sink { child, addr }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn run_one(size: usize) -> serde_json::Value {
    let connections: u32 = std::env::var("BENCH_CONNECTIONS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sink = Sink::start();
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2 * connections as usize);
    let settings = bench_settings(dir.path(), sink.addr.port(), connections, workers);
    // Monday 9 February 2026, 07:00 in London: the weekly run.
    let now = UK_ZONE
        .with_ymd_and_hms(2026, 2, 9, 7, 0, 0)
        .single()
        .expect("a UK time")
        .to_utc();
    let clock = Clock::fixed(now);
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url, 8, clock.clone())
        .await
        .expect("open the database");
    store.migrate().await.expect("migrate");

    let started = Instant::now();
    let councils = seed(&store, size, now.timestamp()).await;
    eprintln!(
        "seeded {size} subscribers over {councils} councils in {:?}",
        started.elapsed()
    );

    let mailer = Mailer::from_settings(&settings, SigningKey::from_bytes(&[9; 32]), clock)
        .expect("a mailer");
    let week = IsoWeek::containing(now);

    let started = Instant::now();
    let built = build_week(
        &store,
        &settings,
        &mailer.renderer,
        &mailer.ctx,
        week,
        None,
        BuildMode::Queue,
    )
    .await
    .expect("build the week");
    let build_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        built.queued as usize, size,
        "every subscriber's digest queued: {built:?}"
    );
    eprintln!("built {} digests in {build_secs:.1} s", built.built);

    // Rendering alone, as the drain does it (claimed batches of 500), over the first 10,000
    // queued deliveries.
    let queued: Vec<ClaimedDelivery> = sqlx::query(
        "SELECT id, dedupe_key, kind, subscriber_id, digest_id, payload FROM deliveries \
         ORDER BY id LIMIT 10000",
    )
    .fetch_all(store.pool())
    .await
    .expect("list deliveries")
    .iter()
    .map(|row| ClaimedDelivery {
        id: row.get("id"),
        dedupe_key: row.get("dedupe_key"),
        kind: row.get("kind"),
        subscriber_id: row.get("subscriber_id"),
        digest_id: row.get("digest_id"),
        payload: row.get("payload"),
        attempts: 1,
        suppressed: false,
    })
    .collect();
    let ids: Vec<i64> = queued.iter().map(|d| d.id).collect();
    let started = Instant::now();
    let mut total_bytes = 0usize;
    let mut sample = Vec::new();
    for batch in queued.chunks(500) {
        let rendered =
            render_claimed(&store, &settings, &mailer.renderer, &mailer.ctx, batch).await;
        for result in rendered {
            let bytes = result.expect("render a digest").message.formatted();
            total_bytes += bytes.len();
            if sample.is_empty() {
                sample = bytes;
            }
        }
    }
    let render_secs = started.elapsed().as_secs_f64();
    let message_bytes = total_bytes / ids.len().max(1);
    eprintln!(
        "rendered {} messages in {render_secs:.1} s, {message_bytes} bytes each",
        ids.len()
    );

    // The machine is shared and its speed changes from minute to minute, so the drain and
    // smtp-source take turns: smtp-source, drain, smtp-source, drain, ..., smtp-source. Each
    // drain is compared with the mean of the smtp-source runs on either side of it, and the
    // median of those ratios is reported. Between drains every delivery is queued again.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mailer = std::sync::Arc::new(mailer);
    let mut source_rates = vec![run_smtp_source(
        &sink,
        dir.path(),
        &sample,
        size,
        connections,
    )];
    let mut send_rates = Vec::new();
    for round in 1..=rounds {
        if round > 1 {
            queue_again(&store).await;
        }
        let started = Instant::now();
        let report = tokio::spawn(drain_once(
            store.clone(),
            settings.clone(),
            std::sync::Arc::clone(&mailer),
        ))
        .await
        .expect("the drain task")
        .expect("drain");
        let send_secs = started.elapsed().as_secs_f64();
        assert_eq!(report.sent as usize, size, "{report:?}");
        send_rates.push(size as f64 / send_secs);
        source_rates.push(run_smtp_source(
            &sink,
            dir.path(),
            &sample,
            size,
            connections,
        ));
        eprintln!(
            "round {round}: smtp-source {:.0}/s, drain {:.0}/s, smtp-source {:.0}/s",
            source_rates[round - 1],
            send_rates[round - 1],
            source_rates[round]
        );
    }
    let ratios: Vec<f64> = send_rates
        .iter()
        .enumerate()
        .map(|(i, send)| send / ((source_rates[i] + source_rates[i + 1]) / 2.0))
        .collect();

    // The transport alone: one rendered message sent `size` times over the same connections,
    // without rendering or the ledger.
    let message = render_delivery(&store, &settings, &mailer.renderer, &mailer.ctx, ids[0])
        .await
        .expect("render a digest")
        .message;
    let started = Instant::now();
    let transport = &mailer.transport;
    let message = &message;
    futures::stream::iter(0..size)
        .map(|_| async move { transport.send(message).await.expect("send") })
        .buffer_unordered(connections as usize)
        .collect::<Vec<()>>()
        .await;
    let transport_secs = started.elapsed().as_secs_f64();
    eprintln!("the transport alone sent {size} in {transport_secs:.1} s");

    serde_json::json!({
        "subscribers": size,
        "councils": councils,
        "build_per_s": size as f64 / build_secs,
        "render_per_s": ids.len() as f64 / render_secs,
        "build_render_per_s": 1.0 / (build_secs / size as f64 + render_secs / ids.len() as f64),
        "send_per_s": median(&send_rates),
        "transport_per_s": size as f64 / transport_secs,
        "smtp_source_per_s": median(&source_rates),
        "ratio": median(&ratios),
        "ratios": ratios,
        "message_bytes": message_bytes,
        "connections": connections,
        "workers": workers,
        "peak_rss_mb": peak_rss_kb() as f64 / 1024.0,
    })
}

/// One drain, run as a task on the runtime's threads as the daemon's delivery job is.
async fn drain_once(
    store: Store,
    settings: Settings,
    mailer: std::sync::Arc<Mailer>,
) -> Result<council_digest::delivery::DrainReport, council_digest::delivery::DeliveryError> {
    let render = MailRenderer {
        store: &store,
        settings: &settings,
        renderer: &mailer.renderer,
        ctx: &mailer.ctx,
    };
    Drain::new(&store, &settings.delivery, &mailer.transport)
        .run(&render, None)
        .await
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Puts every delivery back in the queue, as if the week had just been built.
async fn queue_again(store: &Store) {
    sqlx::query(
        "UPDATE deliveries SET state = 'queued', attempts = 0, lease_until = NULL, \
         leased_by = NULL, last_error = NULL, message_id = NULL, sent_at = NULL",
    )
    .execute(store.pool())
    .await
    .expect("queue the deliveries again");
}

fn bench_settings(dir: &Path, port: u16, connections: u32, workers: usize) -> Settings {
    let mut settings = Settings::defaults();
    settings.smtp.host = "127.0.0.1".to_owned();
    settings.smtp.port = port;
    settings.smtp.tls = TlsMode::None;
    settings.smtp.pool_size = connections;
    settings.smtp.timeout_seconds = 30;
    settings.delivery.workers = workers;
    settings.delivery.rate_per_second = 1_000_000.0;
    settings.delivery.lease_seconds = 300;
    settings.digest.send_when_all_limited = true;
    settings.mail.outbox_dir = dir.join("outbox");
    settings
}

/// The registry, every council full, three meetings each in the week with four agenda items,
/// and `size` residents following one or two councils each. Returns the number of councils.
async fn seed(store: &Store, size: usize, now: i64) -> usize {
    store
        .sync_councils(Registry::builtin(), &Settings::defaults())
        .await
        .expect("load the registry");
    sqlx::query("UPDATE councils SET support = 'full'")
        .execute(store.pool())
        .await
        .expect("make every council full");
    let councils: Vec<(i64, String)> = sqlx::query("SELECT id, name FROM councils ORDER BY id")
        .fetch_all(store.pool())
        .await
        .expect("list councils")
        .iter()
        .map(|row| (row.get("id"), row.get("name")))
        .collect();

    let monday = NaiveDate::from_ymd_opt(2026, 2, 9).expect("a date");
    let mut tx = store.begin_write().await.expect("begin");
    for (index, (council_id, name)) in councils.iter().enumerate() {
        let source_id: i64 = sqlx::query(
            "INSERT INTO sources (council_id, kind, url, active, created_at) \
             VALUES ($1, 'moderngov', $2, 0, $3) RETURNING id",
        )
        .bind(council_id)
        .bind(format!(
            "https://bench.invalid/{council_id}/mgWebService.asmx"
        ))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .expect("add a source")
        .get("id");
        for (n, committee) in ["Planning Committee", "Cabinet", "Licensing Sub-Committee"]
            .iter()
            .enumerate()
        {
            let date = monday + chrono::Duration::days((index + n) as i64 % 5);
            let time = NaiveTime::from_hms_opt(10 + n as u32 * 3, 30, 0).expect("a time");
            let starts = UK_ZONE
                .from_local_datetime(&date.and_time(time))
                .single()
                .expect("a UK time")
                .to_utc();
            let meeting = NewMeeting {
                external_id: format!("{council_id}-{n}"),
                committee_external_id: None,
                committee_title: (*committee).to_owned(),
                title: format!("{committee} - {}", date.format("%A %-d %B %Y")),
                local_date: date,
                local_time: Some(time),
                timezone: "Europe/London".to_owned(),
                starts_at: starts,
                ends_at: None,
                all_day: false,
                status: "confirmed".to_owned(),
                location: Some(format!("Council Chamber, {name} Civic Centre")),
                url: Some(format!(
                    "https://bench.invalid/{council_id}/ieListDocuments?MId={n}"
                )),
                parse_warning: None,
                detail: DetailState::Fetched(NewMeetingDetail {
                    agenda_items: (1..=4)
                        .map(|i| NewAgendaItem {
                            external_id: format!("{council_id}-{n}-{i}"),
                            number: Some(i.to_string()),
                            title: format!("Application 26/0{i}12/FUL: land north of Mill Lane"),
                            text_html: Some(format!(
                                "<p>To consider the report of the Director of Place on item \
                                 {i}, including the officer's recommendation to approve \
                                 subject to conditions and a section 106 agreement.</p>"
                            )),
                            text_plain: Some(format!(
                                "To consider the report of the Director of Place on item {i}, \
                                 including the officer's recommendation to approve subject to \
                                 conditions and a section 106 agreement."
                            )),
                            minutes_html: None,
                            minutes_plain: None,
                        })
                        .collect(),
                    documents: Vec::new(),
                    attendees: Vec::new(),
                }),
            };
            council_digest::store::meetings::upsert_meeting(
                &mut tx,
                *council_id,
                source_id,
                None,
                &meeting,
                now,
            )
            .await
            .expect("add a meeting");
        }
    }
    tx.commit().await.expect("commit meetings");

    for chunk_start in (0..size).step_by(5000) {
        let mut tx = store.begin_write().await.expect("begin");
        for i in chunk_start..(chunk_start + 5000).min(size) {
            let subscriber: i64 = sqlx::query(
                "INSERT INTO subscribers (email, kind, hard_failures, created_at) \
                 VALUES ($1, 'resident', 0, $2) RETURNING id",
            )
            .bind(format!("resident{i}@bench.example.org"))
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .expect("add a subscriber")
            .get("id");
            let first = councils[i % councils.len()].0;
            let second = councils[(i * 7 + 3) % councils.len()].0;
            let follows: &[i64] = if i % 2 == 0 && first != second {
                &[first, second]
            } else {
                &[first]
            };
            for council in follows {
                sqlx::query(
                    "INSERT INTO subscriptions (subscriber_id, council_id, state, created_at, \
                     confirmed_at) VALUES ($1, $2, 'confirmed', $3, $3)",
                )
                .bind(subscriber)
                .bind(council)
                .bind(now)
                .execute(&mut *tx)
                .await
                .expect("add a subscription");
            }
        }
        tx.commit().await.expect("commit subscribers");
    }
    councils.len()
}

/// Sends `count` copies of `message` with smtp-source over `connections` sessions that stay
/// open (`-d`), and returns its rate in messages per second.
fn run_smtp_source(sink: &Sink, dir: &Path, message: &[u8], count: usize, connections: u32) -> f64 {
    // smtp-source adds CRLF to each line itself: give it LF lines.
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    let file = dir.join("sample.eml");
    std::fs::write(&file, text).expect("write the sample message");
    let started = Instant::now();
    let status = Command::new("/usr/sbin/smtp-source")
        .arg("-d")
        .args(["-s", &connections.to_string()])
        .args(["-m", &count.to_string()])
        .args(["-f", "digest@localhost", "-t", "reader@bench.example.org"])
        .arg("-F")
        .arg(&file)
        .arg(format!("127.0.0.1:{}", sink.addr.port()))
        .stdout(Stdio::null())
        .status()
        .expect("run smtp-source");
    assert!(status.success(), "smtp-source failed");
    count as f64 / started.elapsed().as_secs_f64()
}

/// The process's peak resident memory (VmHWM), in kB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
