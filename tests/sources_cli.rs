//! The `poll`, `meetings list` and `sources list` commands, run as the real binary on a SQLite
//! file, polling the project's own iCalendar and RSS fixtures through `file://` feeds.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const OWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn run(config: &Path, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_council-digest"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "{args:?} printed no JSON ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn polled_feeds_are_listed_as_meetings_with_local_and_utc_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{db}\"\n[fetch]\nallow_file_urls = true\n\
             [poll]\nwindow_days_back = 3650\nwindow_days_ahead = 3650\n\
             [log]\nfilter = \"warn\"\n\
             [councils.amber-valley]\nfeeds = [\"file://{OWN}/ical/outlook_windows_zones.ics\", \
             \"file://{OWN}/feeds/news_windows1252.rss\"]\n",
            db = dir.path().join("cd.db").display()
        ),
    )
    .unwrap();

    let first = run(&config, &["poll", "--council", "amber-valley", "--json"]);
    assert_eq!(first["totals"]["sources"], 2, "{first:#}");
    assert_eq!(first["totals"]["failed"], 0, "{first:#}");
    // Four calendar events and three news items (the fourth has neither title nor link).
    assert_eq!(first["totals"]["new"], 7, "{first:#}");

    let meetings = run(
        &config,
        &[
            "meetings",
            "list",
            "--council",
            "amber-valley",
            "--from",
            "2026-01-01",
            "--to",
            "2026-12-31",
            "--json",
        ],
    );
    let meetings = meetings.as_array().unwrap();
    let committees: Vec<&str> = meetings
        .iter()
        .map(|m| m["committee"].as_str().unwrap())
        .collect();
    assert_eq!(
        committees,
        [
            "Area Forum",
            "Cabinet, with guests",
            "Bank Holiday",
            "Full Council"
        ]
    );
    let council = &meetings[3];
    assert_eq!(council["council"], "amber-valley");
    assert_eq!(
        council["title"],
        "Full Council - Tuesday, 15th September, 2026 7.00 pm"
    );
    assert_eq!(council["starts_at"], "2026-09-15T19:00:00+01:00");
    assert_eq!(council["starts_at_utc"], "2026-09-15T18:00:00Z");
    assert_eq!(council["status"], "Scheduled");
    assert_eq!(council["agenda_items"], serde_json::json!([]));
    assert_eq!(council["documents"], serde_json::json!([]));
    let forum = &meetings[0];
    assert_eq!(forum["starts_at"], "2026-01-20T19:00:00+00:00");
    assert_eq!(
        forum["title"],
        "Area Forum - Tuesday, 20th January, 2026 7.00 pm"
    );
    assert_eq!(
        meetings[1]["location"].as_str(),
        Some("Salle d’Honneur; Town Hall")
    );

    let sources = run(&config, &["sources", "list", "--json"]);
    let ours: Vec<&Value> = sources
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["council_slug"] == "amber-valley")
        .collect();
    assert_eq!(ours.len(), 2);
    assert!(
        ours.iter()
            .all(|s| s["consecutive_failures"] == 0 && !s["last_success_at"].is_null())
    );
    assert_eq!(
        run(&config, &["sources", "list", "--failing", "--json"]),
        serde_json::json!([])
    );

    let second = run(&config, &["poll", "--council", "amber-valley", "--json"]);
    assert_eq!(second["totals"]["new"], 0, "{second:#}");
    assert_eq!(second["totals"]["changed"], 0, "{second:#}");
    assert_eq!(second["totals"]["unchanged"], 7, "{second:#}");
}
