//! The daemon as a real process: it creates its database, loads the registry, says it is
//! ready, reloads settings on SIGHUP (refusing invalid ones) and exits 0 on SIGTERM, on SQLite
//! and on PostgreSQL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_council-digest");

/// Settings that keep the daemon local: no listening port clash, no scheduled job due soon.
fn settings_text(database_url: &str, dir: &Path) -> String {
    format!(
        r#"
[database]
url = "{database_url}"
[web]
bind = "127.0.0.1:0"
[mail]
outbox_dir = "{outbox}"
[tokens]
signing_key = "lifecycle-test-key-lifecycle-test-key"
[schedule]
poll_full = "0 0 0 1 1 *"
poll_limited = "0 0 0 1 1 *"
promotion = "0 0 0 1 1 *"
digest = "0 0 7 1 1 *"
delivery = "0 0 0 1 1 *"
# No poll at start: the registry's council websites are not for tests to reach.
poll_on_start = false
"#,
        outbox = dir.join("outbox").display()
    )
}

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(config: &Path, workdir: &Path) -> Daemon {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("run")
            .current_dir(workdir)
            .env_remove("RUST_LOG")
            .env("COUNCIL_DIGEST__LOG__FILTER", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the daemon");
        let stderr = child.stderr.take().expect("daemon stderr");
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
        Daemon { child, lines }
    }

    /// Waits for a log line containing `needle`; panics with what was seen on timeout.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "no log line containing {needle:?}; saw:\n{}",
            seen.join("\n")
        );
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the daemon") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop within 30 s"
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

fn cli(config: &Path, workdir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(workdir)
        .output()
        .expect("run the CLI")
}

fn run_lifecycle(database_url: &str, dir: &Path) {
    let config = dir.join("settings.toml");
    std::fs::write(&config, settings_text(database_url, dir)).unwrap();

    let daemon = Daemon::start(&config, dir);
    let loaded = daemon.wait_for("council registry loaded");
    assert!(loaded.contains("added=382"), "{loaded}");
    daemon.wait_for("council-digest is ready");

    let shown = cli(
        &config,
        dir,
        &["councils", "show", "wolverhampton", "--json"],
    );
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let council: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(council["name"], "City of Wolverhampton Council");
    assert_eq!(council["gss_code"], "E08000031");
    assert_eq!(council["platform"], "moderngov");

    // An invalid file is refused and the daemon keeps running on the old settings.
    std::fs::write(&config, "[promotion]\nthresold = 2.0\n").unwrap();
    daemon.signal("HUP");
    let refused = daemon.wait_for("settings reload refused");
    assert!(refused.contains("promotion.thresold"), "{refused}");

    // So is one whose smtp.ca_file cannot be read: every later send would fail.
    let missing_ca = dir.join("no-such-ca.pem");
    std::fs::write(
        &config,
        format!(
            "{}[smtp]\nhost = \"127.0.0.1\"\nca_file = \"{}\"\n",
            settings_text(database_url, dir),
            missing_ca.display()
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    let refused = daemon.wait_for("settings reload refused");
    assert!(
        refused.contains("smtp.ca_file") && refused.contains("no-such-ca.pem"),
        "{refused}"
    );

    std::fs::write(&config, settings_text(database_url, dir)).unwrap();
    daemon.signal("HUP");
    daemon.wait_for("settings reloaded");

    daemon.signal("TERM");
    daemon.wait_for("council-digest stopped");
    let status = daemon.wait_exit();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn the_daemon_starts_on_a_new_sqlite_file_reloads_on_hup_and_stops_on_term() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/council-digest.db");
    run_lifecycle(&format!("sqlite://{}", db.display()), dir.path());
    assert!(db.is_file(), "the SQLite file and its folder were created");
}

#[test]
fn the_daemon_starts_on_a_new_postgres_database_and_stops_on_term() {
    let Some(admin) = council_digest::store::testing::postgres_admin_url() else {
        eprintln!("skipped: TEST_DATABASE_URL is not set, so there is no PostgreSQL to use");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(council_digest::store::testing::fresh_postgres_url(&admin));
    let dir = tempfile::tempdir().unwrap();
    run_lifecycle(&url, dir.path());
}

#[test]
fn config_check_names_an_unknown_key_and_an_invalid_cron_expression() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");

    std::fs::write(&config, "[promotion]\nthresold = 2.0\n").unwrap();
    let out = cli(&config, dir.path(), &["config", "check"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown key `promotion.thresold`"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.toml"), "{stderr}");

    std::fs::write(&config, "[schedule]\ndigest = \"at seven on mondays\"\n").unwrap();
    let out = cli(&config, dir.path(), &["config", "check"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schedule") && stderr.contains("digest"),
        "{stderr}"
    );

    std::fs::write(&config, "[smtp]\npassword = \"s3cret-pass\"\n").unwrap();
    let out = cli(&config, dir.path(), &["config", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("s3cret-pass") && stdout.contains("password = \"********\""));
}

#[test]
fn the_daemon_names_an_unreadable_smtp_ca_file_before_it_opens_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/council-digest.db");
    let config = dir.path().join("settings.toml");
    let missing_ca = dir.path().join("no-such-ca.pem");
    std::fs::write(
        &config,
        format!(
            "{}[smtp]\nhost = \"127.0.0.1\"\nca_file = \"{}\"\n",
            settings_text(&format!("sqlite://{}", db.display()), dir.path()),
            missing_ca.display()
        ),
    )
    .unwrap();

    let out = cli(&config, dir.path(), &["run"]);

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("smtp.ca_file") && stderr.contains("no-such-ca.pem"),
        "{stderr}"
    );
    assert!(!stderr.contains("web server"), "{stderr}");
    assert!(!db.exists(), "the database was opened before the check");
}

#[test]
fn config_check_opens_the_smtp_ca_file_and_names_it_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tls.toml");
    let missing = dir.path().join("no-such-ca.pem");
    let not_pem = dir.path().join("notes.txt");
    std::fs::write(&not_pem, "our relay's CA, ask IT\n").unwrap();

    for (ca_file, says) in [
        (&missing, "cannot read"),
        (&not_pem, "is not a PEM file of CA certificates"),
    ] {
        std::fs::write(
            &config,
            format!(
                "[smtp]\nhost = \"relay.example.org\"\ntls = \"starttls\"\nca_file = \"{}\"\n",
                ca_file.display()
            ),
        )
        .unwrap();
        let out = cli(&config, dir.path(), &["config", "check"]);
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("smtp.ca_file"), "{stderr}");
        assert!(stderr.contains(&ca_file.display().to_string()), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("settings are valid"), "{stderr}");
    }
}

#[test]
fn an_environment_variable_wins_over_the_file_and_an_unknown_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(&config, "[promotion]\nthreshold = 10.0\n").unwrap();

    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .env("COUNCIL_DIGEST__PROMOTION__THRESHOLD", "7.5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("threshold = 7.5"));

    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "config", "check"])
        .env("COUNCIL_DIGEST__PROMOTION__THRESHLD", "7.5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("COUNCIL_DIGEST__PROMOTION__THRESHLD"),
        "{stderr}"
    );
}

#[test]
fn a_council_feeds_variable_is_read_as_a_comma_separated_list() {
    let out = Command::new(BIN)
        .args(["config", "check"])
        .env_remove("COUNCIL_DIGEST_CONFIG")
        .env(
            "COUNCIL_DIGEST__COUNCILS__MANCHESTER__FEEDS",
            "https://a.example/x.ics,https://b.example/y.ics",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "[councils.manchester]\nfeeds = [\"https://a.example/x.ics\", \"https://b.example/y.ics\"]"
        ),
        "{stdout}"
    );
}

#[test]
fn a_database_that_cannot_be_opened_is_a_clear_error_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        "[database]\nurl = \"postgres://nobody@127.0.0.1:1/none\"\n",
    )
    .unwrap();
    let out = cli(&config, dir.path(), &["migrate"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
