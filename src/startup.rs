//! Start-up glue shared by the daemon and the CLI: open the store, migrate, load the registry.

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::clock::Clock;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::Store;

/// Opens and migrates the database named by the settings.
pub async fn open_store(settings: &Settings, clock: Clock) -> anyhow::Result<Store> {
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

/// Opens the store and loads the council registry and the per-council settings into it.
pub async fn open_synced_store(settings: &Settings, clock: Clock) -> anyhow::Result<Store> {
    let store = open_store(settings, clock).await?;
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
    Ok(store)
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
