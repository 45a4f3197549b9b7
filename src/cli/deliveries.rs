//! `council-digest deliveries ...`: the delivery ledger for operators.

use std::process::ExitCode;

use clap::Subcommand;

use crate::clock::{Clock, from_ts};
use crate::domain::DeliveryState;
use crate::mail::transport::redact_addresses;
use crate::settings::Settings;
use crate::store::ledger;

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first, with a count per state.
    List {
        /// Only deliveries in this state (queued, sending, sent, retrying, failed).
        #[arg(long)]
        state: Option<DeliveryState>,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put failed deliveries back in the queue with a fresh attempt count; the next drain
    /// (`digest send`, or the daemon's delivery job) sends them.
    Retry {
        /// Requeue every failed delivery (required: the only selection there is).
        #[arg(long, required = true)]
        failed: bool,
    },
}

pub async fn run(command: DeliveriesCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let clock = Clock::system();
    let store = crate::startup::open_store(settings, clock.clone()).await?;
    match command {
        DeliveriesCommand::List { state, limit, json } => {
            let records = ledger::list_deliveries(&store, state, i64::from(limit)).await?;
            if json {
                crate::cli::print_json(&records)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = records.iter().map(table_row).collect();
            crate::cli::print_table(
                &[
                    "ID",
                    "KIND",
                    "SUBSCRIBER",
                    "STATE",
                    "ATTEMPTS",
                    "NEXT ATTEMPT",
                    "LAST ERROR",
                ],
                &rows,
            );
            let counts = ledger::count_by_state(&store).await?;
            let summary: Vec<String> = counts
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect();
            println!(
                "{} shown; in all: {}",
                records.len(),
                if summary.is_empty() {
                    "none".to_owned()
                } else {
                    summary.join(", ")
                }
            );
        }
        DeliveriesCommand::Retry { failed } => {
            if failed {
                let requeued = ledger::requeue_failed(&store, clock.now_ts()).await?;
                println!("{requeued} failed deliveries queued again");
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn table_row(record: &ledger::DeliveryRecord) -> Vec<String> {
    let next = match record.state {
        DeliveryState::Queued | DeliveryState::Retrying => from_ts(record.next_attempt_at)
            .format("%Y-%m-%d %H:%M:%SZ")
            .to_string(),
        _ => "-".to_owned(),
    };
    let error = record
        .last_error
        .as_deref()
        .map(|e| {
            let e = redact_addresses(e);
            match e.char_indices().nth(60) {
                Some((cut, _)) => format!("{}...", &e[..cut]),
                None => e,
            }
        })
        .unwrap_or_default();
    vec![
        record.id.to_string(),
        record.kind.clone(),
        record
            .subscriber_id
            .map_or_else(|| "-".to_owned(), |id| id.to_string()),
        record.state.to_string(),
        record.attempts.to_string(),
        next,
        error.replace(['\r', '\n'], " "),
    ]
}
