//! `council-digest meetings list`: a council's stored meetings.

use std::process::ExitCode;

use chrono::{NaiveDate, NaiveTime};
use clap::Subcommand;
use serde::Serialize;

use crate::clock::Clock;
use crate::domain::{CouncilSlug, UK_ZONE};
use crate::settings::Settings;
use crate::store::meetings::Meeting;

#[derive(Debug, Subcommand)]
pub enum MeetingsCommand {
    /// List a council's meetings between two UK dates (cancelled and withdrawn ones included).
    List {
        /// The council's slug, as in `councils list`.
        #[arg(long)]
        council: CouncilSlug,
        /// First day (YYYY-MM-DD, UK time); today when absent.
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        from: Option<NaiveDate>,
        /// Last day, included (YYYY-MM-DD); the poll window's end when absent.
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        to: Option<NaiveDate>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// One meeting as `meetings list --json` prints it.
#[derive(Debug, Serialize)]
pub struct MeetingJson {
    pub id: i64,
    pub council: String,
    pub committee: String,
    pub title: String,
    /// RFC 3339 with the meeting's local offset.
    pub starts_at: String,
    pub starts_at_utc: String,
    pub all_day: bool,
    pub status: String,
    pub cancelled: bool,
    pub location: Option<String>,
    pub url: Option<String>,
    pub parse_warning: Option<String>,
    pub withdrawn_at: Option<String>,
    pub agenda_items: Vec<AgendaItemJson>,
    pub documents: Vec<DocumentJson>,
}

#[derive(Debug, Serialize)]
pub struct AgendaItemJson {
    pub number: Option<String>,
    pub title: String,
    pub text: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DocumentJson {
    pub title: String,
    pub url: String,
}

impl MeetingJson {
    pub fn from_meeting(council: &CouncilSlug, meeting: &Meeting) -> MeetingJson {
        MeetingJson {
            id: meeting.id,
            council: council.to_string(),
            committee: meeting.committee_title.clone(),
            title: meeting.title.clone(),
            starts_at: meeting.local_start().to_rfc3339(),
            starts_at_utc: meeting
                .starts_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            all_day: meeting.all_day,
            status: meeting.status.clone(),
            cancelled: meeting.cancelled,
            location: meeting.location.clone(),
            url: meeting.url.clone(),
            parse_warning: meeting.parse_warning.clone(),
            withdrawn_at: meeting
                .withdrawn_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            agenda_items: meeting
                .agenda_items
                .iter()
                .map(|item| AgendaItemJson {
                    number: item.number.clone(),
                    title: item.title.clone(),
                    text: item.text_plain.clone(),
                })
                .collect(),
            documents: meeting
                .documents
                .iter()
                .map(|d| DocumentJson {
                    title: d.title.clone(),
                    url: d.url.clone(),
                })
                .collect(),
        }
    }
}

/// A calendar date as `--from` and `--to` take it.
fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|err| format!("`{raw}` is not a date such as 2026-02-09 (YYYY-MM-DD): {err}"))
}

fn uk_midnight(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    crate::sources::uktime::local_to_utc(&UK_ZONE, day.and_time(NaiveTime::MIN)).0
}

pub async fn run(command: MeetingsCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = crate::startup::open_store(settings, Clock::system()).await?;
    match command {
        MeetingsCommand::List {
            council,
            from,
            to,
            json,
        } => {
            let found = store.council_by_slug(&council).await?;
            let today = store.clock().now().with_timezone(&UK_ZONE).date_naive();
            let from = from.unwrap_or(today);
            let to = to.unwrap_or_else(|| {
                today + chrono::Days::new(u64::from(settings.poll.window_days_ahead))
            });
            if to < from {
                anyhow::bail!("--to {to} is before --from {from}");
            }
            let meetings = store
                .meetings_between(
                    found.id,
                    uk_midnight(from),
                    uk_midnight(to + chrono::Days::new(1)),
                )
                .await?;
            if json {
                let out: Vec<MeetingJson> = meetings
                    .iter()
                    .map(|m| MeetingJson::from_meeting(&council, m))
                    .collect();
                crate::cli::print_json(&out)?;
            } else {
                let rows: Vec<Vec<String>> = meetings
                    .iter()
                    .map(|m| {
                        vec![
                            m.id.to_string(),
                            m.local_start().format("%Y-%m-%d %H:%M").to_string(),
                            m.committee_title.clone(),
                            if m.withdrawn_at.is_some() {
                                format!("{} (withdrawn)", m.status)
                            } else {
                                m.status.clone()
                            },
                            m.location.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                crate::cli::print_table(
                    &["ID", "STARTS", "COMMITTEE", "STATUS", "LOCATION"],
                    &rows,
                );
                println!("{} meetings", meetings.len());
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
