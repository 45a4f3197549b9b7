//! `council-digest run`: the long-running daemon.
//!
//! It migrates, loads the registry, then runs its scheduled jobs and the web server until
//! SIGINT or SIGTERM, when in-flight work is allowed to finish. SIGHUP re-reads the settings:
//! a valid set takes effect at the next job run; an invalid one is refused and logged.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::settings::{Settings, SettingsSource};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Start the daemon's clock at this time (RFC 3339) instead of now; it then runs at real
    /// speed. For tests and demonstrations of scheduled jobs.
    #[arg(long, value_name = "TIME", hide = true)]
    pub clock: Option<chrono::DateTime<chrono::Utc>>,
}

/// What every part of the running daemon shares.
#[derive(Debug, Clone)]
pub struct Context {
    pub store: Store,
    pub settings: watch::Receiver<Arc<Settings>>,
    pub clock: Clock,
    pub shutdown: CancellationToken,
}

impl Context {
    /// The settings in force now; a job takes them once when it starts.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }
}

pub async fn run(
    args: RunArgs,
    source: SettingsSource,
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    // The SMTP TLS set-up (`smtp.ca_file`) is checked before anything starts, as `config
    // check` does, so a bad file is named first and not as a web server problem.
    crate::mail::transport::check_tls_settings(&settings)?;
    let clock = match args.clock {
        Some(start) => Clock::starting_at(start),
        None => Clock::system(),
    };
    let store = crate::startup::open_synced_store(&settings, clock.clone()).await?;
    let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
    let shutdown = CancellationToken::new();
    let context = Context {
        store: store.clone(),
        settings: settings_rx,
        clock,
        shutdown: shutdown.clone(),
    };

    let signals = tokio::spawn(watch_signals(source, settings_tx, shutdown.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    start_services(&context, &mut tasks).await?;

    tracing::info!(backend = ?store.backend(), "council-digest is ready");
    shutdown.cancelled().await;
    tracing::info!("shutting down: finishing work in flight");
    while let Some(result) = tasks.join_next().await {
        if let Err(err) = result {
            tracing::error!(error = %err, "a daemon task ended abnormally");
        }
    }
    signals.abort();
    store.close().await;
    tracing::info!("council-digest stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts the parts of the daemon that run until shutdown.
async fn start_services(
    context: &Context,
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    start_web(context, tasks).await?;
    crate::scheduler::spawn_jobs(context, tasks);
    Ok(())
}

/// The subscriber web pages, on `web.bind`, until shutdown; a server that fails stops the daemon.
async fn start_web(context: &Context, tasks: &mut tokio::task::JoinSet<()>) -> anyhow::Result<()> {
    let settings = context.settings();
    let listener = tokio::net::TcpListener::bind(&settings.web.bind)
        .await
        .with_context(|| format!("web.bind: cannot listen on {}", settings.web.bind))?;
    let signing_key = crate::startup::signing_key(&settings)?;
    let state = crate::web::AppState::new(context.store.clone(), settings, signing_key)
        .context("starting the web server")?;
    let shutdown = context.shutdown.clone();
    tasks.spawn(async move {
        let stopped = shutdown.clone().cancelled_owned();
        if let Err(err) = crate::web::serve(listener, state, stopped).await {
            tracing::error!(error = %err, "the web server failed; stopping");
            shutdown.cancel();
        }
    });
    Ok(())
}

/// Turns SIGINT/SIGTERM into the shutdown signal and SIGHUP into a settings reload.
async fn watch_signals(
    source: SettingsSource,
    settings_tx: watch::Sender<Arc<Settings>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => match source.load() {
                Ok(settings) => match crate::mail::transport::check_tls_settings(&settings) {
                    Ok(()) => {
                        tracing::info!("settings reloaded; they apply from the next job run");
                        settings_tx.send_replace(Arc::new(settings));
                    }
                    Err(err) => {
                        let problems = vec![err.to_string()];
                        tracing::error!(?problems, "settings reload refused; keeping the old settings");
                    }
                },
                Err(err) => {
                    tracing::error!(problems = ?err.problems, "settings reload refused; keeping the old settings");
                }
            },
        }
    }
    shutdown.cancel();
    Ok(())
}
