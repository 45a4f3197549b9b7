//! `council-digest subscribers ...`: adding, listing, removing, exporting and erasing
//! subscribers from the command line.

use std::process::ExitCode;

use clap::Subcommand;

use crate::clock::Clock;
use crate::domain::{CouncilSlug, EmailAddress, SubscriberKind};
use crate::mail::message::{MailContext, confirmation_message};
use crate::mail::templates::Renderer;
use crate::mail::transport::send_now;
use crate::settings::Settings;
use crate::subscriptions::{self, SubscribeOutcome, SubscribeRequest};

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// Subscribe an address to a council (pending until confirmed, unless --confirmed).
    Add {
        /// The subscriber's e-mail address.
        email: EmailAddress,
        /// The council to follow (its slug, as in `councils list`).
        #[arg(long)]
        council: CouncilSlug,
        /// A professional subscriber (their subscriptions weigh ranking.professional_weight).
        #[arg(long)]
        professional: bool,
        /// The professional's organisation.
        #[arg(long, value_name = "NAME", requires = "professional")]
        org: Option<String>,
        /// Confirm at once, without a confirmation e-mail (the operator vouches for it).
        #[arg(long)]
        confirmed: bool,
    },
    /// List subscribers and the councils they follow.
    List {
        /// Only subscribers with a subscription (in any state) to this council.
        #[arg(long)]
        council: Option<CouncilSlug>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unsubscribe an address from every council (the record is kept; see `erase`).
    Remove {
        /// The subscriber's e-mail address.
        email: EmailAddress,
    },
    /// Print everything held about an address, as JSON.
    Export {
        /// The subscriber's e-mail address.
        email: EmailAddress,
    },
    /// Delete the person with an address and their tokens; past deliveries keep no address.
    Erase {
        /// The subscriber's e-mail address.
        email: EmailAddress,
    },
}

pub async fn run(command: SubscribersCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_store(settings, Clock::system()).await?;
    let result = run_on(&store, command, settings).await;
    store.close().await;
    result
}

async fn run_on(
    store: &crate::store::Store,
    command: SubscribersCommand,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    match command {
        SubscribersCommand::Add {
            email,
            council,
            professional,
            org,
            confirmed,
        } => {
            let request = SubscribeRequest {
                email,
                council: council.clone(),
                kind: if professional {
                    SubscriberKind::Professional
                } else {
                    SubscriberKind::Resident
                },
                organisation: org,
            };
            match subscriptions::subscribe(store, settings, &request, confirmed).await? {
                SubscribeOutcome::Confirmed { subscriber_id } => {
                    println!("subscriber {subscriber_id} now follows {council} (confirmed)");
                }
                SubscribeOutcome::AlreadyConfirmed { subscriber_id } => {
                    println!("subscriber {subscriber_id} already follows {council}");
                }
                SubscribeOutcome::ConfirmationNeeded {
                    subscriber_id,
                    token,
                    ..
                } => {
                    let link = confirmation_link(settings, &token);
                    match send_confirmation(store, settings, &request, &link).await {
                        Ok(()) => println!(
                            "subscriber {subscriber_id} follows {council} once confirmed; \
                             the confirmation e-mail has been sent"
                        ),
                        Err(err) => {
                            eprintln!(
                                "council-digest: the subscription is recorded but the \
                                 confirmation e-mail was not sent: {err:#}"
                            );
                            println!(
                                "subscriber {subscriber_id} follows {council} once confirmed; \
                                 give them this link (valid for {} hours): {link}",
                                settings.tokens.confirmation_ttl_hours
                            );
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
            }
        }
        SubscribersCommand::List { council, json } => {
            let views = subscriptions::list_subscribers(store, council.as_ref()).await?;
            let rows: Vec<serde_json::Value> = views
                .iter()
                .map(|v| {
                    serde_json::json!({
                        "id": v.id,
                        "email": v.email.as_str(),
                        "kind": v.kind,
                        "organisation": v.organisation,
                        "suppressed": v.suppressed,
                        "subscriptions": v.subscriptions.iter().map(|(c, state)| {
                            serde_json::json!({"council": c.slug, "state": state})
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            if json {
                crate::cli::print_json(&rows)?;
            } else {
                let table: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        let followed: Vec<String> = v
                            .subscriptions
                            .iter()
                            .map(|(c, state)| format!("{}:{state}", c.slug))
                            .collect();
                        vec![
                            v.id.to_string(),
                            v.email.to_string(),
                            v.kind.to_string(),
                            v.organisation.clone().unwrap_or_default(),
                            followed.join(" "),
                        ]
                    })
                    .collect();
                crate::cli::print_table(
                    &["ID", "EMAIL", "KIND", "ORGANISATION", "COUNCILS"],
                    &table,
                );
                println!("{} subscribers", views.len());
            }
        }
        SubscribersCommand::Remove { email } => {
            let view = subscriptions::subscriber_by_email(store, &email).await?;
            let ended = subscriptions::unsubscribe_all(store, view.id).await?;
            let noun = if ended == 1 { "council" } else { "councils" };
            println!("subscriber {} unsubscribed from {ended} {noun}", view.id);
        }
        SubscribersCommand::Export { email } => {
            let exported = subscriptions::export(store, &email).await?;
            crate::cli::print_json(&exported)?;
        }
        SubscribersCommand::Erase { email } => {
            let report = subscriptions::erase(store, &email).await?;
            println!(
                "subscriber {} erased: {} subscriptions and {} tokens deleted; {} deliveries and \
                 {} requests no longer carry the address",
                report.subscriber_id,
                report.subscriptions,
                report.tokens,
                report.deliveries_anonymised,
                report.requests_anonymised
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Mails the confirmation link at once (to the SMTP server, or as an .eml file in
/// `mail.outbox_dir` when `smtp.host` is empty).
async fn send_confirmation(
    store: &crate::store::Store,
    settings: &Settings,
    request: &SubscribeRequest,
    link: &str,
) -> anyhow::Result<()> {
    let key = crate::startup::signing_key(settings)?;
    let context = MailContext::new(settings, key, store.clock().clone())?;
    let renderer = Renderer::new(settings)?;
    let council = store.council_by_slug(&request.council).await?;
    let message = confirmation_message(&context, &renderer, &request.email, &council, link)?;
    send_now(settings, &message).await?;
    Ok(())
}

/// The confirmation page's address for a raw token.
fn confirmation_link(settings: &Settings, token: &str) -> String {
    format!(
        "{}/confirm/{token}",
        settings.web.base_url.trim_end_matches('/')
    )
}
