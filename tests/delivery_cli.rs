//! `digest send`, `deliveries list` and `deliveries retry --failed` as an operator runs them:
//! the real binary, a settings file, a real SQLite database and a real SMTP server.

mod support;

use std::path::Path;
use std::process::Command;

use council_digest::clock::Clock;
use council_digest::store::Store;
use support::seed::{addresses, seed_notices};
use support::smtp::{FaultMode, SmtpServer};

fn write_settings(dir: &Path, db_url: &str, smtp_port: u16) -> std::path::PathBuf {
    let path = dir.join("settings.toml");
    let text = format!(
        r#"
[database]
url = "{db_url}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
timeout_seconds = 5

[tokens]
signing_key = "test-signing-key-0123456789abcdef0123"

[delivery]
rate_per_second = 500.0

[log]
filter = "warn"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run(settings: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_council-digest"))
        .arg("--config")
        .arg(settings)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn seeded_sqlite(dir: &Path, n: usize) -> String {
    let url = format!("sqlite://{}", dir.join("cd.db").display());
    let store = Store::connect(&url, 2, Clock::system()).await.unwrap();
    store.migrate().await.unwrap();
    seed_notices(&store, &addresses(n)).await;
    store.close().await;
    url
}

#[tokio::test]
async fn digest_send_drains_the_queue_once_and_prints_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let url = seeded_sqlite(dir.path(), 3).await;
    let server = SmtpServer::start(FaultMode::Accept);
    let settings = write_settings(dir.path(), &url, server.port);

    let (ok, stdout, stderr) = run(&settings, &["digest", "send"]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "sent 3, retrying 0, failed 0; 0 still queued or waiting for a retry"
    );
    assert_eq!(server.messages().len(), 3);

    let (ok, stdout, _) = run(&settings, &["digest", "send", "--json"]);
    assert!(ok);
    let counts: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(counts["sent"], 0);
    assert_eq!(counts["outstanding"], 0);
    assert_eq!(server.messages().len(), 3);
}

#[tokio::test]
async fn failed_deliveries_are_listed_by_state_and_requeued_by_retry_failed() {
    let dir = tempfile::tempdir().unwrap();
    let url = seeded_sqlite(dir.path(), 2).await;
    let rejecting = SmtpServer::start(FaultMode::Reject);
    let settings = write_settings(dir.path(), &url, rejecting.port);

    let (ok, stdout, stderr) = run(&settings, &["digest", "send"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("sent 0, retrying 0, failed 2;"),
        "{stdout}"
    );

    let (ok, stdout, _) = run(
        &settings,
        &["deliveries", "list", "--state", "failed", "--json"],
    );
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["state"] == "failed" && r["attempts"] == 1)
    );
    assert!(
        rows[0]["last_error"].as_str().unwrap().contains("550"),
        "{rows:?}"
    );

    let (ok, table, _) = run(&settings, &["deliveries", "list"]);
    assert!(ok);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("2 shown; in all: 2 failed"), "{table}");
    assert!(
        !table.contains("reader1@example.org"),
        "no addresses: {table}"
    );

    let (ok, stdout, _) = run(&settings, &["deliveries", "retry", "--failed"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "2 failed deliveries queued again");

    let accepting = SmtpServer::start(FaultMode::Accept);
    let settings = write_settings(dir.path(), &url, accepting.port);
    let (ok, stdout, _) = run(&settings, &["digest", "send"]);
    assert!(ok);
    assert!(
        stdout.starts_with("sent 2, retrying 0, failed 0;"),
        "{stdout}"
    );
    assert_eq!(accepting.messages().len(), 2);
}

#[test]
fn retry_without_a_selection_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cd.db").display());
    let settings = write_settings(dir.path(), &url, 2525);
    let (ok, _, stderr) = run(&settings, &["deliveries", "retry"]);
    assert!(!ok);
    assert!(stderr.contains("--failed"), "{stderr}");
}

#[test]
fn an_unknown_state_is_refused_naming_the_states() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cd.db").display());
    let settings = write_settings(dir.path(), &url, 2525);
    let (ok, _, stderr) = run(&settings, &["deliveries", "list", "--state", "lost"]);
    assert!(!ok);
    assert!(
        stderr.contains("queued, sending, sent, retrying, failed"),
        "{stderr}"
    );
}
