//! The one HTTP client every source fetch goes through.
//!
//! It sends an identifying User-Agent, has connect and total timeouts, caps the (decompressed)
//! body size, asks for compressed answers, sends conditional requests when it has validators,
//! and limits requests in flight both overall and per host (several councils share one
//! ModernGov host). Only http and https are fetched, and `file://` only when the settings
//! allow it. Unless `fetch.allow_private_networks` is set, a host that resolves only to
//! private, loopback or link-local addresses is refused at connect time (a resolver that
//! filters addresses), as is a literal address in such a range, in the first URL or a
//! redirect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::settings::FetchSettings;
use crate::store::sources::HttpValidators;

/// What a fetch brought back.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Body {
        bytes: Bytes,
        validators: HttpValidators,
    },
    /// 304: what was fetched last time still holds.
    NotModified,
}

/// What kind of document a fetch expects; an HTML page instead is a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Xml,
    Calendar,
    Feed,
}

impl Expect {
    fn describe(self) -> &'static str {
        match self {
            Expect::Xml => "XML",
            Expect::Calendar => "an iCalendar file",
            Expect::Feed => "an RSS or Atom feed",
        }
    }
}

/// Why a fetch failed; each is recorded against its source.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    #[error("{url} is refused: {reason}")]
    Refused { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered HTTP {status} (try again later{})",
        .retry_after.map(|d| format!(", after {}s", d.as_secs())).unwrap_or_default())]
    RetryLater {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{url} sent more than {limit} bytes (fetch.max_body_bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url} timed out")]
    Timeout { url: String },
    #[error("{url} answered with an HTML page where {expected} was expected")]
    HtmlPage { url: String, expected: &'static str },
    #[error("cannot fetch {url}: {reason}")]
    Transport { url: String, reason: String },
}

impl FetchError {
    /// How long the server asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::RetryLater { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Whether an address is in a range a public web fetch must not reach.
pub fn is_private_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_address(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
        }
    }
}

/// Resolves names and drops private, loopback and link-local addresses, so a connection can
/// reach only public ones.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| !is_private_address(a.ip())).collect();
            if public.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves only to private, loopback or link-local addresses \
                         (fetch.allow_private_networks is false)"
                    ),
                ));
                return Err(err);
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// Checks a URL's scheme and, for a literal address, its range.
fn check_url(url: &url::Url, allow_private: bool, allow_file: bool) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => {}
        "file" if allow_file => return Ok(()),
        "file" => return Err("file:// URLs need fetch.allow_file_urls = true".to_owned()),
        other => return Err(format!("the scheme `{other}` is not http or https")),
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err("the URL has no host".to_owned()),
    };
    if !allow_private && is_private_address(ip) {
        return Err(format!(
            "{ip} is a private, loopback or link-local address (fetch.allow_private_networks \
             is false)"
        ));
    }
    Ok(())
}

/// Reads a `Retry-After` value: seconds, or an HTTP date.
pub fn parse_retry_after(raw: &str, now: std::time::SystemTime) -> Option<Duration> {
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether a body is an HTML page (an error or login page served with status 200).
fn looks_like_html(body: &[u8]) -> bool {
    let head = &body[..body.len().min(512)];
    let text = String::from_utf8_lossy(head);
    let text = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    text.starts_with("<!doctype html") || text.starts_with("<html")
}

/// The shared client and its concurrency limits. Cloning shares both.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    settings: FetchSettings,
    global: Arc<Semaphore>,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("user_agent", &self.settings.user_agent)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// Builds the client from the settings.
    pub fn new(settings: &FetchSettings) -> Result<Fetcher, String> {
        let allow_private = settings.allow_private_networks;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("more than 5 redirects");
            }
            match check_url(attempt.url(), allow_private, false) {
                Ok(()) => attempt.follow(),
                Err(reason) => attempt.error(format!("a redirect was refused: {reason}")),
            }
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(settings.user_agent.clone())
            .connect_timeout(Duration::from_secs(settings.connect_timeout_seconds))
            .timeout(Duration::from_secs(settings.timeout_seconds))
            .redirect(redirects)
            .gzip(true)
            .brotli(true)
            .deflate(true);
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        let client = builder
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
        Ok(Fetcher {
            client,
            settings: settings.clone(),
            global: Arc::new(Semaphore::new(settings.global_concurrency.max(1))),
            hosts: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Requests allowed in flight to one host.
    pub fn per_host_limit(&self) -> usize {
        self.settings.per_host_concurrency.max(1)
    }

    fn host_limit(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = match self.hosts.lock() {
            Ok(hosts) => hosts,
            Err(poisoned) => poisoned.into_inner(),
        };
        hosts
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_host_concurrency.max(1))))
            .clone()
    }

    /// Fetches `raw_url`, conditionally when `validators` are given.
    pub async fn fetch(
        &self,
        raw_url: &str,
        validators: Option<&HttpValidators>,
        expect: Expect,
    ) -> Result<Fetched, FetchError> {
        let refused = |reason: String| FetchError::Refused {
            url: raw_url.to_owned(),
            reason,
        };
        let url = url::Url::parse(raw_url).map_err(|err| refused(format!("not a URL: {err}")))?;
        check_url(
            &url,
            self.settings.allow_private_networks,
            self.settings.allow_file_urls,
        )
        .map_err(refused)?;
        if url.scheme() == "file" {
            return self.read_file(&url, raw_url, expect).await;
        }

        let host = url.host_str().unwrap_or_default().to_owned();
        let host_limit = self.host_limit(&host);
        let _host_permit = host_limit
            .acquire_owned()
            .await
            .map_err(|_| FetchError::Transport {
                url: raw_url.to_owned(),
                reason: "the fetcher is shutting down".to_owned(),
            })?;
        let _global_permit =
            self.global
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| FetchError::Transport {
                    url: raw_url.to_owned(),
                    reason: "the fetcher is shutting down".to_owned(),
                })?;

        let mut request = self.client.get(url);
        if let Some(validators) = validators {
            if let Some(etag) = &validators.etag {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &validators.last_modified {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
            }
        }
        let mut response = request
            .send()
            .await
            .map_err(|err| transport_error(raw_url, &err))?;
        let status = response.status();
        tracing::debug!(status = status.as_u16(), "fetched");

        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            return Err(FetchError::RetryLater {
                url: raw_url.to_owned(),
                status: status.as_u16(),
                retry_after,
            });
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: raw_url.to_owned(),
                status: status.as_u16(),
            });
        }

        let limit = self.settings.max_body_bytes;
        let too_large = || FetchError::TooLarge {
            url: raw_url.to_owned(),
            limit,
        };
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(too_large());
        }
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let new_validators = HttpValidators {
            etag: header(reqwest::header::ETAG),
            last_modified: header(reqwest::header::LAST_MODIFIED),
        };
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();

        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| transport_error(raw_url, &err))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let html_type = content_type.to_ascii_lowercase().starts_with("text/html");
        if looks_like_html(&body)
            || (html_type && expect != Expect::Feed && !looks_expected(&body, expect))
        {
            return Err(FetchError::HtmlPage {
                url: raw_url.to_owned(),
                expected: expect.describe(),
            });
        }
        Ok(Fetched::Body {
            bytes: Bytes::from(body),
            validators: new_validators,
        })
    }

    async fn read_file(
        &self,
        url: &url::Url,
        raw_url: &str,
        expect: Expect,
    ) -> Result<Fetched, FetchError> {
        let path = url.to_file_path().map_err(|_| FetchError::Refused {
            url: raw_url.to_owned(),
            reason: "not a local file path".to_owned(),
        })?;
        let io_error = |err: std::io::Error| FetchError::Transport {
            url: raw_url.to_owned(),
            reason: err.to_string(),
        };
        let metadata = tokio::fs::metadata(&path).await.map_err(io_error)?;
        if metadata.len() > self.settings.max_body_bytes {
            return Err(FetchError::TooLarge {
                url: raw_url.to_owned(),
                limit: self.settings.max_body_bytes,
            });
        }
        let body = tokio::fs::read(&path).await.map_err(io_error)?;
        if looks_like_html(&body) {
            return Err(FetchError::HtmlPage {
                url: raw_url.to_owned(),
                expected: expect.describe(),
            });
        }
        Ok(Fetched::Body {
            bytes: Bytes::from(body),
            validators: HttpValidators::default(),
        })
    }
}

/// Whether a body served as text/html nonetheless starts like the expected document.
fn looks_expected(body: &[u8], expect: Expect) -> bool {
    let head = String::from_utf8_lossy(&body[..body.len().min(64)]);
    let head = head.trim_start_matches('\u{feff}').trim_start();
    match expect {
        Expect::Xml | Expect::Feed => head.starts_with("<?xml"),
        Expect::Calendar => head.starts_with("BEGIN:VCALENDAR"),
    }
}

fn transport_error(url: &str, err: &reqwest::Error) -> FetchError {
    if err.is_timeout() {
        return FetchError::Timeout {
            url: url.to_owned(),
        };
    }
    // The cause chain holds the useful part (a refused address, a reset connection). The URL is
    // in the message already, so reqwest's " for url (...)" is left out.
    let mut reason = err.to_string();
    if let Some(request_url) = err.url() {
        reason = reason.replace(&format!(" for url ({request_url})"), "");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    FetchError::Transport {
        url: url.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private_address(private.parse().unwrap()), "{private}");
        }
        for public in [
            "81.2.69.142",
            "8.8.8.8",
            "2a00:1450:4009:81f::200e",
            "172.32.0.1",
        ] {
            assert!(!is_private_address(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn only_http_and_https_are_fetched_and_file_only_when_allowed() {
        let check = |raw: &str, private: bool, file: bool| {
            check_url(&url::Url::parse(raw).unwrap(), private, file)
        };
        assert!(check("https://democracy.example.gov.uk/x", false, false).is_ok());
        assert!(check("ftp://example.gov.uk/x", true, true).is_err());
        assert!(check("file:///tmp/x.ics", false, false).is_err());
        assert!(check("file:///tmp/x.ics", false, true).is_ok());
        assert!(check("http://127.0.0.1:8080/x", false, false).is_err());
        assert!(check("http://[::1]/x", false, false).is_err());
        assert!(check("http://127.0.0.1:8080/x", true, false).is_ok());
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:10:00 GMT", now),
            Some(Duration::from_secs(600))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn html_pages_are_told_from_documents() {
        assert!(looks_like_html(b"\n  <!DOCTYPE html><html>"));
        assert!(looks_like_html(b"<HTML><body>Error</body>"));
        assert!(!looks_like_html(b"<?xml version=\"1.0\"?><committees/>"));
        assert!(!looks_like_html(b"BEGIN:VCALENDAR\r\n"));
    }

    #[tokio::test]
    async fn a_loopback_literal_is_refused_before_any_connection() {
        let mut settings = crate::settings::Settings::defaults().fetch;
        settings.allow_private_networks = false;
        let fetcher = Fetcher::new(&settings).unwrap();
        let err = fetcher
            .fetch("http://127.0.0.1:9/x", None, Expect::Xml)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Refused { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        let settings = crate::settings::Settings::defaults().fetch;
        let fetcher = Fetcher::new(&settings).unwrap();
        let err = fetcher
            .fetch("http://localhost:9/x", None, Expect::Xml)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("private, loopback or link-local"), "{text}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_url_once_and_its_cause() {
        let mut settings = crate::settings::Settings::defaults().fetch;
        settings.allow_private_networks = true;
        // The listener is dropped at once: nothing listens on the port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x");
        let fetcher = Fetcher::new(&settings).unwrap();
        let err = fetcher.fetch(&url, None, Expect::Xml).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FetchError::Transport { .. }), "{text}");
        assert_eq!(text.matches(url.as_str()).count(), 1, "{text}");
        assert!(text.contains("Connection refused"), "{text}");
    }
}
