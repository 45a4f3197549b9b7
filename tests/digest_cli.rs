//! `council-digest digest build`, run as the installed binary against a real SQLite file.

#[path = "digest_common.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use council_digest::clock::Clock;
use council_digest::store::Store;

fn council_digest(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_council-digest"))
        .env_clear()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A settings file and a database with one full council, one meeting and one subscriber.
async fn prepare(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("cd.db");
    let config = dir.join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n\n[web]\nbase_url = \"{BASE_URL}\"\n\n\
             [mail]\nfrom = \"Council Digest <digest@example.org>\"\n\n\
             [tokens]\nsigning_key = \"cli-test-signing-key-0123456789abcdef\"\n",
            db.display()
        ),
    )
    .unwrap();
    let store = Store::connect(
        &format!("sqlite://{}", db.display()),
        2,
        Clock::fixed(at("2026-02-01T12:00:00Z")),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let (bury, source) = add_council(&store, "bury", "Bury Council", "full").await;
    put_meeting(
        &store,
        bury,
        source,
        &meeting("m1", "Cabinet", date(2026, 2, 10), Some(time(18, 0))),
    )
    .await;
    add_subscriber(&store, "a@example.org", "resident", &[bury]).await;
    store.close().await;
    config
}

#[tokio::test]
async fn digest_build_renders_with_dry_run_then_queues_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = prepare(dir.path()).await;
    let out = dir.path().join("out");

    let dry = council_digest(
        &config,
        &[
            "digest",
            "build",
            "--week",
            "2026-W07",
            "--dry-run",
            "--out",
        ],
    );
    assert!(!dry.status.success(), "--out needs a folder");

    let dry = council_digest(
        &config,
        &[
            "digest",
            "build",
            "--week",
            "2026-W07",
            "--dry-run",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("2026-W07: subscribers 1, rendered 1, queued 0, already built 0"),
        "{}",
        stdout(&dry)
    );
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert_eq!(files.len(), 1);

    let printed = council_digest(
        &config,
        &["digest", "build", "--week", "2026-W07", "--dry-run"],
    );
    assert!(printed.status.success(), "{}", stderr(&printed));
    let eml = stdout(&printed);
    let parsed = mail_parser::MessageParser::default()
        .parse(eml.as_bytes())
        .unwrap();
    assert_eq!(
        parsed.subject(),
        Some("Bury Council: 1 meeting, week of 9 February 2026 (2026-W07)")
    );
    assert!(
        stderr(&printed).contains("rendered 1,"),
        "{}",
        stderr(&printed)
    );

    let built = council_digest(&config, &["digest", "build", "--week", "2026-W07"]);
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        stdout(&built).contains("built 1, queued 1, already built 0"),
        "{}",
        stdout(&built)
    );
    let again = council_digest(&config, &["digest", "build", "--week", "2026-W07"]);
    assert!(
        stdout(&again).contains("built 0, queued 0, already built 1"),
        "{}",
        stdout(&again)
    );

    let only = council_digest(
        &config,
        &[
            "digest",
            "build",
            "--week",
            "2026-W08",
            "--subscriber",
            "nobody@example.org",
        ],
    );
    assert!(!only.status.success());
    assert!(
        stderr(&only).contains("no confirmed, unsuppressed subscriber has that address"),
        "{}",
        stderr(&only)
    );
}

#[tokio::test]
async fn a_week_that_does_not_exist_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = prepare(dir.path()).await;
    let output = council_digest(&config, &["digest", "build", "--week", "2026-W54"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("`2026-W54` is not an ISO week such as 2026-W07"),
        "{}",
        stderr(&output)
    );
}
