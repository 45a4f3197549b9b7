//! A real SMTP server on a loopback port for tests, with fault modes.
//!
//! It is Debian's `python3-aiosmtpd` (install it with `apt-get install -y python3-aiosmtpd`)
//! driven by `tests/support/smtp_server.py`, run as a child process and killed on drop.
//!
//! Use it from a test file with either of
//!
//! ```ignore
//! #[path = "support/smtp.rs"]
//! mod smtp;
//! // or: mod support;  (then support::smtp::SmtpServer)
//! ```
//!
//! and then
//!
//! ```ignore
//! let server = smtp::SmtpServer::start(smtp::FaultMode::Accept);
//! // point smtp.host = "127.0.0.1", smtp.port = server.port, smtp.tls = "none" at it
//! let raw: Vec<Vec<u8>> = server.wait_for(1, Duration::from_secs(10)); // blocking
//! let raw = server.wait_for_async(1, Duration::from_secs(10)).await;   // inside tokio
//! let envelopes = server.received(); // sender, recipients and raw bytes of each message
//! ```
//!
//! For TLS, `SmtpServer::start_tls(FaultMode::Accept, ServerTls::Starttls)` (or
//! `ServerTls::Implicit`) makes a throwaway CA and a certificate for `localhost` and
//! `127.0.0.1` with the `openssl` command (Debian's `openssl` package) in the server's temporary
//! folder; `server.ca_file()` is the CA's PEM file, for `smtp.ca_file`. Nothing is committed.
//!
//! `start` returns once the port accepts TCP connections (polled with a deadline, no fixed
//! sleep). Only messages the server answered 250 to are saved; every DATA attempt, whatever its
//! outcome, is in `events()`. The python interpreter is `$COUNCIL_DIGEST_TEST_PYTHON`, else
//! `/usr/bin/python3` when it exists (Debian's packages live there), else `python3`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the server treats each message offered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// 250 for every message.
    Accept,
    /// 451 on the first attempt of each message, then 250.
    TempFailFirst,
    /// 550 for every message.
    Reject,
    /// Drops the connection after DATA, before replying, on each message's first attempt;
    /// then 250.
    DropFirst,
    /// Always drops the connection after DATA, before replying.
    Drop,
    /// Goes silent after DATA (never replies) on each message's first attempt; then 250.
    SilentFirst,
    /// Always goes silent after DATA.
    Silent,
    /// Accepts TCP connections and never sends the greeting.
    NeverGreet,
}

impl FaultMode {
    fn as_arg(self) -> &'static str {
        match self {
            FaultMode::Accept => "accept",
            FaultMode::TempFailFirst => "tempfail-first",
            FaultMode::Reject => "reject",
            FaultMode::DropFirst => "drop-first",
            FaultMode::Drop => "drop",
            FaultMode::SilentFirst => "silent-first",
            FaultMode::Silent => "silent",
            FaultMode::NeverGreet => "never-greet",
        }
    }
}

/// TLS the server speaks, with a certificate signed by a CA made for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTls {
    /// Offers STARTTLS and refuses MAIL until the client has used it.
    Starttls,
    /// TLS from the first byte, as on port 465.
    Implicit,
}

impl ServerTls {
    fn as_arg(self) -> &'static str {
        match self {
            ServerTls::Starttls => "starttls",
            ServerTls::Implicit => "implicit",
        }
    }
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The raw bytes of DATA (headers and body, CRLF line ends, dot-unstuffed).
    pub data: Vec<u8>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// One DATA attempt: `accepted`, `deferred-451`, `rejected-550`, `dropped` or `silent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub outcome: String,
    pub recipients: Vec<String>,
}

/// A running test SMTP server; killed when dropped.
pub struct SmtpServer {
    pub port: u16,
    pub mode: FaultMode,
    pub tls: Option<ServerTls>,
    child: Child,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts a server in `mode` on a free loopback port and waits until it accepts
    /// connections. Panics with the reason when it cannot start (for example, aiosmtpd
    /// missing).
    pub fn start(mode: FaultMode) -> SmtpServer {
        SmtpServer::start_with(mode, None)
    }

    /// Like [`SmtpServer::start`]; with `idle_timeout` the server closes a connection that has
    /// been idle that long, as real servers do (see [`SmtpServer::connections_closed`]).
    pub fn start_with(mode: FaultMode, idle_timeout: Option<Duration>) -> SmtpServer {
        SmtpServer::spawn(mode, idle_timeout, None)
    }

    /// Like [`SmtpServer::start`], speaking `tls` with a certificate for `localhost` and
    /// `127.0.0.1` signed by a CA made for this server (see [`SmtpServer::ca_file`]). Panics
    /// when `openssl` cannot make them.
    pub fn start_tls(mode: FaultMode, tls: ServerTls) -> SmtpServer {
        SmtpServer::spawn(mode, None, Some(tls))
    }

    fn spawn(
        mode: FaultMode,
        idle_timeout: Option<Duration>,
        tls: Option<ServerTls>,
    ) -> SmtpServer {
        let dir = tempfile::tempdir().expect("create a folder for the test SMTP server");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let inbox = dir.path().join("inbox");
        let mut command = Command::new(python());
        command
            .arg(&script)
            .arg("--mode")
            .arg(mode.as_arg())
            .arg("--dir")
            .arg(&inbox)
            .arg("--idle-timeout")
            .arg(idle_timeout.map_or(600.0, |t| t.as_secs_f64()).to_string());
        if let Some(tls) = tls {
            let files = make_certificates(&dir.path().join("tls"));
            command
                .arg("--tls-mode")
                .arg(tls.as_arg())
                .arg("--tls-cert")
                .arg(&files.cert)
                .arg("--tls-key")
                .arg(&files.key);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("server.log"))
                    .expect("create the test SMTP server's log"),
            ))
            .spawn()
            .expect("start the test SMTP server (python3 with aiosmtpd)");

        let stdout = child.stdout.take().expect("the server's stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port: u16 = match line.trim().strip_prefix("PORT ") {
            Some(port) => port
                .parse()
                .expect("the test SMTP server printed a port number"),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                panic!(
                    "the test SMTP server did not start (is python3-aiosmtpd installed?): \
                     {line} {log}"
                );
            }
        };

        let server = SmtpServer {
            port,
            mode,
            tls,
            child,
            dir,
        };
        server.wait_until_listening(Duration::from_secs(10));
        server
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The PEM file of the CA that signed the server's certificate; `None` without TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.map(|_| self.dir.path().join("tls/ca.pem"))
    }

    fn inbox(&self) -> PathBuf {
        self.dir.path().join("inbox")
    }

    fn wait_until_listening(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the test SMTP server on port {} did not accept connections within {limit:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every message accepted so far, in order of acceptance.
    pub fn received(&self) -> Vec<Received> {
        let mut stems: Vec<PathBuf> = std::fs::read_dir(self.inbox())
            .map(|entries| {
                entries
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        stems.sort();
        stems
            .into_iter()
            .filter_map(|eml| {
                let data = std::fs::read(&eml).ok()?;
                let meta = std::fs::read(eml.with_extension("json")).ok()?;
                let meta: serde_json::Value = serde_json::from_slice(&meta).ok()?;
                Some(Received {
                    mail_from: meta["mail_from"].as_str().unwrap_or("").to_owned(),
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .map(|all| {
                            all.iter()
                                .filter_map(|r| r.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    data,
                })
            })
            .collect()
    }

    /// The raw bytes of every message accepted so far.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.received().into_iter().map(|r| r.data).collect()
    }

    /// Every DATA attempt so far, whatever its outcome.
    pub fn events(&self) -> Vec<Event> {
        self.log_entries()
            .into_iter()
            .filter(|event| event.outcome != "closed" && event.outcome != "opened")
            .collect()
    }

    /// How many SMTP sessions have started so far: connections that said HELO or EHLO (the
    /// start probe and failed implicit-TLS handshakes do not count).
    pub fn connections_opened(&self) -> usize {
        self.log_entries()
            .iter()
            .filter(|event| event.outcome == "opened")
            .count()
    }

    /// How many connections have ended so far (either side closing them).
    pub fn connections_closed(&self) -> usize {
        self.log_entries()
            .iter()
            .filter(|event| event.outcome == "closed")
            .count()
    }

    fn log_entries(&self) -> Vec<Event> {
        std::fs::read_to_string(self.inbox().join("events.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (outcome, recipients) = line.split_once(' ')?;
                Some(Event {
                    outcome: outcome.to_owned(),
                    recipients: recipients
                        .split(',')
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect()
    }

    /// Blocks until at least `n` messages were accepted and returns them all; panics after
    /// `limit`. Do not call it on a single-threaded runtime that is also sending: use
    /// [`SmtpServer::wait_for_async`] there.
    pub fn wait_for(&self, n: usize, limit: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + limit;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages within {limit:?}, the server accepted {}",
                messages.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`SmtpServer::wait_for`], yielding to the tokio runtime between looks.
    pub async fn wait_for_async(&self, n: usize, limit: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + limit;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages within {limit:?}, the server accepted {}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's own log (aiosmtpd's messages), for a failing test's output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's certificate and key, and beside them `ca.pem`, the CA that signed it.
struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// A throwaway CA and a server certificate for `localhost` and `127.0.0.1`, valid for two days,
/// made with the `openssl` command in `dir`.
fn make_certificates(dir: &Path) -> CertificateFiles {
    std::fs::create_dir_all(dir).expect("create the test certificates' folder");
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .expect("write the server certificate's extensions");
    let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps = [
        format!(
            "req -x509 {new_key} -keyout ca.key -out ca.pem -days 2 \
             -subj /CN=council-digest-test-CA -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
        format!("req {new_key} -keyout server.key -out server.csr -subj /CN=localhost"),
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
         -days 2 -extfile server.ext"
            .to_owned(),
    ];
    for step in &steps {
        let output = Command::new("openssl")
            .args(step.split_whitespace())
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("run openssl to make test certificates (apt-get install -y openssl)");
        assert!(
            output.status.success(),
            "openssl {step} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    CertificateFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

fn python() -> String {
    if let Ok(python) = std::env::var("COUNCIL_DIGEST_TEST_PYTHON") {
        if !python.trim().is_empty() {
            return python;
        }
    }
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".to_owned()
    } else {
        "python3".to_owned()
    }
}
