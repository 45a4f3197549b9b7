//! `council-digest requests ...`: reviewing enablement requests.

use std::process::ExitCode;

use clap::Subcommand;

use crate::clock::Clock;
use crate::domain::RequestState;
use crate::ranking::promotion::RequestPromotion;
use crate::ranking::requests::{approve_request, list_requests, reject_request};
use crate::settings::Settings;

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List requests, newest first.
    List {
        /// Only requests in this state (pending, approved, rejected).
        #[arg(long)]
        state: Option<RequestState>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve a request: its council is promoted regardless of its score.
    Approve {
        /// The request's id, as in `requests list`.
        id: i64,
    },
    /// Reject a request, with the reason.
    Reject {
        /// The request's id, as in `requests list`.
        id: i64,
        /// Why, in a sentence or two (kept with the request; at most 1000 characters).
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(command: RequestsCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_store(settings, Clock::system()).await?;
    let result = run_on(&store, command, settings).await;
    store.close().await;
    result
}

async fn run_on(
    store: &crate::store::Store,
    command: RequestsCommand,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    match command {
        RequestsCommand::List { state, json } => {
            let requests = list_requests(store, state).await?;
            if json {
                crate::cli::print_json(&requests)?;
            } else {
                let rows: Vec<Vec<String>> = requests
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.council_slug.clone(),
                            r.state.to_string(),
                            r.name.clone().unwrap_or_default(),
                            r.organisation.clone().unwrap_or_default(),
                            if r.represents_council { "yes" } else { "no" }.to_owned(),
                            crate::clock::from_ts(r.created_at)
                                .format("%Y-%m-%d")
                                .to_string(),
                            r.message.clone().unwrap_or_default().replace('\n', " "),
                        ]
                    })
                    .collect();
                crate::cli::print_table(
                    &[
                        "ID",
                        "COUNCIL",
                        "STATE",
                        "NAME",
                        "ORGANISATION",
                        "COUNCIL?",
                        "DATE",
                        "MESSAGE",
                    ],
                    &rows,
                );
                println!("{} requests", requests.len());
            }
        }
        RequestsCommand::Approve { id } => {
            let outcome = approve_request(store, settings, id).await?;
            match outcome {
                RequestPromotion::Promoted(change) => {
                    println!(
                        "request {id} approved; {} is now fully supported ({} notices queued)",
                        change.council, change.notices
                    );
                }
                RequestPromotion::AlreadyFull => {
                    println!("request {id} approved; the council already has full support");
                }
                RequestPromotion::Pinned => println!(
                    "request {id} approved; the council's support level is set in the settings, \
                     so it is not changed"
                ),
                RequestPromotion::WaitingForCapacity => println!(
                    "request {id} approved; promotion.max_full_councils is reached, so a later \
                     promotion run will promote the council when there is room"
                ),
            }
        }
        RequestsCommand::Reject { id, reason } => {
            reject_request(store, id, &reason).await?;
            println!("request {id} rejected");
        }
    }
    Ok(ExitCode::SUCCESS)
}
