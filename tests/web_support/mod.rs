//! Starts the real web application for tests: a fresh database (SQLite, and PostgreSQL when
//! TEST_DATABASE_URL is set) loaded with the registry, a real SMTP server on loopback, and the
//! HTTP server on port 0. Also a small client that keeps the anti-forgery cookie the way a
//! browser does.
#![allow(dead_code)]

#[path = "../support/smtp.rs"]
pub mod smtp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use council_digest::clock::Clock;
use council_digest::registry::Registry;
use council_digest::settings::{Settings, TlsMode};
use council_digest::store::Store;
use council_digest::store::testing::{TestDatabase, fresh_databases};
use council_digest::tokens::{LinkPurpose, SigningKey};
use council_digest::web::{AppState, serve};

pub const KEY: &[u8] = b"web-tests-signing-key-web-tests-signing-key";

/// The fixed time the tests run at: Monday 9 February 2026, 07:00 UTC.
pub fn clock() -> Clock {
    Clock::fixed(
        chrono::DateTime::parse_from_rfc3339("2026-02-09T07:00:00Z")
            .unwrap()
            .to_utc(),
    )
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(KEY)
}

/// One running application.
pub struct TestApp {
    pub label: &'static str,
    pub base_url: String,
    pub addr: SocketAddr,
    pub store: Store,
    pub settings: Arc<Settings>,
    pub smtp: smtp::SmtpServer,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _db: TestDatabase,
}

/// Starts one application per test database; `adjust` changes the settings first.
pub async fn spawn_apps(adjust: impl Fn(&mut Settings)) -> Vec<TestApp> {
    spawn_apps_with_smtp(smtp::FaultMode::Accept, adjust).await
}

/// As [`spawn_apps`], with the SMTP server answering in `mode`.
pub async fn spawn_apps_with_smtp(
    mode: smtp::FaultMode,
    adjust: impl Fn(&mut Settings),
) -> Vec<TestApp> {
    council_digest::telemetry::init_for_tests();
    let mut apps = Vec::new();
    for db in fresh_databases(clock()).await {
        apps.push(spawn_app(db, mode, &adjust).await);
    }
    apps
}

async fn spawn_app(
    db: TestDatabase,
    mode: smtp::FaultMode,
    adjust: &impl Fn(&mut Settings),
) -> TestApp {
    let smtp = smtp::SmtpServer::start(mode);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base_url = format!("http://{addr}");

    let mut settings = Settings::defaults();
    settings.web.base_url = base_url.clone();
    settings.smtp.host = "127.0.0.1".into();
    settings.smtp.port = smtp.port;
    settings.smtp.tls = TlsMode::None;
    settings.smtp.timeout_seconds = 10;
    settings.mail.from = "Council Digest <digest@example.org>".into();
    adjust(&mut settings);
    let settings = Arc::new(settings);

    db.store
        .sync_councils(Registry::builtin(), &settings)
        .await
        .unwrap();
    let state = AppState::new(db.store.clone(), settings.clone(), signing_key()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve(listener, state, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });

    TestApp {
        label: db.label,
        base_url,
        addr,
        store: db.store.clone(),
        settings,
        smtp,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        shutdown: Some(tx),
        server: Some(server),
        _db: db,
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the hidden anti-forgery field of the page's first form with one.
    pub fn guard(&self) -> String {
        hidden_value(&self.body, "guard").expect("the page has a form with a guard field")
    }

    /// The body with every run of white space made one space, for matching sentences.
    pub fn text(&self) -> String {
        self.body.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
}

/// The value of the hidden input `name` in `html`.
pub fn hidden_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

async fn read(response: reqwest::Response) -> Page {
    Page {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> Page {
        read(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn get_with_cookie(&self, path: &str, cookie: &str) -> Page {
        let request = self.client.get(self.url(path)).header("cookie", cookie);
        read(request.send().await.unwrap()).await
    }

    /// Posts `fields` as a web form, with `cookie` as the Cookie header when given.
    pub async fn post_form(
        &self,
        path: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
    ) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.post_raw(path, cookie, "application/x-www-form-urlencoded", body)
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        cookie: Option<&str>,
        content_type: &str,
        body: String,
    ) -> Page {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        read(request.send().await.unwrap()).await
    }

    /// Opens a page with a form as a new visitor: the cookie it set and the form's token.
    pub async fn open_form(&self, path: &str) -> (Page, String, String) {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let cookie = page
            .header("set-cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert!(cookie.starts_with("cd_guard="), "{cookie}");
        let guard = page.guard();
        (page, cookie, guard)
    }

    /// Subscribes `email` to `slug` through the council page's form.
    pub async fn subscribe(&self, slug: &str, email: &str) -> Page {
        let path = format!("/councils/{slug}");
        let (_, cookie, guard) = self.open_form(&path).await;
        self.post_form(
            &format!("{path}/subscribe"),
            Some(&cookie),
            &[
                ("guard", &guard),
                ("email", email),
                ("kind", "resident"),
                ("organisation", ""),
                ("website", ""),
            ],
        )
        .await
    }

    /// Waits for the SMTP server to have accepted `n` messages in all, and returns them.
    pub async fn mails(&self, n: usize) -> Vec<mail_parser::Message<'static>> {
        let raw = self.smtp.wait_for_async(n, Duration::from_secs(20)).await;
        raw.into_iter()
            .map(|bytes| {
                mail_parser::MessageParser::default()
                    .parse(&bytes)
                    .unwrap()
                    .into_owned()
            })
            .collect()
    }

    /// The first link to `{base_url}{prefix}` in a message's text body.
    pub fn link_in(&self, message: &mail_parser::Message<'_>, prefix: &str) -> String {
        let text = message.body_text(0).unwrap().into_owned();
        let start = format!("{}{prefix}", self.base_url);
        let at = text
            .find(&start)
            .unwrap_or_else(|| panic!("no {start} link in:\n{text}"));
        let rest = &text[at + self.base_url.len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '"')
            .unwrap_or(rest.len());
        rest[..end].to_owned()
    }

    /// The signed link path of `purpose` for a subscriber, as e-mails carry it.
    pub fn signed_path(&self, purpose: LinkPurpose, prefix: &str, subscriber_id: i64) -> String {
        format!(
            "{prefix}{}",
            signing_key().sign(purpose, &subscriber_id.to_string())
        )
    }

    pub async fn scalar(&self, sql: &str, bind: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sql)
            .bind(bind.to_owned())
            .fetch_one(self.store.pool())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }

    /// Subscription states of an address, as `council slug:state`, sorted.
    pub async fn states_of(&self, email: &str) -> Vec<String> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT c.slug, s.state FROM subscriptions s \
             JOIN subscribers p ON p.id = s.subscriber_id \
             JOIN councils c ON c.id = s.council_id WHERE p.email = $1 ORDER BY c.slug",
        )
        .bind(email.to_owned())
        .fetch_all(self.store.pool())
        .await
        .unwrap();
        rows.iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r.try_get::<String, _>(0).unwrap(),
                    r.try_get::<String, _>(1).unwrap()
                )
            })
            .collect()
    }

    pub async fn subscriber_id(&self, email: &str) -> i64 {
        self.scalar("SELECT id FROM subscribers WHERE email = $1", email)
            .await
    }

    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap()
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
    }
}
