//! The transports that carry a finished message: an SMTP relay or, when `smtp.host` is empty,
//! lettre's file transport writing one `.eml` file per message under `mail.outbox_dir`, so the
//! daemon works out of the box and its mail can be read.
//!
//! Every send is bounded by one overall timeout (`smtp.timeout_seconds`), so a server that
//! accepts the connection and never answers, or goes silent after DATA, costs one timeout and
//! never a stuck worker. Failures come back classified: [`SendError::Transient`] (4xx replies,
//! timeouts, dropped connections, network and TLS trouble: try again later) or
//! [`SendError::Permanent`] (5xx replies and messages the client itself refuses: give up).
//! A server that will not open a session (a refused greeting, no STARTTLS where `smtp.tls`
//! requires it, failed authentication) is transient whatever its reply: the trouble is the
//! relay's or the settings', not the message's, so it must not fail deliveries for good or
//! count against their subscribers.
//!
//! SMTP connections come from a small pool of our own: lettre connections
//! ([`AsyncSmtpConnection`]) on sockets we open with `TCP_NODELAY`. For `smtp.tls = "starttls"`
//! lettre upgrades the connection after the greeting; for `"tls"` (implicit TLS, usually port
//! 465) the socket is wrapped in TLS (tokio-rustls) before lettre reads the greeting. lettre
//! 0.11.23's own pool is not used because it leaves Nagle's algorithm on, and since it writes a
//! message's final `.` line separately from the body, every message then waits for the
//! server's delayed ACK (40 ms on Linux): at most 25 messages a second per connection (fixed
//! upstream in lettre PR #1159, not released). On our connections a message goes out through
//! `smtp_send`, which writes the message and its final `.` line together.
//!
//! The server's certificate must name `smtp.host` and chain to a trusted CA: the public web PKI
//! roots (webpki-roots), plus the CA certificates in `smtp.ca_file` when it is set (a private or
//! company CA). A certificate that fails that check fails the send as a transient TLS failure;
//! a `smtp.ca_file` that cannot be read or holds no certificate stops [`Transport::from_settings`].
//!
//! Connections the server closed are not reused. Before a parked connection is lent, its
//! socket is peeked (through a second handle on it, without reading): a quiet socket is lent
//! at once; one the server closed, or wrote to unasked (a 421 before closing, a TLS alert), is
//! tested with NOOP and replaced if that fails. A NOOP on every reuse would add a round trip to
//! every message. A connection that failed or was cut short by the timeout is dropped, never
//! parked.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::settings::{Settings, SmtpSettings, TlsMode};

/// Why a transport cannot be set up from the settings.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("smtp.tls: cannot prepare TLS for `{host}`: {detail}")]
    Tls { host: String, detail: String },
    #[error("smtp.ca_file: cannot read {path}: {source}")]
    CaFileUnreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("smtp.ca_file: {path} is not a PEM file of CA certificates: {detail}")]
    CaFileInvalid { path: String, detail: String },
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
    pool: DirectPool,
}

/// At most `slots` connections at once; idle ones are parked for the next send.
struct DirectPool {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    slots: tokio::sync::Semaphore,
    idle: std::sync::Mutex<Vec<Pooled>>,
}

/// An open connection and a second handle on its socket, for peeking at it while it is parked.
/// Both are dropped together, so the socket closes with the connection.
struct Pooled {
    conn: AsyncSmtpConnection,
    socket: std::net::TcpStream,
}

impl Pooled {
    /// Whether the server has neither closed the connection nor sent anything since the last
    /// reply: a peek that would block. Costs a system call, not a round trip.
    fn is_quiet(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.socket.peek(&mut byte), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }
}

/// How a new connection is secured (`smtp.tls`).
enum Security {
    Plain,
    /// Upgraded by lettre after the greeting.
    Starttls(TlsParameters),
    /// TLS from the first byte, before lettre reads the greeting.
    Implicit {
        connector: tokio_rustls::TlsConnector,
        server_name: ServerName<'static>,
    },
}

/// Why a direct connection could not be opened or used.
enum DirectError {
    Connect(std::io::Error),
    /// The TLS handshake failed (an untrusted certificate, a protocol mismatch).
    Tls(String),
    /// The server would not open a session: its greeting, EHLO, STARTTLS or AUTH failed. The
    /// trouble is the relay's or the settings', never the message's.
    Session(smtp::Error),
    Smtp(smtp::Error),
}

impl DirectPool {
    fn new(smtp: &SmtpSettings, security: Security) -> DirectPool {
        DirectPool {
            host: smtp.host.trim().to_owned(),
            port: smtp.port,
            security,
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
        let mut pooled = match self.take_idle() {
            Some(parked) if parked.is_quiet() => parked,
            Some(mut parked) => {
                if parked.conn.test_connected().await {
                    parked
                } else {
                    parked.conn.abort().await;
                    self.connect().await?
                }
            }
            None => self.connect().await?,
        };
        match super::smtp_send::send_message(&mut pooled.conn, envelope, bytes).await {
            Ok(_response) if !pooled.conn.has_broken() => {
                self.park(pooled);
                Ok(())
            }
            Ok(_response) => Ok(()),
            Err(err) => {
                pooled.conn.abort().await;
                Err(DirectError::Smtp(err))
            }
        }
    }

    fn take_idle(&self) -> Option<Pooled> {
        match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        }
    }

    fn park(&self, conn: Pooled) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(poisoned) => poisoned.into_inner().push(conn),
        }
    }

    async fn connect(&self) -> Result<Pooled, DirectError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(DirectError::Connect)?;
        tcp.set_nodelay(true).map_err(DirectError::Connect)?;
        let socket = tcp
            .as_fd()
            .try_clone_to_owned()
            .map(std::net::TcpStream::from)
            .map_err(DirectError::Connect)?;

        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit {
                connector,
                server_name,
            } => {
                let tls = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|err| DirectError::Tls(handshake_failure(&err)))?;
                Box::new(ImplicitTlsStream(tls))
            }
            Security::Plain | Security::Starttls(_) => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(DirectError::Session)?;

        if let Security::Starttls(tls) = &self.security {
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(|err| match rustls_error(&err) {
                    Some(tls) => DirectError::Tls(describe_tls_error(tls)),
                    None => DirectError::Session(err),
                })?;
        }

        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(DirectError::Session)?;
        }
        Ok(Pooled { conn, socket })
    }
}

/// A client TLS stream over a socket, in the shape lettre takes an existing stream in.
#[derive(Debug)]
struct ImplicitTlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for ImplicitTlsStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The rustls error somewhere in `err`'s cause chain (tokio-rustls wraps it in an `io::Error`).
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = current
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        cause = current.source();
    }
    None
}

fn handshake_failure(err: &io::Error) -> String {
    match rustls_error(err) {
        Some(tls) => describe_tls_error(tls),
        None => err.to_string(),
    }
}

fn describe_tls_error(err: &rustls::Error) -> String {
    match err {
        rustls::Error::InvalidCertificate(_) => {
            format!("{err} (a certificate from a private CA needs that CA in smtp.ca_file)")
        }
        other => other.to_string(),
    }
}

/// The CA certificates in `smtp.ca_file` (none when it is empty), each checked to be usable as
/// a trust anchor.
fn extra_roots(smtp: &SmtpSettings) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let path = smtp.ca_file.trim();
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let invalid = |detail: String| TransportError::CaFileInvalid {
        path: path.to_owned(),
        detail,
    };

    let pem = std::fs::read(path).map_err(|source| TransportError::CaFileUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(err.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("it holds no BEGIN CERTIFICATE block".to_owned()));
    }

    let mut check = rustls::RootCertStore::empty();
    for (n, cert) in certs.iter().enumerate() {
        check.add(cert.clone()).map_err(|err| {
            let why = match err {
                rustls::Error::InvalidCertificate(reason) => format!("{reason:?}"),
                other => other.to_string(),
            };
            invalid(format!(
                "certificate {} of {} cannot be read: {why}",
                n + 1,
                certs.len()
            ))
        })?;
    }
    Ok(certs)
}

/// lettre's TLS settings for STARTTLS: the web PKI roots and `extra`.
fn starttls_parameters(
    host: &str,
    extra: &[CertificateDer<'static>],
) -> Result<TlsParameters, TransportError> {
    let tls_error = |detail: String| TransportError::Tls {
        host: host.to_owned(),
        detail,
    };
    let mut builder = TlsParameters::builder(host.to_owned());
    for cert in extra {
        let cert = Certificate::from_der(cert.to_vec()).map_err(|e| tls_error(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| tls_error(e.to_string()))
}

/// Our TLS settings for implicit TLS: the web PKI roots and `extra`, with ring as lettre uses.
fn implicit_tls(host: &str, extra: &[CertificateDer<'static>]) -> Result<Security, TransportError> {
    let tls_error = |detail: String| TransportError::Tls {
        host: host.to_owned(),
        detail,
    };
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|_| tls_error("not a valid DNS name or IP address".to_owned()))?;

    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| tls_error(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();

    Ok(Security::Implicit {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
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

/// Checks what [`Transport::from_settings`] would read or prepare for TLS (the `smtp.ca_file`
/// and the client configuration for `smtp.host`) without opening anything on the network, for
/// `config check`. Nothing is checked when no SMTP server is set.
pub fn check_tls_settings(settings: &Settings) -> Result<(), TransportError> {
    let host = settings.smtp.host.trim();
    if host.is_empty() {
        return Ok(());
    }
    let extra = extra_roots(&settings.smtp)?;
    match settings.smtp.tls {
        TlsMode::None => {}
        TlsMode::Starttls => {
            starttls_parameters(host, &extra)?;
        }
        TlsMode::Tls => {
            implicit_tls(host, &extra)?;
        }
    }
    Ok(())
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
        let host = settings.smtp.host.trim();
        let extra = extra_roots(&settings.smtp)?;
        let security = match settings.smtp.tls {
            TlsMode::None => Security::Plain,
            TlsMode::Starttls => Security::Starttls(starttls_parameters(host, &extra)?),
            TlsMode::Tls => implicit_tls(host, &extra)?,
        };
        Ok(Transport::Smtp(Arc::new(SmtpRelay {
            settings: settings.smtp.clone(),
            timeout,
            pool: DirectPool::new(&settings.smtp, security),
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
        let pool = &self.pool;
        match tokio::time::timeout(self.timeout, pool.send_raw(envelope, bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(DirectError::Connect(err))) => Err(send_error(
                SmtpFailure::Connection,
                format!("cannot connect to {}:{}: {err}", pool.host, pool.port),
            )),
            Ok(Err(DirectError::Tls(detail))) => Err(send_error(
                SmtpFailure::Tls,
                format!(
                    "TLS handshake with {}:{} failed: {detail}",
                    pool.host, pool.port
                ),
            )),
            Ok(Err(DirectError::Session(err))) => Err(SendError::Transient(format!(
                "the SMTP server at {}:{} did not open a session: {err}",
                pool.host, pool.port
            ))),
            Ok(Err(DirectError::Smtp(err))) => Err(send_error(failure_of(&err), err.to_string())),
            Err(_) => Err(send_error(
                SmtpFailure::Timeout,
                format!("no answer from the SMTP server within {:?}", self.timeout),
            )),
        }
    }
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

    #[test]
    fn a_certificate_failure_inside_an_io_error_is_a_tls_error_that_points_at_ca_file() {
        let cause = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = io::Error::new(io::ErrorKind::InvalidData, cause);

        let detail = handshake_failure(&wrapped);

        assert!(detail.contains("invalid peer certificate"), "{detail}");
        assert!(detail.contains("smtp.ca_file"), "{detail}");
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(handshake_failure(&reset), "reset by peer");
    }

    #[test]
    fn an_empty_ca_file_setting_adds_no_roots_and_a_missing_file_names_the_setting() {
        let mut smtp = Settings::defaults().smtp;
        assert!(extra_roots(&smtp).unwrap().is_empty());

        smtp.ca_file = "/nonexistent/council-digest-ca.pem".to_owned();
        let err = extra_roots(&smtp).unwrap_err().to_string();

        assert!(
            err.starts_with("smtp.ca_file: cannot read /nonexistent/council-digest-ca.pem"),
            "{err}"
        );
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
