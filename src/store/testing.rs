//! Fresh databases for tests: a new SQLite file always, and a new PostgreSQL database whenever
//! `TEST_DATABASE_URL` names a server (for example `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! This is public so that integration tests under `tests/` can use it; it is not used by the
//! application itself.

use std::path::PathBuf;

use rand::Rng;
use sqlx::Connection;

use crate::clock::Clock;
use crate::store::Store;

/// A migrated store with nothing in it, and what must live as long as it does.
pub struct TestDatabase {
    pub label: &'static str,
    pub url: String,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// The SQLite file of this database, when it is one.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        self.url.strip_prefix("sqlite://").map(PathBuf::from)
    }
}

/// The PostgreSQL server to create test databases on, when tests should use one.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A new, migrated SQLite database in a temporary folder.
pub async fn fresh_sqlite(clock: Clock) -> TestDatabase {
    let dir = tempfile::tempdir().expect("create a temporary folder for a test database");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url, 4, clock)
        .await
        .expect("open a test SQLite database");
    store
        .migrate()
        .await
        .expect("migrate a test SQLite database");
    TestDatabase {
        label: "sqlite",
        url,
        store,
        _dir: Some(dir),
    }
}

/// A new, empty PostgreSQL database (uniquely named), created on the server of `admin_url`.
pub async fn fresh_postgres_url(admin_url: &str) -> String {
    let name = format!("cd_test_{:016x}", rand::thread_rng().r#gen::<u64>());
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create a test PostgreSQL database");
    let _ = admin.close().await;
    let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A new, migrated PostgreSQL database, when `TEST_DATABASE_URL` is set.
pub async fn fresh_postgres(clock: Clock) -> Option<TestDatabase> {
    let admin = postgres_admin_url()?;
    let url = fresh_postgres_url(&admin).await;
    let store = Store::connect(&url, 8, clock)
        .await
        .expect("open a test PostgreSQL database");
    store
        .migrate()
        .await
        .expect("migrate a test PostgreSQL database");
    Some(TestDatabase {
        label: "postgres",
        url,
        store,
        _dir: None,
    })
}

/// SQLite always, then PostgreSQL when `TEST_DATABASE_URL` is set: run a storage test on each.
pub async fn fresh_databases(clock: Clock) -> Vec<TestDatabase> {
    let mut out = vec![fresh_sqlite(clock.clone()).await];
    if let Some(pg) = fresh_postgres(clock).await {
        out.push(pg);
    }
    out
}
