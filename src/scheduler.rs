//! Scheduled jobs: polls, promotion, the weekly digest run and queue draining, each on a cron
//! schedule in Europe/London, run once per tick across daemons.
//!
//! Each job has a loop that sleeps until its next firing, then tries to claim that tick in
//! `job_runs` (`store::jobs::claim_tick`): of several daemons sharing a PostgreSQL database
//! exactly one wins and runs it. The latest claimed tick is also how a daemon that was down
//! knows what it missed: when it starts, the most recent firing it missed runs once, not once
//! per missed firing. On a job's very first start (no tick recorded at all) nothing counts as
//! missed; the current firing is recorded as skipped so that later downtime is noticed.
//!
//! A tick is claimed before its run starts, so a daemon killed during a run does not run that
//! tick again; the work itself is safe to repeat (the digest run records each digest once and
//! the delivery queue keeps whatever was not sent), and the next tick picks it up.
//!
//! Settings are read once per run from [`Context::settings`], so a SIGHUP reload applies from
//! the next run. Every job can be run once on demand ([`run_due`], [`run_now`]) with the clock
//! of the context, which tests fix.

use std::fmt;

use chrono::{DateTime, Utc};
use rand::Rng;
use tracing::Instrument;

use crate::clock::from_ts;
use crate::daemon::Context;
use crate::delivery::{DeliveryError, Drain, MailRenderer, Mailer};
use crate::domain::{IsoWeek, SupportLevel, UK_ZONE};
use crate::settings::{CronSchedule, Settings};
use crate::sources::poll::{PollFilter, poll_sources};
use crate::store::StoreError;
use crate::store::jobs::{self, TickClaim};

/// The scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    /// Fully supported councils are polled often, so digests and pages carry fresh agendas.
    PollFull,
    /// Limited councils are polled daily for their meeting lists only, to spare their sites.
    PollLimited,
    /// Demand changes; promotion gives the most-wanted limited councils full support.
    Promotion,
    /// The weekly digest run: what residents subscribed for. It builds, queues, then sends.
    Digest,
    /// Retries and notices wait in the queue; draining it often sends them without delay.
    Delivery,
}

impl Job {
    pub const ALL: [Job; 5] = [
        Job::PollFull,
        Job::PollLimited,
        Job::Promotion,
        Job::Digest,
        Job::Delivery,
    ];

    /// The name kept in `job_runs` and shown in logs.
    pub fn name(self) -> &'static str {
        match self {
            Job::PollFull => "poll_full",
            Job::PollLimited => "poll_limited",
            Job::Promotion => "promotion",
            Job::Digest => "digest",
            Job::Delivery => "delivery",
        }
    }

    /// Its schedule in the `[schedule]` settings.
    pub fn schedule(self, settings: &Settings) -> &CronSchedule {
        let schedule = &settings.schedule;
        match self {
            Job::PollFull => &schedule.poll_full,
            Job::PollLimited => &schedule.poll_limited,
            Job::Promotion => &schedule.promotion,
            Job::Digest => &schedule.digest,
            Job::Delivery => &schedule.delivery,
        }
    }

    /// Whether this build of the daemon can run the job (every job, now that the polls'
    /// entry point exists; kept so that a job can be introduced before its work is ready).
    pub fn is_registered(self) -> bool {
        true
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The jobs the daemon schedules.
pub fn registered_jobs() -> Vec<Job> {
    Job::ALL
        .into_iter()
        .filter(|job| job.is_registered())
        .collect()
}

/// Why a job run failed; the run is recorded with this message and the next tick tries again.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    Digest(#[from] crate::digest::DigestError),
    #[error(transparent)]
    Ranking(#[from] crate::ranking::RankingError),
    #[error(transparent)]
    Sources(#[from] crate::sources::SourceError),
    #[error("the job `{0}` is not available in this build")]
    NotRegistered(Job),
    #[error("{0}")]
    Setup(String),
}

/// What [`run_due`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickOutcome {
    /// This daemon claimed the tick and ran the job; the summary is in `job_runs.outcome`.
    Ran { tick_at: i64, summary: String },
    /// The job ran and failed; recorded, and the next tick tries again.
    Failed { tick_at: i64, error: String },
    /// Another daemon (or an earlier call) claimed this tick.
    ClaimedElsewhere { tick_at: i64 },
    /// The job's first start: the current firing was recorded as skipped.
    FirstStart { tick_at: i64 },
    /// No firing since the last claimed tick.
    NothingDue,
}

/// The latest firing of `schedule` at or before `now`.
pub fn latest_firing(schedule: &CronSchedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Walking back from the next whole second finds the firings up to and including `now`.
    let whole = DateTime::from_timestamp(now.timestamp(), 0)?;
    let local = (whole + chrono::Duration::seconds(1)).with_timezone(&UK_ZONE);
    schedule
        .schedule
        .after(&local)
        .next_back()
        .map(|at| at.to_utc())
        .filter(|at| *at <= now)
}

/// The tick to run now, given the last claimed one: the latest firing at or before `now`, if
/// it is later than `last`. However many firings were missed, this is one tick.
pub fn due_tick(schedule: &CronSchedule, last: Option<i64>, now: DateTime<Utc>) -> Option<i64> {
    let latest = latest_firing(schedule, now)?.timestamp();
    match last {
        Some(last) if latest <= last => None,
        _ => Some(latest),
    }
}

/// Runs `job` if a tick of it is due at the context's clock and this daemon wins the claim.
pub async fn run_due(ctx: &Context, job: Job, claimant: &str) -> Result<TickOutcome, JobError> {
    if !job.is_registered() {
        return Err(JobError::NotRegistered(job));
    }
    let settings = ctx.settings();
    let now = ctx.clock.now();
    let last = jobs::last_tick(&ctx.store, job.name()).await?;
    let Some(tick_at) = due_tick(job.schedule(&settings), last, now) else {
        return Ok(TickOutcome::NothingDue);
    };

    let claim = jobs::claim_tick(&ctx.store, job.name(), tick_at, claimant, now.timestamp());
    if claim.await? == TickClaim::Taken {
        return Ok(TickOutcome::ClaimedElsewhere { tick_at });
    }
    if last.is_none() {
        let note = "skipped: the job's first start";
        jobs::finish_tick(&ctx.store, job.name(), tick_at, note, now.timestamp()).await?;
        tracing::info!(job = job.name(), tick = %from_ts(tick_at), "job registered");
        return Ok(TickOutcome::FirstStart { tick_at });
    }

    let span = tracing::info_span!("job", job = job.name(), tick = %from_ts(tick_at));
    let result = run_job(ctx, &settings, job, tick_at)
        .instrument(span.clone())
        .await;
    let finished = ctx.clock.now_ts();
    let _entered = span.enter();
    match result {
        Ok(summary) => {
            jobs::finish_tick(
                &ctx.store,
                job.name(),
                tick_at,
                &format!("ok: {summary}"),
                finished,
            )
            .await?;
            tracing::info!(summary = %summary, "job finished");
            Ok(TickOutcome::Ran { tick_at, summary })
        }
        Err(err) => {
            let error = err.to_string();
            jobs::finish_tick(
                &ctx.store,
                job.name(),
                tick_at,
                &format!("error: {error}"),
                finished,
            )
            .await?;
            tracing::error!(error = %error, "job failed");
            Ok(TickOutcome::Failed { tick_at, error })
        }
    }
}

/// Runs `job` once now, outside its schedule and without claiming a tick (an operator's or a
/// test's explicit request).
pub async fn run_now(ctx: &Context, job: Job) -> Result<String, JobError> {
    if !job.is_registered() {
        return Err(JobError::NotRegistered(job));
    }
    let settings = ctx.settings();
    let now = ctx.clock.now_ts();
    let span = tracing::info_span!("job", job = job.name(), tick = "on demand");
    run_job(ctx, &settings, job, now).instrument(span).await
}

async fn run_job(
    ctx: &Context,
    settings: &Settings,
    job: Job,
    tick_at: i64,
) -> Result<String, JobError> {
    match job {
        Job::PollFull | Job::PollLimited => {
            let support = if job == Job::PollFull {
                SupportLevel::Full
            } else {
                SupportLevel::Limited
            };
            let filter = PollFilter {
                councils: Vec::new(),
                support: Some(support),
                due_only: true,
            };
            let report = poll_sources(&ctx.store, settings, &filter).await?;
            let totals = report.totals();
            Ok(format!(
                "{} sources: {} new, {} changed, {} withdrawn, {} failed",
                totals.sources, totals.new, totals.changed, totals.withdrawn, totals.failed
            ))
        }
        Job::Promotion => {
            let report =
                crate::ranking::promotion::run_promotion(&ctx.store, settings, false).await?;
            Ok(format!(
                "{} promoted, {} demoted, {} held back, {} notices queued",
                report.promoted.len(),
                report.demoted.len(),
                report.held_back.len(),
                report.notices_queued
            ))
        }
        Job::Digest => {
            let mailer = mailer(ctx, settings)?;
            let week = IsoWeek::containing(from_ts(tick_at));
            let built = crate::digest::build::build_week(
                &ctx.store,
                settings,
                &mailer.renderer,
                &mailer.ctx,
                week,
                None,
                crate::digest::build::BuildMode::Queue,
            )
            .await?;
            let sent = drain(ctx, settings, &mailer).await?;
            Ok(format!(
                "week {week}: {} built, {} queued, {} failed to build; sent {}, retrying {}, \
                 failed {}",
                built.built, built.queued, built.failed, sent.sent, sent.retrying, sent.failed
            ))
        }
        Job::Delivery => {
            let mailer = mailer(ctx, settings)?;
            let sent = drain(ctx, settings, &mailer).await?;
            Ok(format!(
                "sent {}, retrying {}, failed {}",
                sent.sent, sent.retrying, sent.failed
            ))
        }
    }
}

fn mailer(ctx: &Context, settings: &Settings) -> Result<Mailer, JobError> {
    let key =
        crate::startup::signing_key(settings).map_err(|err| JobError::Setup(format!("{err:#}")))?;
    Ok(Mailer::from_settings(settings, key, ctx.clock.clone())?)
}

/// Drains the queue; on shutdown the claimed messages are finished and nothing new is taken.
async fn drain(
    ctx: &Context,
    settings: &Settings,
    mailer: &Mailer,
) -> Result<crate::delivery::DrainReport, JobError> {
    let render = MailRenderer {
        store: &ctx.store,
        settings,
        renderer: &mailer.renderer,
        ctx: &mailer.ctx,
    };
    let drain = Drain::new(&ctx.store, &settings.delivery, &mailer.transport);
    Ok(drain.run(&render, Some(&ctx.shutdown)).await?)
}

/// A name for this daemon in `job_runs.claimed_by`.
pub fn claimant_id() -> String {
    format!(
        "pid{}-{:08x}",
        std::process::id(),
        rand::thread_rng().r#gen::<u32>()
    )
}

/// Starts one task per registered job; each runs its due ticks until shutdown.
pub fn spawn_jobs(ctx: &Context, tasks: &mut tokio::task::JoinSet<()>) {
    let claimant = claimant_id();
    for job in registered_jobs() {
        let ctx = ctx.clone();
        let claimant = claimant.clone();
        tasks.spawn(async move { job_loop(ctx, job, claimant).await });
    }
    let skipped: Vec<&str> = Job::ALL
        .iter()
        .filter(|job| !job.is_registered())
        .map(|job| job.name())
        .collect();
    tracing::info!(
        jobs = ?registered_jobs().iter().map(|j| j.name()).collect::<Vec<_>>(),
        not_available = ?skipped,
        "scheduler started"
    );
}

/// Runs `job`'s due tick (a missed one first), then sleeps until its next firing.
async fn job_loop(ctx: Context, job: Job, claimant: String) {
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        if let Err(err) = run_due(&ctx, job, &claimant).await {
            tracing::error!(job = job.name(), error = %err, "cannot run a scheduled job");
        }

        let settings = ctx.settings();
        let now = ctx.clock.now();
        let Some(next) = job.schedule(&settings).next_after(now) else {
            tracing::warn!(job = job.name(), "the job's schedule never fires again");
            return;
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    fn monday_seven() -> CronSchedule {
        "0 0 7 * * Mon".parse().unwrap()
    }

    #[test]
    fn the_latest_firing_is_at_or_before_now_in_uk_time() {
        // 2026-02-09 is a Monday; 07:00 GMT is 07:00 UTC in winter.
        let cases = [
            ("2026-02-09T07:00:00Z", "2026-02-09T07:00:00Z"),
            ("2026-02-09T06:59:59Z", "2026-02-02T07:00:00Z"),
            ("2026-02-11T12:00:00Z", "2026-02-09T07:00:00Z"),
            // In summer 07:00 BST is 06:00 UTC.
            ("2026-06-08T06:30:00Z", "2026-06-08T06:00:00Z"),
            ("2026-06-08T05:59:00Z", "2026-06-01T06:00:00Z"),
        ];
        for (now, expected) in cases {
            assert_eq!(
                latest_firing(&monday_seven(), at(now)),
                Some(at(expected)),
                "{now}"
            );
        }
    }

    #[test]
    fn an_every_second_schedule_fires_at_the_current_whole_second() {
        let every_second: CronSchedule = "* * * * * *".parse().unwrap();
        let now = at("2026-02-09T07:00:30.600Z");
        assert_eq!(
            latest_firing(&every_second, now),
            Some(at("2026-02-09T07:00:30Z"))
        );
    }

    #[test]
    fn weeks_of_downtime_owe_one_run_the_most_recent() {
        let last = at("2026-01-12T07:00:00Z").timestamp();
        let now = at("2026-02-11T09:00:00Z");
        assert_eq!(
            due_tick(&monday_seven(), Some(last), now),
            Some(at("2026-02-09T07:00:00Z").timestamp())
        );
    }

    #[test]
    fn nothing_is_due_until_the_next_firing_after_the_last_tick() {
        let last = at("2026-02-09T07:00:00Z").timestamp();
        assert_eq!(
            due_tick(&monday_seven(), Some(last), at("2026-02-15T23:00:00Z")),
            None
        );
        assert_eq!(
            due_tick(&monday_seven(), Some(last), at("2026-02-16T07:00:00Z")),
            Some(at("2026-02-16T07:00:00Z").timestamp())
        );
    }

    #[test]
    fn a_job_never_run_is_due_at_its_latest_firing() {
        assert_eq!(
            due_tick(&monday_seven(), None, at("2026-02-10T00:00:00Z")),
            Some(at("2026-02-09T07:00:00Z").timestamp())
        );
    }

    #[test]
    fn every_job_has_a_distinct_name_and_is_scheduled() {
        let names: std::collections::BTreeSet<&str> = Job::ALL.iter().map(|j| j.name()).collect();
        assert_eq!(names.len(), 5);
        assert_eq!(registered_jobs(), Job::ALL.to_vec());
    }
}
