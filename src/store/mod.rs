//! The storage boundary: one API over SQLite and PostgreSQL.
//!
//! Queries are runtime-checked `sqlx::query(..).bind(..)` against the `Any` driver, written in
//! the SQL both databases accept (`$1` placeholders, `ON CONFLICT`, `RETURNING`). Times are
//! epoch seconds and flags 0/1 integers on both, so every row decodes the same way. The store
//! knows nothing of HTTP, SMTP or templates.

pub mod councils;
pub mod deliveries;
pub mod jobs;
pub mod ledger;
pub mod meetings;
pub mod ranking;
pub mod requests;
pub mod sources;
pub mod subscribers;
pub mod testing;

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::clock::Clock;

/// Which database the store talks to; a few statements (row locks, advisory locks) differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Failures a caller of the store acts on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Shown with its cause chain (`{:#}`), as start-up prints it.
    #[error("cannot open the database {url}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error while trying to {step}: {source}")]
    Database {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

/// Attaches the step being attempted to a database error.
pub trait StepContext<T> {
    fn step(self, step: &'static str) -> Result<T, StoreError>;
}

impl<T> StepContext<T> for Result<T, sqlx::Error> {
    fn step(self, step: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Database { step, source })
    }
}

/// A write transaction. On SQLite it is opened with `BEGIN IMMEDIATE`, so it holds the write
/// lock from its first statement and a read-then-write sequence cannot fail with "database is
/// locked" halfway (other writers wait up to the busy timeout instead).
pub type WriteTx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    clock: Clock,
}

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Connects to `url` (sqlite: or postgres://). A SQLite file and its folder are created if
    /// missing. Nothing is migrated here; call [`Store::migrate`].
    pub async fn connect(
        url: &str,
        max_connections: u32,
        clock: Clock,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let shown = crate::settings::mask_url_password(url);

        let connect_url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url).map_err(|err| StoreError::Open {
                url: shown.clone(),
                source: sqlx::Error::Io(err),
            })?,
            Backend::Postgres => url.to_owned(),
        };
        let options: AnyConnectOptions =
            connect_url.parse().map_err(|source| StoreError::Open {
                url: shown.clone(),
                source,
            })?;

        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                             PRAGMA busy_timeout = 15000; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open { url: shown, source })?;

        Ok(Store {
            pool,
            backend,
            clock,
        })
    }

    /// Applies the migrations of this backend that are not yet applied.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => MIGRATE_SQLITE.run(&self.pool).await?,
            Backend::Postgres => MIGRATE_POSTGRES.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Opens a write transaction (see [`WriteTx`]).
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .step("begin a write transaction")
    }

    /// Whether the database answers (the health check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .step("ping the database")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the folder of a SQLite file and asks for the file to be created when missing.
fn prepare_sqlite_url(url: &str) -> std::io::Result<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or("");
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(match query {
        Some(query) if query.contains("mode=") => format!("sqlite://{path}?{query}"),
        Some(query) => format!("sqlite://{path}?{query}&mode=rwc"),
        None => format!("sqlite://{path}?mode=rwc"),
    })
}

/// Converts a 0/1 column to a flag.
pub fn flag(value: i64) -> bool {
    value != 0
}

/// Converts a flag to its 0/1 column.
pub fn int_flag(value: bool) -> i64 {
    i64::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_gain_create_mode_and_keep_their_options() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested/db.sqlite");
        let url = format!("sqlite://{}", file.display());
        assert_eq!(prepare_sqlite_url(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(file.parent().unwrap().is_dir());
        let with_mode = format!("{url}?mode=ro");
        assert_eq!(prepare_sqlite_url(&with_mode).unwrap(), with_mode);
    }
}
