//! What guards the forms: anti-forgery tokens, rate limits, the honeypot, field checks and the
//! security headers every response carries.

use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::http::{HeaderMap, HeaderValue, header};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::settings::WebSettings;
use crate::tokens::{LinkPurpose, SigningKey};

/// The cookie that holds a visitor's random anti-forgery value.
pub const GUARD_COOKIE: &str = "cd_guard";

/// The hidden form field that carries the signed anti-forgery token.
pub const GUARD_FIELD: &str = "guard";

/// The form field that people leave empty and form-filling robots do not.
pub const HONEYPOT_FIELD: &str = "website";

/// The policy of every page: nothing but the site's own stylesheet, no script at all, no
/// framing, forms post only to this site.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The digest's web view shows the e-mail's own HTML, whose styles are inline attributes.
pub const DIGEST_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
     style-src 'self' 'unsafe-inline'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers every response carries; a handler's own policy is kept.
pub fn add_security_headers(headers: &mut HeaderMap) {
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Links on pages carry tokens; no council site may learn them from the Referer.
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// Anti-forgery tokens by signed double submit: the visitor's cookie holds a random value and
/// each form holds the HMAC of that value under the signing key. A forged cross-site post can
/// neither read the cookie nor compute the token.
#[derive(Debug, Clone)]
pub struct FormGuard {
    key: SigningKey,
}

impl FormGuard {
    pub fn new(key: SigningKey) -> FormGuard {
        FormGuard { key }
    }

    /// The token a form must carry for a visitor whose cookie holds `cookie_value`.
    pub fn token_for(&self, cookie_value: &str) -> String {
        self.key.sign(LinkPurpose::FormGuard, cookie_value)
    }

    /// Whether `token` was made for this visitor's cookie.
    pub fn accepts(&self, cookie_value: Option<&str>, token: Option<&str>) -> bool {
        match (cookie_value, token) {
            (Some(cookie), Some(token)) if !cookie.is_empty() => self
                .key
                .verify(LinkPurpose::FormGuard, token)
                .is_some_and(|subject| subject == cookie),
            _ => false,
        }
    }
}

/// The value of the anti-forgery cookie in a request, if it sent one.
pub fn guard_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == GUARD_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|value| !value.is_empty() && value.len() <= 64)
}

/// The `Set-Cookie` value that gives a visitor a new anti-forgery value.
pub fn guard_set_cookie(value: &str, secure: bool) -> String {
    cookie::Cookie::build((GUARD_COOKIE, value.to_owned()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Strict)
        .build()
        .to_string()
}

/// The limits on the forms that send mail: per client address (per minute) and per target
/// e-mail address (per hour).
///
/// Kept in memory, per process: several daemons behind one address each allow the full rate,
/// and behind a reverse proxy every visitor shares the proxy's address.
pub struct RateLimits {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    per_address: DefaultKeyedRateLimiter<String>,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    Client,
    Address,
}

/// Keys remembered before old ones are dropped.
const KEYS_BEFORE_CLEANUP: usize = 10_000;

impl RateLimits {
    pub fn from_settings(web: &WebSettings) -> RateLimits {
        let per_minute = NonZeroU32::new(web.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        let per_hour =
            NonZeroU32::new(web.rate_limit_per_address_per_hour).unwrap_or(NonZeroU32::MIN);
        RateLimits {
            per_client: RateLimiter::keyed(Quota::per_minute(per_minute)),
            per_address: RateLimiter::keyed(Quota::per_hour(per_hour)),
        }
    }

    /// Counts one form post from `client`.
    pub fn check_client(&self, client: IpAddr) -> Result<(), Limited> {
        if self.per_client.len() > KEYS_BEFORE_CLEANUP {
            self.per_client.retain_recent();
        }
        self.per_client
            .check_key(&client)
            .map_err(|_| Limited::Client)
    }

    /// Counts one message to `address` (already normalised).
    pub fn check_address(&self, address: &str) -> Result<(), Limited> {
        if self.per_address.len() > KEYS_BEFORE_CLEANUP {
            self.per_address.retain_recent();
        }
        self.per_address
            .check_key(&address.to_ascii_lowercase())
            .map_err(|_| Limited::Address)
    }
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

/// A problem with one form field, worded for the person who filled it in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{label}: {problem}")]
pub struct FieldProblem {
    pub label: &'static str,
    pub problem: String,
}

/// Checks a one-line field that may reach a mail header (a name, an organisation): no line
/// breaks or other control characters, at most `max` characters. Returns it trimmed.
pub fn single_line(label: &'static str, raw: &str, max: usize) -> Result<String, FieldProblem> {
    if raw.chars().any(char::is_control) {
        return Err(FieldProblem {
            label,
            problem: "must be one line, without line breaks or control characters".into(),
        });
    }
    bounded(label, raw.trim(), max)
}

/// Checks a multi-line text field: line breaks and tabs are allowed, other control characters
/// are not. Returns it trimmed.
pub fn multi_line(label: &'static str, raw: &str, max: usize) -> Result<String, FieldProblem> {
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(FieldProblem {
            label,
            problem: "cannot contain control characters".into(),
        });
    }
    bounded(label, raw.trim(), max)
}

fn bounded(label: &'static str, value: &str, max: usize) -> Result<String, FieldProblem> {
    if value.chars().count() > max {
        return Err(FieldProblem {
            label,
            problem: format!("is too long (at most {max} characters)"),
        });
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> FormGuard {
        FormGuard::new(SigningKey::from_bytes(
            b"form-guard-test-key-form-guard-test",
        ))
    }

    #[test]
    fn a_form_token_is_accepted_only_with_the_cookie_it_was_made_for() {
        let token = guard().token_for("cookie-one");
        assert!(guard().accepts(Some("cookie-one"), Some(&token)));
        assert!(!guard().accepts(Some("cookie-two"), Some(&token)));
        assert!(!guard().accepts(None, Some(&token)));
        assert!(!guard().accepts(Some("cookie-one"), None));
        assert!(!guard().accepts(Some(""), Some(&guard().token_for(""))));
    }

    #[test]
    fn a_form_token_is_not_an_unsubscribe_link() {
        let token = guard().token_for("42");
        let key = SigningKey::from_bytes(b"form-guard-test-key-form-guard-test");
        assert_eq!(key.verify(LinkPurpose::Unsubscribe, &token), None);
    }

    #[test]
    fn the_guard_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; cd_guard=abc123; b=2"),
        );
        assert_eq!(guard_cookie(&headers).as_deref(), Some("abc123"));
        assert_eq!(guard_cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn one_line_fields_refuse_line_breaks_and_control_characters() {
        for bad in [
            "Jo\r\nBcc: x@y.org",
            "Jo\nBloggs",
            "Jo\u{0}",
            "Jo\u{1b}[31m",
            "Jo\t",
        ] {
            assert!(single_line("Name", bad, 100).is_err(), "{bad:?}");
        }
        assert_eq!(
            single_line("Name", "  Jo Bloggs ", 100).unwrap(),
            "Jo Bloggs"
        );
        let problem = single_line("Name", "abcdef", 5).unwrap_err();
        assert_eq!(
            problem.to_string(),
            "Name: is too long (at most 5 characters)"
        );
    }

    #[test]
    fn multi_line_fields_keep_line_breaks_but_refuse_other_control_characters() {
        assert_eq!(
            multi_line("Message", "line one\r\nline two\n", 100).unwrap(),
            "line one\r\nline two"
        );
        assert!(multi_line("Message", "bell\u{7}", 100).is_err());
    }

    #[test]
    fn a_client_over_its_limit_is_refused_and_others_are_not() {
        let web = WebSettings {
            bind: "127.0.0.1:0".into(),
            base_url: "http://127.0.0.1".into(),
            rate_limit_per_minute: 2,
            rate_limit_per_address_per_hour: 1,
            max_body_bytes: 1000,
        };
        let limits = RateLimits::from_settings(&web);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(limits.check_client(one), Ok(()));
        assert_eq!(limits.check_client(one), Ok(()));
        assert_eq!(limits.check_client(one), Err(Limited::Client));
        assert_eq!(limits.check_client(two), Ok(()));
        assert_eq!(limits.check_address("jo@example.org"), Ok(()));
        assert_eq!(
            limits.check_address("JO@example.org"),
            Err(Limited::Address)
        );
    }
}
