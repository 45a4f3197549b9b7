//! Settings: layered, checked for unknown keys, and validated once at start-up.
//!
//! Layers, lowest first: `config/default.toml` (built into the binary; it holds every key and is
//! therefore also the list of known keys), an optional file given by `--config`, then
//! `COUNCIL_DIGEST__SECTION__KEY` environment variables, which win.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::{CouncilSlug, SupportLevel};

/// The built-in defaults: the text of `config/default.toml`.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of environment variables that override settings.
pub const ENV_PREFIX: &str = "COUNCIL_DIGEST";

/// Everything wrong with one set of settings; each entry is one line for the operator.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings:\n  {}", .problems.join("\n  "))]
pub struct SettingsError {
    pub problems: Vec<String>,
}

impl SettingsError {
    fn one(problem: impl Into<String>) -> SettingsError {
        SettingsError {
            problems: vec![problem.into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub web: WebSettings,
    pub smtp: SmtpSettings,
    pub mail: MailSettings,
    pub tokens: TokenSettings,
    pub fetch: FetchSettings,
    pub poll: PollSettings,
    pub schedule: ScheduleSettings,
    pub ranking: RankingSettings,
    pub promotion: PromotionSettings,
    pub digest: DigestSettings,
    pub delivery: DeliverySettings,
    pub log: LogSettings,
    #[serde(default)]
    pub councils: BTreeMap<String, CouncilOverride>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May carry a password, so it is kept secret and printed masked.
    pub url: SecretString,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    pub bind: String,
    pub base_url: String,
    pub rate_limit_per_minute: u32,
    pub rate_limit_per_address_per_hour: u32,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TlsMode {
    None,
    Starttls,
    Tls,
}

impl TryFrom<String> for TlsMode {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        match raw.as_str() {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::Starttls),
            "tls" => Ok(TlsMode::Tls),
            _ => Err(format!("`{raw}` is not one of none, starttls, tls")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// PEM file of extra CA certificates to trust for TLS; empty for the web PKI roots only.
    pub ca_file: String,
    pub username: String,
    pub password: SecretString,
    pub timeout_seconds: u64,
    pub pool_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    pub from: String,
    pub reply_to: String,
    pub list_id: String,
    pub unsubscribe_mailto: String,
    pub outbox_dir: PathBuf,
    pub templates_dir: String,
    pub dkim_selector: String,
    pub dkim_domain: String,
    pub dkim_private_key_file: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub signing_key: SecretString,
    pub confirmation_ttl_hours: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchSettings {
    pub user_agent: String,
    pub connect_timeout_seconds: u64,
    pub timeout_seconds: u64,
    pub max_body_bytes: u64,
    pub global_concurrency: usize,
    pub per_host_concurrency: usize,
    pub allow_private_networks: bool,
    pub allow_file_urls: bool,
    pub backoff_base_seconds: u64,
    pub backoff_max_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollSettings {
    pub window_days_back: u32,
    pub window_days_ahead: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    pub poll_full: CronSchedule,
    pub poll_limited: CronSchedule,
    pub promotion: CronSchedule,
    pub digest: CronSchedule,
    pub delivery: CronSchedule,
    pub lease_seconds: u64,
    pub poll_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingSettings {
    pub resident_weight: f64,
    pub professional_weight: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromotionSettings {
    pub threshold: f64,
    pub max_full_councils: u32,
    pub max_per_run: u32,
    pub demote_below: f64,
    pub demote_after_days: u32,
    pub auto_approve_requests: bool,
    pub requests_count_against_capacity: bool,
}

impl PromotionSettings {
    /// The demotion floor, when demotion is switched on (a non-negative `demote_below`).
    pub fn demotion_floor(&self) -> Option<f64> {
        (self.demote_below >= 0.0).then_some(self.demote_below)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSettings {
    pub days_ahead: u32,
    pub days_back: u32,
    pub send_when_all_limited: bool,
    pub extract_chars: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub rate_per_second: f64,
    pub workers: usize,
    pub lease_seconds: u64,
    pub backoff_base_seconds: u64,
    pub backoff_max_seconds: u64,
    pub max_attempts: u32,
    pub suppress_after_hard_failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LogFormat {
    Text,
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        match raw.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("`{raw}` is not one of text, json")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

/// An operator's per-council settings, `[councils.<slug>]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CouncilOverride {
    pub base_url: Option<String>,
    #[serde(default)]
    pub feeds: Vec<String>,
    pub support: Option<SupportLevel>,
}

/// A cron expression (with seconds) evaluated in Europe/London, parsed once from the settings.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    pub expression: String,
    pub schedule: cron::Schedule,
}

impl CronSchedule {
    /// The first firing strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let local = after.with_timezone(&crate::domain::UK_ZONE);
        self.schedule.after(&local).next().map(|at| at.to_utc())
    }

    /// Whether the schedule ever fires between 01:00 and 02:00 local time, the hour that does
    /// not exist on the day the clocks go forward.
    pub fn fires_in_spring_forward_gap(&self) -> bool {
        // Evaluating in UTC gives the naive wall-clock times, which is what the gap is about.
        let start = chrono::DateTime::parse_from_rfc3339("2030-01-06T23:59:59Z")
            .map(|t| t.to_utc())
            .unwrap_or_default();
        self.schedule
            .after(&start)
            .take_while(|at| (*at - start).num_days() < 8)
            .any(|at| chrono::Timelike::hour(&at) == 1)
    }
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let schedule = cron::Schedule::from_str(raw).map_err(|err| {
            format!("`{raw}` is not a cron expression (sec min hour day month weekday): {err}")
        })?;
        Ok(CronSchedule {
            expression: raw.to_owned(),
            schedule,
        })
    }
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the settings come from; kept so that SIGHUP can load them again the same way.
#[derive(Debug, Clone, Default)]
pub struct SettingsSource {
    pub file: Option<PathBuf>,
}

impl SettingsSource {
    /// Reads, checks and validates every layer.
    pub fn load(&self) -> Result<Settings, SettingsError> {
        let known = known_keys();
        let mut problems = Vec::new();

        if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file).map_err(|err| {
                SettingsError::one(format!(
                    "cannot read settings file {}: {err}",
                    file.display()
                ))
            })?;
            let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
                SettingsError::one(format!(
                    "{}{}: not valid TOML: {}",
                    file.display(),
                    line_and_column(&text, err.span()),
                    err.message().trim_end().replace('\n', "; ")
                ))
            })?;
            check_keys(
                &table,
                &known,
                "",
                &file.display().to_string(),
                &mut problems,
            );
        }
        for (name, _) in std::env::vars() {
            if let Some(path) = env_key_path(&name) {
                if !is_known(&known, &path) {
                    problems.push(format!("environment variable {name}: unknown key `{path}`"));
                }
            }
        }
        if !problems.is_empty() {
            return Err(SettingsError { problems });
        }

        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(file) = &self.file {
            builder = builder.add_source(File::from(file.as_path()).format(FileFormat::Toml));
        }
        // Each `COUNCIL_DIGEST__COUNCILS__<SLUG>__FEEDS` is a comma-separated list; no other
        // value is split (a log filter has commas).
        let mut environment = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("feeds");
        for (name, _) in std::env::vars() {
            if let Some(path) = env_key_path(&name).filter(|path| path.ends_with(".feeds")) {
                environment = environment.with_list_parse_key(&path);
            }
        }
        builder = builder.add_source(environment);
        let merged = builder
            .build()
            .map_err(|err| SettingsError::one(format!("cannot merge settings: {err}")))?;
        let settings: Settings = merged
            .try_deserialize()
            .map_err(|err| SettingsError::one(format!("{}: {err}", self.describe())))?;

        settings.validate()?;
        Ok(settings)
    }

    fn describe(&self) -> String {
        match &self.file {
            Some(file) => format!("settings (defaults, {}, environment)", file.display()),
            None => "settings (defaults, environment)".to_owned(),
        }
    }
}

/// `:LINE:COLUMN` (both from 1) of the start of a parse error's span, or nothing without one.
fn line_and_column(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(start) = span.map(|span| span.start.min(text.len())) else {
        return String::new();
    };
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!(":{line}:{column}")
}

/// Maps `COUNCIL_DIGEST__PROMOTION__THRESHOLD` to `promotion.threshold`.
fn env_key_path(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?.strip_prefix("__")?;
    Some(
        rest.split("__")
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// Every dotted key of the built-in defaults. `councils.<slug>.*` is checked separately.
fn known_keys() -> Vec<String> {
    fn walk(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) if !inner.is_empty() => walk(inner, &path, out),
                _ => out.push(path),
            }
        }
    }
    let defaults: toml::Table = DEFAULT_TOML.parse().unwrap_or_default();
    let mut out = Vec::new();
    walk(&defaults, "", &mut out);
    out
}

const COUNCIL_KEYS: &[&str] = &["base_url", "feeds", "support"];

fn is_known(known: &[String], path: &str) -> bool {
    if let Some(rest) = path.strip_prefix("councils.") {
        return match rest.split_once('.') {
            Some((_, key)) => COUNCIL_KEYS.contains(&key),
            None => true,
        };
    }
    known
        .iter()
        .any(|k| k == path || k.starts_with(&format!("{path}.")))
}

fn check_keys(
    table: &toml::Table,
    known: &[String],
    prefix: &str,
    origin: &str,
    problems: &mut Vec<String>,
) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if !is_known(known, &path) {
            problems.push(format!("{origin}: unknown key `{path}`"));
            continue;
        }
        if let toml::Value::Table(inner) = value {
            check_keys(inner, known, &path, origin, problems);
        }
    }
}

impl Settings {
    /// The built-in defaults alone, with no file and no environment (tests start from these).
    pub fn defaults() -> Settings {
        let merged = Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<Settings>());
        match merged {
            Ok(settings) => settings,
            Err(err) => panic!("the built-in config/default.toml does not load: {err}"),
        }
    }

    /// Checks every value once; each problem is one line naming its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        let registry = crate::registry::Registry::builtin();

        let db = self.database.url.expose_secret();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            problems.push(
                "database.url: must start with sqlite:, postgres:// or postgresql://".to_owned(),
            );
        }
        if self.database.max_connections == 0 {
            problems.push("database.max_connections: must be at least 1".to_owned());
        }
        if self.web.bind.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "web.bind: `{}` is not an address such as 127.0.0.1:8080",
                self.web.bind
            ));
        }
        check_http_url("web.base_url", &self.web.base_url, &mut problems);
        if self.web.rate_limit_per_minute == 0 {
            problems.push("web.rate_limit_per_minute: must be at least 1".to_owned());
        }
        if self.web.rate_limit_per_address_per_hour == 0 {
            problems.push("web.rate_limit_per_address_per_hour: must be at least 1".to_owned());
        }
        if self.web.max_body_bytes < 1024 {
            problems.push("web.max_body_bytes: must be at least 1024".to_owned());
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(format!(
                "mail.from: `{}` is not a valid sender such as `Name <digest@example.org>`",
                self.mail.from
            ));
        }
        if !self.mail.reply_to.is_empty()
            && self
                .mail
                .reply_to
                .parse::<lettre::message::Mailbox>()
                .is_err()
        {
            problems.push(format!(
                "mail.reply_to: `{}` is not a valid address",
                self.mail.reply_to
            ));
        }
        if !self.mail.unsubscribe_mailto.is_empty()
            && self
                .mail
                .unsubscribe_mailto
                .parse::<crate::domain::EmailAddress>()
                .is_err()
        {
            problems.push(format!(
                "mail.unsubscribe_mailto: `{}` is not a valid address",
                self.mail.unsubscribe_mailto
            ));
        }
        let dkim = [
            &self.mail.dkim_selector,
            &self.mail.dkim_domain,
            &self.mail.dkim_private_key_file,
        ];
        let dkim_set = dkim.iter().filter(|v| !v.is_empty()).count();
        if dkim_set != 0 && dkim_set != 3 {
            problems.push(
                "mail.dkim_*: set dkim_selector, dkim_domain and dkim_private_key_file together"
                    .to_owned(),
            );
        }
        let key_len = self.tokens.signing_key.expose_secret().len();
        if key_len != 0 && key_len < 32 {
            problems.push("tokens.signing_key: must be at least 32 characters".to_owned());
        }
        if self.tokens.confirmation_ttl_hours == 0 {
            problems.push("tokens.confirmation_ttl_hours: must be at least 1".to_owned());
        }
        if self.fetch.global_concurrency == 0 || self.fetch.per_host_concurrency == 0 {
            problems.push("fetch.*_concurrency: must be at least 1".to_owned());
        }
        if self.fetch.max_body_bytes == 0 {
            problems.push("fetch.max_body_bytes: must be at least 1".to_owned());
        }
        if self.fetch.backoff_base_seconds == 0
            || self.fetch.backoff_max_seconds < self.fetch.backoff_base_seconds
        {
            problems
                .push("fetch.backoff_*: base must be at least 1 and max at least base".to_owned());
        }
        if self.fetch.backoff_max_seconds > 86_400 {
            problems.push("fetch.backoff_max_seconds: at most 86400 (a day)".to_owned());
        }
        if self.schedule.lease_seconds < 3 {
            problems.push("schedule.lease_seconds: at least 3".to_owned());
        }
        if self.schedule.digest.fires_in_spring_forward_gap() {
            problems.push(format!(
                "schedule.digest: `{}` fires between 01:00 and 02:00, an hour that does not \
                 exist in Europe/London when the clocks go forward; choose another time",
                self.schedule.digest.expression
            ));
        }
        for (key, value) in [
            ("ranking.resident_weight", self.ranking.resident_weight),
            (
                "ranking.professional_weight",
                self.ranking.professional_weight,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                problems.push(format!("{key}: must be a non-negative number, not {value}"));
            }
        }
        if self.ranking.resident_weight == 0.0 && self.ranking.professional_weight == 0.0 {
            problems.push(
                "ranking.resident_weight and ranking.professional_weight: at least one must be \
                 above zero, or no council could reach promotion.threshold"
                    .to_owned(),
            );
        }
        if !self.promotion.threshold.is_finite() || self.promotion.threshold <= 0.0 {
            problems.push(format!(
                "promotion.threshold: must be a number above zero, not {}",
                self.promotion.threshold
            ));
        }
        if !self.promotion.demote_below.is_finite() {
            problems.push("promotion.demote_below: must be a number".to_owned());
        }
        if self.promotion.max_per_run == 0 {
            problems.push("promotion.max_per_run: must be at least 1".to_owned());
        }
        if !self.delivery.rate_per_second.is_finite() || self.delivery.rate_per_second <= 0.0 {
            problems.push("delivery.rate_per_second: must be a number above zero".to_owned());
        }
        if self.delivery.workers == 0 || self.delivery.max_attempts == 0 {
            problems.push("delivery.workers and delivery.max_attempts: at least 1".to_owned());
        }
        if self.delivery.lease_seconds < 10 {
            problems.push("delivery.lease_seconds: at least 10".to_owned());
        }
        if self.delivery.suppress_after_hard_failures == 0 {
            problems.push("delivery.suppress_after_hard_failures: at least 1".to_owned());
        }
        if !self.smtp.host.is_empty() && self.smtp.port == 0 {
            problems.push("smtp.port: must be a port number".to_owned());
        }
        if self.smtp.pool_size == 0 || self.smtp.timeout_seconds == 0 {
            problems.push("smtp.pool_size and smtp.timeout_seconds: at least 1".to_owned());
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            problems.push(format!(
                "log.filter: `{}` is not a tracing filter",
                self.log.filter
            ));
        }

        let mut pinned_full = 0;
        for (slug, council) in &self.councils {
            let key = format!("councils.{slug}");
            match slug.parse::<CouncilSlug>() {
                Ok(parsed) if registry.get(&parsed).is_none() => {
                    problems.push(format!("{key}: no council `{slug}` in the registry"));
                }
                Ok(_) => {}
                Err(err) => problems.push(format!("{key}: {err}")),
            }
            if let Some(url) = &council.base_url {
                check_http_url(&format!("{key}.base_url"), url, &mut problems);
            }
            for feed in &council.feeds {
                check_feed_url(
                    &format!("{key}.feeds"),
                    feed,
                    self.fetch.allow_file_urls,
                    &mut problems,
                );
            }
            if council.support == Some(SupportLevel::Full) {
                pinned_full += 1;
            }
        }
        if pinned_full > self.promotion.max_full_councils {
            problems.push(format!(
                "promotion.max_full_councils: {} is fewer than the {pinned_full} councils named \
                 full in [councils.*]",
                self.promotion.max_full_councils
            ));
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError { problems })
        }
    }

    /// Settings named full by the operator, by slug.
    pub fn pinned_support(&self) -> impl Iterator<Item = (&str, SupportLevel)> {
        self.councils
            .iter()
            .filter_map(|(slug, c)| c.support.map(|level| (slug.as_str(), level)))
    }

    /// The effective settings as TOML, secrets masked: what `config check` prints.
    pub fn to_masked_toml(&self) -> String {
        let mask = |secret: &SecretString| {
            if secret.expose_secret().is_empty() {
                String::new()
            } else {
                "********".to_owned()
            }
        };
        let mut out = String::new();
        let mut section = |name: &str, rows: Vec<(&str, String)>| {
            out.push_str(&format!("[{name}]\n"));
            for (key, value) in rows {
                out.push_str(&format!("{key} = {value}\n"));
            }
            out.push('\n');
        };
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        section(
            "database",
            vec![
                (
                    "url",
                    q(&mask_url_password(self.database.url.expose_secret())),
                ),
                ("max_connections", self.database.max_connections.to_string()),
            ],
        );
        section(
            "web",
            vec![
                ("bind", q(&self.web.bind)),
                ("base_url", q(&self.web.base_url)),
                (
                    "rate_limit_per_minute",
                    self.web.rate_limit_per_minute.to_string(),
                ),
                (
                    "rate_limit_per_address_per_hour",
                    self.web.rate_limit_per_address_per_hour.to_string(),
                ),
                ("max_body_bytes", self.web.max_body_bytes.to_string()),
            ],
        );
        let tls = match self.smtp.tls {
            TlsMode::None => "none",
            TlsMode::Starttls => "starttls",
            TlsMode::Tls => "tls",
        };
        section(
            "smtp",
            vec![
                ("host", q(&self.smtp.host)),
                ("port", self.smtp.port.to_string()),
                ("tls", q(tls)),
                ("ca_file", q(&self.smtp.ca_file)),
                ("username", q(&self.smtp.username)),
                ("password", q(&mask(&self.smtp.password))),
                ("timeout_seconds", self.smtp.timeout_seconds.to_string()),
                ("pool_size", self.smtp.pool_size.to_string()),
            ],
        );
        section(
            "mail",
            vec![
                ("from", q(&self.mail.from)),
                ("reply_to", q(&self.mail.reply_to)),
                ("list_id", q(&self.mail.list_id)),
                ("unsubscribe_mailto", q(&self.mail.unsubscribe_mailto)),
                ("outbox_dir", q(&self.mail.outbox_dir.display().to_string())),
                ("templates_dir", q(&self.mail.templates_dir)),
                ("dkim_selector", q(&self.mail.dkim_selector)),
                ("dkim_domain", q(&self.mail.dkim_domain)),
                ("dkim_private_key_file", q(&self.mail.dkim_private_key_file)),
            ],
        );
        section(
            "tokens",
            vec![
                ("signing_key", q(&mask(&self.tokens.signing_key))),
                (
                    "confirmation_ttl_hours",
                    self.tokens.confirmation_ttl_hours.to_string(),
                ),
            ],
        );
        let f = &self.fetch;
        section(
            "fetch",
            vec![
                ("user_agent", q(&f.user_agent)),
                (
                    "connect_timeout_seconds",
                    f.connect_timeout_seconds.to_string(),
                ),
                ("timeout_seconds", f.timeout_seconds.to_string()),
                ("max_body_bytes", f.max_body_bytes.to_string()),
                ("global_concurrency", f.global_concurrency.to_string()),
                ("per_host_concurrency", f.per_host_concurrency.to_string()),
                (
                    "allow_private_networks",
                    f.allow_private_networks.to_string(),
                ),
                ("allow_file_urls", f.allow_file_urls.to_string()),
                ("backoff_base_seconds", f.backoff_base_seconds.to_string()),
                ("backoff_max_seconds", f.backoff_max_seconds.to_string()),
            ],
        );
        section(
            "poll",
            vec![
                ("window_days_back", self.poll.window_days_back.to_string()),
                ("window_days_ahead", self.poll.window_days_ahead.to_string()),
            ],
        );
        let s = &self.schedule;
        section(
            "schedule",
            vec![
                ("poll_full", q(&s.poll_full.expression)),
                ("poll_limited", q(&s.poll_limited.expression)),
                ("promotion", q(&s.promotion.expression)),
                ("digest", q(&s.digest.expression)),
                ("delivery", q(&s.delivery.expression)),
                ("lease_seconds", s.lease_seconds.to_string()),
                ("poll_on_start", s.poll_on_start.to_string()),
            ],
        );
        section(
            "ranking",
            vec![
                ("resident_weight", self.ranking.resident_weight.to_string()),
                (
                    "professional_weight",
                    self.ranking.professional_weight.to_string(),
                ),
            ],
        );
        let p = &self.promotion;
        section(
            "promotion",
            vec![
                ("threshold", p.threshold.to_string()),
                ("max_full_councils", p.max_full_councils.to_string()),
                ("max_per_run", p.max_per_run.to_string()),
                ("demote_below", p.demote_below.to_string()),
                ("demote_after_days", p.demote_after_days.to_string()),
                ("auto_approve_requests", p.auto_approve_requests.to_string()),
                (
                    "requests_count_against_capacity",
                    p.requests_count_against_capacity.to_string(),
                ),
            ],
        );
        section(
            "digest",
            vec![
                ("days_ahead", self.digest.days_ahead.to_string()),
                ("days_back", self.digest.days_back.to_string()),
                (
                    "send_when_all_limited",
                    self.digest.send_when_all_limited.to_string(),
                ),
                ("extract_chars", self.digest.extract_chars.to_string()),
            ],
        );
        let d = &self.delivery;
        section(
            "delivery",
            vec![
                ("rate_per_second", d.rate_per_second.to_string()),
                ("workers", d.workers.to_string()),
                ("lease_seconds", d.lease_seconds.to_string()),
                ("backoff_base_seconds", d.backoff_base_seconds.to_string()),
                ("backoff_max_seconds", d.backoff_max_seconds.to_string()),
                ("max_attempts", d.max_attempts.to_string()),
                (
                    "suppress_after_hard_failures",
                    d.suppress_after_hard_failures.to_string(),
                ),
            ],
        );
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        section(
            "log",
            vec![("format", q(format)), ("filter", q(&self.log.filter))],
        );
        for (slug, council) in &self.councils {
            let mut rows = Vec::new();
            if let Some(url) = &council.base_url {
                rows.push(("base_url", q(url)));
            }
            let feeds: Vec<String> = council.feeds.iter().map(|f| q(f)).collect();
            rows.push(("feeds", format!("[{}]", feeds.join(", "))));
            if let Some(level) = council.support {
                rows.push(("support", q(level.as_str())));
            }
            section(&format!("councils.{slug}"), rows);
        }
        out
    }

    /// The SQLite file named by `database.url`, when the database is SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database.url.expose_secret();
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| Path::new(path).to_path_buf())
    }
}

fn check_http_url(key: &str, raw: &str, problems: &mut Vec<String>) {
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        Ok(_) => problems.push(format!("{key}: `{raw}` must be an http or https URL")),
        Err(err) => problems.push(format!("{key}: `{raw}` is not a URL: {err}")),
    }
}

fn check_feed_url(key: &str, raw: &str, allow_file: bool, problems: &mut Vec<String>) {
    match url::Url::parse(raw) {
        Ok(url) if url.scheme() == "file" && allow_file => {}
        Ok(url) if url.scheme() == "file" => problems.push(format!(
            "{key}: `{raw}` is a file:// URL, allowed only with fetch.allow_file_urls = true"
        )),
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        Ok(_) => problems.push(format!("{key}: `{raw}` must be an http or https URL")),
        Err(err) => problems.push(format!("{key}: `{raw}` is not a URL: {err}")),
    }
}

/// Replaces the password of a URL such as `postgres://user:pw@host/db` with asterisks.
pub fn mask_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("********"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.toml");
        std::fs::write(&path, text).unwrap();
        SettingsSource { file: Some(path) }.load()
    }

    #[test]
    fn the_built_in_defaults_are_valid() {
        Settings::defaults().validate().unwrap();
    }

    #[test]
    fn an_unknown_key_is_named_with_its_file() {
        let err = load_text("[promotion]\nthresold = 3.0\n").unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(
            err.problems[0].contains("unknown key `promotion.thresold`"),
            "{err}"
        );
        assert!(err.problems[0].contains("settings.toml"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_toml_is_named_with_the_line_and_column_of_the_fault() {
        // The unclosed `[smtp` header is on line 3.
        let err = load_text("[web]\nbind = \"127.0.0.1:8080\"\n[smtp\nport = 2\n").unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].contains("settings.toml:3:"), "{err}");
        assert!(err.problems[0].contains("not valid TOML"), "{err}");
    }

    #[test]
    fn an_unknown_tls_mode_or_log_format_lists_the_accepted_ones() {
        let err = load_text("[smtp]\ntls = \"ssl\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("`ssl` is not one of none, starttls, tls"),
            "{err}"
        );
        let err = load_text("[log]\nformat = \"yaml\"\n").unwrap_err();
        assert!(
            err.to_string().contains("`yaml` is not one of text, json"),
            "{err}"
        );
        assert_eq!(
            load_text("[smtp]\ntls = \"starttls\"\n").unwrap().smtp.tls,
            TlsMode::Starttls
        );
    }

    #[test]
    fn an_unknown_section_is_an_error() {
        let err = load_text("[promotions]\nthreshold = 3.0\n").unwrap_err();
        assert!(
            err.problems[0].contains("unknown key `promotions`"),
            "{err}"
        );
    }

    #[test]
    fn an_invalid_cron_expression_names_its_key() {
        let err = load_text("[schedule]\ndigest = \"every monday\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("digest"), "{text}");
        assert!(text.contains("every monday"), "{text}");
    }

    #[test]
    fn a_digest_time_in_the_spring_forward_gap_is_refused() {
        let err = load_text("[schedule]\ndigest = \"0 30 1 * * Mon\"\n").unwrap_err();
        assert!(err.to_string().contains("schedule.digest"), "{err}");
        assert!(load_text("[schedule]\ndigest = \"0 30 2 * * Mon\"\n").is_ok());
    }

    #[test]
    fn negative_weights_and_a_zero_threshold_are_each_one_line() {
        let err = load_text("[ranking]\nresident_weight = -1.0\n[promotion]\nthreshold = 0.0\n")
            .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(
            err.problems[0].starts_with("ranking.resident_weight"),
            "{err}"
        );
        assert!(err.problems[1].starts_with("promotion.threshold"), "{err}");
    }

    #[test]
    fn an_invalid_sender_and_base_url_are_refused() {
        let err = load_text("[mail]\nfrom = \"not an address\"\n[web]\nbase_url = \"ftp://x\"\n")
            .unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    #[test]
    fn council_overrides_must_name_a_registry_council() {
        let err = load_text("[councils.atlantis]\nsupport = \"full\"\n").unwrap_err();
        assert!(err.to_string().contains("no council `atlantis`"), "{err}");
        let ok = load_text(
            "[councils.wolverhampton]\nsupport = \"full\"\nfeeds = [\"https://e.org/a.ics\"]\n",
        )
        .unwrap();
        assert_eq!(
            ok.councils["wolverhampton"].support,
            Some(SupportLevel::Full)
        );
    }

    #[test]
    fn an_unknown_key_inside_a_council_table_is_an_error() {
        let err = load_text("[councils.wolverhampton]\nsuport = \"full\"\n").unwrap_err();
        assert!(
            err.problems[0].contains("councils.wolverhampton.suport"),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let settings = load_text(
            "[database]\nurl = \"postgres://app:hunter2@db/cd\"\n[smtp]\npassword = \"pw-123\"\n\
             [tokens]\nsigning_key = \"0123456789abcdef0123456789abcdef\"\n",
        )
        .unwrap();
        let printed = settings.to_masked_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("pw-123"), "{printed}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        assert!(!format!("{settings:?}").contains("hunter2"));
        let reparsed: toml::Table = printed.parse().unwrap();
        assert_eq!(reparsed["smtp"]["password"].as_str(), Some("********"));
    }

    #[test]
    fn sqlite_paths_are_read_from_the_url() {
        let mut settings = Settings::defaults();
        assert_eq!(
            settings.sqlite_path(),
            Some(PathBuf::from("data/council-digest.db"))
        );
        settings.database.url = SecretString::from("postgres://localhost/x");
        assert_eq!(settings.sqlite_path(), None);
    }
}
