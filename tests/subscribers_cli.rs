//! `subscribers`, `rank`, `promote` and `requests` as an operator runs them: the real binary, a
//! settings file, a real SQLite database and a real SMTP server on a loopback port.

#[path = "support/smtp.rs"]
mod smtp;

use std::path::{Path, PathBuf};
use std::process::Command;

use council_digest::clock::Clock;
use council_digest::ranking::requests::{NewRequest, create_request};
use council_digest::settings::Settings;
use council_digest::store::Store;
use smtp::{FaultMode, SmtpServer};

fn write_settings(dir: &Path, smtp_port: u16) -> PathBuf {
    let path = dir.join("settings.toml");
    let text = format!(
        r#"
[database]
url = "sqlite://{db}"

[web]
base_url = "https://digest.example.org/"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
timeout_seconds = 5

[tokens]
signing_key = "test-signing-key-0123456789abcdef0123"

[promotion]
threshold = 3.0

[log]
filter = "warn"
"#,
        db = dir.join("cd.db").display()
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

fn run_ok(settings: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run(settings, args);
    assert!(ok, "{args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

fn json(settings: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run_ok(settings, args)).unwrap()
}

#[test]
fn an_operator_adds_subscribers_ranks_and_promotes_councils() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(FaultMode::Accept);
    let settings = write_settings(dir.path(), server.port);
    run_ok(&settings, &["councils", "sync"]);

    // Without --confirmed the confirmation is mailed at once, with the link to the web page.
    let out = run_ok(
        &settings,
        &[
            "subscribers",
            "add",
            " Jo@Example.ORG ",
            "--council",
            "leeds",
        ],
    );
    assert_eq!(
        out.trim(),
        "subscriber 1 follows leeds once confirmed; the confirmation e-mail has been sent"
    );
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_tos, vec!["Jo@example.org".to_owned()]);
    assert!(
        received[0]
            .text()
            .contains("https://digest.example.org/confirm/"),
        "{}",
        received[0].text()
    );

    run_ok(
        &settings,
        &[
            "subscribers",
            "add",
            "planner@example.org",
            "--council",
            "leeds",
            "--professional",
            "--org",
            "Planning Partners",
            "--confirmed",
        ],
    );
    assert_eq!(server.received().len(), 1, "--confirmed sends nothing");

    let listed = json(
        &settings,
        &["subscribers", "list", "--council", "leeds", "--json"],
    );
    assert_eq!(
        listed,
        serde_json::json!([
            {"id": 1, "email": "Jo@example.org", "kind": "resident", "organisation": null,
             "suppressed": false,
             "subscriptions": [{"council": "leeds", "state": "pending"}]},
            {"id": 2, "email": "planner@example.org", "kind": "professional",
             "organisation": "Planning Partners", "suppressed": false,
             "subscriptions": [{"council": "leeds", "state": "confirmed"}]},
        ])
    );

    // One confirmed professional: 3 points, exactly the threshold of 3. Pending Jo counts 0.
    let ranking = json(&settings, &["rank", "--json"]);
    let leeds = &ranking[0];
    assert_eq!(leeds["council"], "leeds");
    assert_eq!(leeds["position"], 1);
    assert_eq!(leeds["waiting"], 382);
    assert_eq!(
        (leeds["residents"].as_i64(), leeds["professionals"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(leeds["score"], 3.0);
    assert_eq!(leeds["needed"], 0);
    assert_eq!(leeds["support"], "limited");
    // The next council has nobody: 3 residents needed.
    assert_eq!(ranking[1]["needed"], 3);
    let table = run_ok(&settings, &["rank"]);
    let first: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        first,
        vec!["1", "leeds", "0", "1", "3", "0", "limited"],
        "{table}"
    );

    let dry = json(&settings, &["promote", "--dry-run", "--json"]);
    assert_eq!(dry["promoted"][0]["council"], "leeds");
    assert_eq!(dry["promoted"][0]["notices"], 1);
    assert_eq!(
        json(&settings, &["rank", "--json"])[0]["support"],
        "limited"
    );

    let out = run_ok(&settings, &["promote"]);
    assert!(
        out.starts_with("promoted leeds (score 3, 1st, by threshold); 1 notices"),
        "{out}"
    );
    let out = run_ok(&settings, &["promote"]);
    assert!(
        out.starts_with("0 promoted, 0 demoted; 1 of 40 full councils"),
        "{out}"
    );
    let leeds = json(&settings, &["rank", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["council"] == "leeds")
        .cloned()
        .unwrap();
    assert_eq!(
        (leeds["support"].as_str(), leeds["position"].is_null()),
        (Some("full"), true)
    );

    // Remove ends the subscriptions; export shows it; erase forgets the person.
    let out = run_ok(&settings, &["subscribers", "remove", "planner@example.org"]);
    assert_eq!(out.trim(), "subscriber 2 unsubscribed from 1 council");
    let exported = json(&settings, &["subscribers", "export", "planner@example.org"]);
    assert_eq!(exported["subscriptions"][0]["state"], "unsubscribed");
    assert_eq!(exported["subscriber"]["organisation"], "Planning Partners");
    run_ok(&settings, &["subscribers", "erase", "planner@example.org"]);
    let (ok, _, stderr) = run(&settings, &["subscribers", "export", "planner@example.org"]);
    assert!(!ok);
    assert!(stderr.contains("there is no such subscriber"), "{stderr}");
}

#[test]
fn bad_addresses_and_unknown_councils_are_refused_by_name_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(FaultMode::Accept);
    let settings = write_settings(dir.path(), server.port);
    run_ok(&settings, &["councils", "sync"]);

    let (ok, _, stderr) = run(
        &settings,
        &["subscribers", "add", "not-an-address", "--council", "leeds"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("`not-an-address` is not a valid e-mail address"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        &settings,
        &[
            "subscribers",
            "add",
            "a@example.org",
            "--council",
            "atlantis",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("there is no council `atlantis`"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        &settings,
        &["subscribers", "add", "a@example.org", "--council", "Leeds"],
    );
    assert!(!ok);
    assert!(stderr.contains("is not a council slug"), "{stderr}");
    let (ok, _, stderr) = run(
        &settings,
        &[
            "subscribers",
            "add",
            "a@example.org",
            "--council",
            "leeds",
            "--org",
            "X",
        ],
    );
    assert!(!ok, "--org without --professional is refused");
    assert!(stderr.contains("--professional"), "{stderr}");

    assert_eq!(
        json(&settings, &["subscribers", "list", "--json"]),
        serde_json::json!([])
    );
    assert!(server.received().is_empty());
}

#[test]
fn a_failed_confirmation_mail_keeps_the_subscription_and_prints_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(FaultMode::Reject);
    let settings = write_settings(dir.path(), server.port);
    run_ok(&settings, &["councils", "sync"]);
    let (ok, stdout, stderr) = run(
        &settings,
        &["subscribers", "add", "a@example.org", "--council", "york"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("confirmation e-mail was not sent"),
        "{stderr}"
    );
    assert!(
        stdout.contains("https://digest.example.org/confirm/"),
        "{stdout}"
    );
    let listed = json(&settings, &["subscribers", "list", "--json"]);
    assert_eq!(listed[0]["subscriptions"][0]["state"], "pending");
}

#[tokio::test]
async fn requests_are_listed_approved_and_rejected_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(FaultMode::Accept);
    let settings_file = write_settings(dir.path(), server.port);
    run_ok(&settings_file, &["councils", "sync"]);

    let url = format!("sqlite://{}", dir.path().join("cd.db").display());
    let store = Store::connect(&url, 2, Clock::system()).await.unwrap();
    let settings = Settings::defaults();
    let mut ids = Vec::new();
    for council in ["walsall", "dudley"] {
        let request = NewRequest {
            council: council.parse().unwrap(),
            name: "Sam Planner".into(),
            organisation: None,
            email: "sam@example.org".parse().unwrap(),
            message: "Please enable\nthis council.".into(),
            represents_council: council == "dudley",
        };
        ids.push(
            create_request(&store, &settings, &request)
                .await
                .unwrap()
                .id,
        );
    }
    store.close().await;

    let listed = json(&settings_file, &["requests", "list", "--json"]);
    let listed_ids: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed_ids, vec![ids[1], ids[0]], "newest first");
    assert_eq!(listed[0]["represents_council"], true);

    let out = run_ok(
        &settings_file,
        &["requests", "approve", &ids[0].to_string()],
    );
    assert_eq!(
        out.trim(),
        format!(
            "request {} approved; walsall is now fully supported (0 notices queued)",
            ids[0]
        )
    );
    let (ok, _, stderr) = run(
        &settings_file,
        &["requests", "reject", &ids[1].to_string(), "--reason", " "],
    );
    assert!(!ok);
    assert!(stderr.contains("the reason is required"), "{stderr}");
    run_ok(
        &settings_file,
        &[
            "requests",
            "reject",
            &ids[1].to_string(),
            "--reason",
            "Not yet",
        ],
    );
    let (ok, _, stderr) = run(
        &settings_file,
        &["requests", "approve", &ids[1].to_string()],
    );
    assert!(!ok);
    assert!(stderr.contains("has already been rejected"), "{stderr}");

    let rejected = json(
        &settings_file,
        &["requests", "list", "--state", "rejected", "--json"],
    );
    assert_eq!(rejected[0]["reason"], "Not yet");
    let table = run_ok(&settings_file, &["requests", "list"]);
    assert!(table.contains("Please enable this council."), "{table}");
}

#[test]
fn on_a_new_database_the_first_command_finds_the_registry_councils() {
    let dir = tempfile::tempdir().unwrap();
    let server = SmtpServer::start(FaultMode::Accept);
    let settings = write_settings(dir.path(), server.port);

    // No `councils sync` and no daemon start before: the database is created by this command.
    let out = run_ok(
        &settings,
        &[
            "subscribers",
            "add",
            "first@example.org",
            "--council",
            "wolverhampton",
            "--confirmed",
        ],
    );
    assert!(out.contains("follows wolverhampton"), "{out}");

    // The registry was loaded once; a sync now finds the 382 councils unchanged.
    let out = run_ok(&settings, &["councils", "sync"]);
    assert!(
        out.starts_with("councils: 0 added, 0 updated, 382 unchanged"),
        "{out}"
    );
}
