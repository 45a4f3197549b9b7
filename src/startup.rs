//! Start-up glue shared by the daemon and the CLI: open the store, migrate, load the registry.

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::clock::Clock;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::Store;

/// Opens and migrates the database named by the settings. A database without councils (a new
/// install whose daemon has not started yet) gets the registry loaded too, so that a first
/// `subscribers add` or `rank` finds the councils.
pub async fn open_store(settings: &Settings, clock: Clock) -> anyhow::Result<Store> {
    let store = open_migrated_store(settings, clock).await?;
    let councils = store
        .list_councils(None, None)
        .await
        .context("reading the council registry")?;
    if councils.is_empty() {
        sync_registry(&store, settings).await?;
    }
    Ok(store)
}

/// Opens the store and loads the council registry and the per-council settings into it.
pub async fn open_synced_store(settings: &Settings, clock: Clock) -> anyhow::Result<Store> {
    let store = open_migrated_store(settings, clock).await?;
    sync_registry(&store, settings).await?;
    Ok(store)
}

async fn open_migrated_store(settings: &Settings, clock: Clock) -> anyhow::Result<Store> {
    let store = Store::connect(
        settings.database.url.expose_secret(),
        settings.database.max_connections,
        clock,
    )
    .await
    .context("database.url")?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

async fn sync_registry(store: &Store, settings: &Settings) -> anyhow::Result<()> {
    let report = store
        .sync_councils(Registry::builtin(), settings)
        .await
        .context("loading the council registry")?;
    tracing::info!(
        added = report.councils_added,
        updated = report.councils_updated,
        unchanged = report.councils_unchanged,
        sources_added = report.sources_added,
        sources_retired = report.sources_retired,
        "council registry loaded"
    );
    Ok(())
}

/// The key that signs links in e-mails: `tokens.signing_key`, or a key file beside the SQLite
/// database (`data/signing-key` otherwise), created on first run.
pub fn signing_key(settings: &Settings) -> anyhow::Result<crate::tokens::SigningKey> {
    let key_file = settings
        .sqlite_path()
        .and_then(|db| db.parent().map(|dir| dir.join("signing-key")))
        .unwrap_or_else(|| std::path::PathBuf::from("data/signing-key"));
    crate::tokens::SigningKey::from_settings_or_file(
        settings.tokens.signing_key.expose_secret(),
        &key_file,
    )
    .with_context(|| {
        format!(
            "tokens.signing_key is empty and {} cannot be used",
            key_file.display()
        )
    })
}
