//! The transports that carry a finished message: an SMTP relay (lettre's pooled async client)
//! or, when `smtp.host` is empty, lettre's file transport writing one `.eml` file per message
//! under `mail.outbox_dir`, so the daemon works out of the box and its mail can be read.
//!
//! Every send is bounded by one overall timeout (`smtp.timeout_seconds`), so a server that
//! accepts the connection and never answers, or goes silent after DATA, costs one timeout and
//! never a stuck worker. Failures come back classified: [`SendError::Transient`] (4xx replies,
//! timeouts, dropped connections, network and TLS trouble: try again later) or
//! [`SendError::Permanent`] (5xx replies and messages the client itself refuses: give up).
//!
//! Plain and STARTTLS connections come from a small pool of lettre connections
//! ([`AsyncSmtpConnection`]) opened on sockets with `TCP_NODELAY`. lettre 0.11.23 leaves Nagle's
//! algorithm on, and since it writes a message's final `.` line separately from the body,
//! every message then waits for the server's delayed ACK (40 ms on Linux): at most 25 messages
//! a second per connection. The fix is merged upstream (lettre PR #1159) but not released;
//! implicit TLS (`smtp.tls = "tls"`) still goes through lettre's own pool and pays that delay
//! (TODO(#6): use lettre's pool for every mode once a release sets TCP_NODELAY).
//!
//! Connections the server closed are not reused: a parked connection is tested (NOOP) before
//! it is lent, and one that failed or was cut short by the timeout is dropped, never parked.
//! In lettre's pool (implicit TLS) a send cut short by the timeout leaves its connection in an
//! unknown state, so that whole pool is replaced then; sends in flight on it finish on it.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::{self, PoolConfig};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::settings::{Settings, SmtpSettings, TlsMode};

/// Why a transport cannot be set up from the settings.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("smtp.tls: cannot prepare TLS for `{host}`: {detail}")]
    Tls { host: String, detail: String },
    #[error("mail.outbox_dir: cannot create {path}: {source}")]
    Outbox {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why one message was not handed over; the variant says whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A 4xx reply, a timeout, a dropped connection: the same message may go through later.
    #[error("transient: {0}")]
    Transient(String),
    /// A 5xx reply or a message the client refuses: sending it again will fail again.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl SendError {
    pub fn detail(&self) -> &str {
        match self {
            SendError::Transient(detail) | SendError::Permanent(detail) => detail,
        }
    }
}

/// What went wrong with an SMTP send, reduced to what decides retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpFailure {
    /// The server replied with this negative code.
    Reply(u16),
    /// No answer within the timeout (a command's or the whole send's).
    Timeout,
    /// The connection could not be made or was dropped (reset, closed mid-command).
    Connection,
    /// TLS negotiation failed.
    Tls,
    /// The server's reply could not be understood.
    Malformed,
    /// The client refused the message before sending (for example, no recipient).
    Client,
    /// The transport was shut down while sending.
    Shutdown,
}

/// Whether a failure is worth retrying: 5xx and client-side refusals are permanent, every
/// other failure may clear up (a 4xx is the server asking for exactly that).
pub fn classify(failure: SmtpFailure) -> Retry {
    match failure {
        SmtpFailure::Reply(code) if (500..600).contains(&code) => Retry::Never,
        SmtpFailure::Client => Retry::Never,
        SmtpFailure::Reply(_)
        | SmtpFailure::Timeout
        | SmtpFailure::Connection
        | SmtpFailure::Tls
        | SmtpFailure::Malformed
        | SmtpFailure::Shutdown => Retry::Later,
    }
}

/// The outcome of [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Later,
    Never,
}

fn failure_of(err: &smtp::Error) -> SmtpFailure {
    if let Some(code) = err.status() {
        let code: u16 = code.to_string().parse().unwrap_or(0);
        return SmtpFailure::Reply(code);
    }
    if err.is_timeout() {
        SmtpFailure::Timeout
    } else if err.is_tls() {
        SmtpFailure::Tls
    } else if err.is_response() {
        SmtpFailure::Malformed
    } else if err.is_client() {
        SmtpFailure::Client
    } else if err.is_transport_shutdown() {
        SmtpFailure::Shutdown
    } else {
        SmtpFailure::Connection
    }
}

fn send_error(failure: SmtpFailure, detail: String) -> SendError {
    match classify(failure) {
        Retry::Later => SendError::Transient(detail),
        Retry::Never => SendError::Permanent(detail),
    }
}

/// Carries messages to their recipients. Build it once (inside the tokio runtime) and share it:
/// the SMTP variant keeps a pool of open connections.
#[derive(Clone)]
pub enum Transport {
    Smtp(Arc<SmtpRelay>),
    File(Arc<Outbox>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Smtp(relay) => write!(
                f,
                "Transport::Smtp({}:{}, {:?})",
                relay.settings.host, relay.settings.port, relay.settings.tls
            ),
            Transport::File(outbox) => write!(f, "Transport::File({})", outbox.dir.display()),
        }
    }
}

/// An SMTP relay and its open connections.
pub struct SmtpRelay {
    settings: SmtpSettings,
    timeout: Duration,
    connections: Connections,
}

enum Connections {
    /// Plain or STARTTLS: our pool of lettre connections on `TCP_NODELAY` sockets.
    Direct(DirectPool),
    /// Implicit TLS: lettre's pool, replaced after a send timed out.
    Lettre(RwLock<Arc<AsyncSmtpTransport<Tokio1Executor>>>),
}

/// At most `slots` connections at once; idle ones are parked for the next send.
struct DirectPool {
    host: String,
    port: u16,
    starttls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    slots: tokio::sync::Semaphore,
    idle: std::sync::Mutex<Vec<AsyncSmtpConnection>>,
}

/// Why a direct connection could not be opened or used.
enum DirectError {
    Connect(std::io::Error),
    Smtp(smtp::Error),
}

impl DirectPool {
    fn new(smtp: &SmtpSettings, starttls: Option<TlsParameters>) -> DirectPool {
        DirectPool {
            host: smtp.host.trim().to_owned(),
            port: smtp.port,
            starttls,
            credentials: credentials(smtp),
            hello: ClientId::default(),
            slots: tokio::sync::Semaphore::new(smtp.pool_size.max(1) as usize),
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Sends on a parked connection that still answers, or on a new one. Cancel-safe: a send
    /// dropped midway drops its connection with it.
    async fn send_raw(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), DirectError> {
        let _slot = self.slots.acquire().await;
        let mut conn = match self.take_idle() {
            Some(mut parked) => {
                if parked.test_connected().await {
                    parked
                } else {
                    parked.abort().await;
                    self.connect().await?
                }
            }
            None => self.connect().await?,
        };
        match conn.send(envelope, bytes).await {
            Ok(_response) if !conn.has_broken() => {
                self.park(conn);
                Ok(())
            }
            Ok(_response) => Ok(()),
            Err(err) => {
                conn.abort().await;
                Err(DirectError::Smtp(err))
            }
        }
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        }
    }

    fn park(&self, conn: AsyncSmtpConnection) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(poisoned) => poisoned.into_inner().push(conn),
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, DirectError> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(DirectError::Connect)?;
        stream.set_nodelay(true).map_err(DirectError::Connect)?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
            .await
            .map_err(DirectError::Smtp)?;
        if let Some(tls) = &self.starttls {
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(DirectError::Smtp)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(DirectError::Smtp)?;
        }
        Ok(conn)
    }
}

fn credentials(smtp: &SmtpSettings) -> Option<Credentials> {
    (!smtp.username.is_empty()).then(|| {
        Credentials::new(
            smtp.username.clone(),
            smtp.password.expose_secret().to_owned(),
        )
    })
}

/// `.eml` files in a folder, one per message.
pub struct Outbox {
    dir: PathBuf,
    timeout: Duration,
    files: AsyncFileTransport<Tokio1Executor>,
}

impl Transport {
    /// The transport the settings ask for: SMTP when `smtp.host` is set, else the outbox
    /// folder (created if missing). Call it inside the tokio runtime.
    pub fn from_settings(settings: &Settings) -> Result<Transport, TransportError> {
        let timeout = Duration::from_secs(settings.smtp.timeout_seconds.max(1));
        if settings.smtp.host.trim().is_empty() {
            let dir = settings.mail.outbox_dir.clone();
            std::fs::create_dir_all(&dir).map_err(|source| TransportError::Outbox {
                path: dir.display().to_string(),
                source,
            })?;
            return Ok(Transport::File(Arc::new(Outbox {
                files: AsyncFileTransport::new(&dir),
                dir,
                timeout,
            })));
        }
        let connections = match settings.smtp.tls {
            TlsMode::None => Connections::Direct(DirectPool::new(&settings.smtp, None)),
            TlsMode::Starttls => {
                let tls = tls_parameters(&settings.smtp.host)?;
                Connections::Direct(DirectPool::new(&settings.smtp, Some(tls)))
            }
            TlsMode::Tls => {
                let pool = build_pool(&settings.smtp, timeout)?;
                Connections::Lettre(RwLock::new(Arc::new(pool)))
            }
        };
        Ok(Transport::Smtp(Arc::new(SmtpRelay {
            settings: settings.smtp.clone(),
            timeout,
            connections,
        })))
    }

    /// Hands `message` to the relay (or writes it to the outbox). `Ok` means the server
    /// accepted it.
    pub async fn send(&self, message: &Message) -> Result<(), SendError> {
        let envelope = message.envelope();
        let bytes = message.formatted();
        match self {
            Transport::Smtp(relay) => relay.send_raw(envelope, &bytes).await,
            Transport::File(outbox) => {
                let written =
                    tokio::time::timeout(outbox.timeout, outbox.files.send_raw(envelope, &bytes))
                        .await;
                match written {
                    Ok(Ok(_id)) => Ok(()),
                    Ok(Err(err)) => Err(SendError::Transient(format!(
                        "cannot write to the outbox {}: {err}",
                        outbox.dir.display()
                    ))),
                    Err(_) => Err(SendError::Transient(format!(
                        "writing to the outbox {} took longer than {:?}",
                        outbox.dir.display(),
                        outbox.timeout
                    ))),
                }
            }
        }
    }

    /// Where the mail goes, for logs: `smtp host:port` or `outbox DIR`.
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp(relay) => {
                format!("smtp {}:{}", relay.settings.host, relay.settings.port)
            }
            Transport::File(outbox) => format!("outbox {}", outbox.dir.display()),
        }
    }
}

impl SmtpRelay {
    async fn send_raw(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), SendError> {
        let timed_out = || {
            send_error(
                SmtpFailure::Timeout,
                format!("no answer from the SMTP server within {:?}", self.timeout),
            )
        };
        match &self.connections {
            Connections::Direct(pool) => {
                match tokio::time::timeout(self.timeout, pool.send_raw(envelope, bytes)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(DirectError::Connect(err))) => Err(send_error(
                        SmtpFailure::Connection,
                        format!("cannot connect to {}:{}: {err}", pool.host, pool.port),
                    )),
                    Ok(Err(DirectError::Smtp(err))) => {
                        Err(send_error(failure_of(&err), err.to_string()))
                    }
                    Err(_) => Err(timed_out()),
                }
            }
            Connections::Lettre(current) => {
                let pool = match current.read() {
                    Ok(current) => Arc::clone(&current),
                    Err(poisoned) => Arc::clone(&poisoned.into_inner()),
                };
                match tokio::time::timeout(self.timeout, pool.send_raw(envelope, bytes)).await {
                    Ok(Ok(_response)) => Ok(()),
                    Ok(Err(err)) => Err(send_error(failure_of(&err), err.to_string())),
                    Err(_) => {
                        self.replace_pool(current, &pool);
                        Err(timed_out())
                    }
                }
            }
        }
    }

    /// Swaps in a fresh lettre pool unless another send already replaced `stale`.
    fn replace_pool(
        &self,
        current: &RwLock<Arc<AsyncSmtpTransport<Tokio1Executor>>>,
        stale: &Arc<AsyncSmtpTransport<Tokio1Executor>>,
    ) {
        let Ok(fresh) = build_pool(&self.settings, self.timeout) else {
            return;
        };
        let mut current = match current.write() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        if Arc::ptr_eq(&current, stale) {
            *current = Arc::new(fresh);
            tracing::debug!("replaced the SMTP connection pool after a timed-out send");
        }
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, TransportError> {
    let host = host.trim().to_owned();
    TlsParameters::new(host.clone()).map_err(|err| TransportError::Tls {
        host,
        detail: err.to_string(),
    })
}

/// lettre's own pool, used for implicit TLS.
fn build_pool(
    smtp: &SmtpSettings,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, TransportError> {
    let tls = match smtp.tls {
        TlsMode::None => Tls::None,
        TlsMode::Starttls => Tls::Required(tls_parameters(&smtp.host)?),
        TlsMode::Tls => Tls::Wrapper(tls_parameters(&smtp.host)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.trim())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(timeout))
        .pool_config(PoolConfig::new().max_size(smtp.pool_size.max(1)));
    if let Some(credentials) = credentials(smtp) {
        builder = builder.credentials(credentials);
    }
    Ok(builder.build())
}

/// Sends one message at once with a transport built for it: for the odd message outside the
/// delivery queue (a subscription confirmation from the web form, a test mail from the CLI).
/// Regular mail goes through the ledger and a shared [`Transport`].
pub async fn send_now(settings: &Settings, message: &Message) -> Result<(), SendError> {
    let transport = Transport::from_settings(settings)
        .map_err(|err| SendError::Transient(format!("cannot set up the transport: {err}")))?;
    transport.send(message).await
}

/// Replaces every e-mail address in `text` with `***@domain`, so an SMTP server's reply (which
/// often quotes the recipient) can go into a log line.
pub fn redact_addresses(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace() || "<>()[],;:\"'".contains(c))
        .map(|word| {
            let end = word
                .find(|c: char| c.is_whitespace() || "<>()[],;:\"'".contains(c))
                .unwrap_or(word.len());
            let (token, rest) = word.split_at(end);
            match token.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() => format!("***@{domain}{rest}"),
                _ => word.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_transient_unless_the_server_said_5xx_or_the_client_refused() {
        let cases = [
            (SmtpFailure::Reply(421), Retry::Later),
            (SmtpFailure::Reply(450), Retry::Later),
            (SmtpFailure::Reply(451), Retry::Later),
            (SmtpFailure::Reply(452), Retry::Later),
            (SmtpFailure::Reply(500), Retry::Never),
            (SmtpFailure::Reply(550), Retry::Never),
            (SmtpFailure::Reply(552), Retry::Never),
            (SmtpFailure::Reply(554), Retry::Never),
            (SmtpFailure::Reply(599), Retry::Never),
            (SmtpFailure::Timeout, Retry::Later),
            (SmtpFailure::Connection, Retry::Later),
            (SmtpFailure::Tls, Retry::Later),
            (SmtpFailure::Malformed, Retry::Later),
            (SmtpFailure::Shutdown, Retry::Later),
            (SmtpFailure::Client, Retry::Never),
        ];
        for (failure, expected) in cases {
            assert_eq!(classify(failure), expected, "{failure:?}");
        }
    }

    #[test]
    fn a_classified_failure_keeps_its_detail() {
        let err = send_error(SmtpFailure::Reply(550), "550 no such user".into());
        assert_eq!(err, SendError::Permanent("550 no such user".into()));
        assert_eq!(err.detail(), "550 no such user");
        let err = send_error(SmtpFailure::Reply(451), "451 later".into());
        assert_eq!(err, SendError::Transient("451 later".into()));
    }

    #[test]
    fn addresses_in_server_replies_are_redacted_for_logs() {
        assert_eq!(
            redact_addresses("550 5.1.1 <jo.bloggs@example.org>: Recipient address rejected"),
            "550 5.1.1 <***@example.org>: Recipient address rejected"
        );
        assert_eq!(
            redact_addresses("mailbox a@b.org full, try c@d.net"),
            "mailbox ***@b.org full, try ***@d.net"
        );
        assert_eq!(redact_addresses("451 try later"), "451 try later");
    }

    #[tokio::test]
    async fn without_an_smtp_host_messages_become_eml_files_in_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::defaults();
        settings.mail.outbox_dir = dir.path().join("outbox");
        let transport = Transport::from_settings(&settings).unwrap();
        assert!(matches!(transport, Transport::File(_)));
        let message = Message::builder()
            .from("sender@example.org".parse().unwrap())
            .to("reader@example.org".parse().unwrap())
            .subject("Outbox check")
            .body("hello".to_owned())
            .unwrap();
        transport.send(&message).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().unwrap(), "eml");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("Subject: Outbox check"), "{text}");
    }
}
