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
//! A claim is a lease (`schedule.lease_seconds`), renewed every third of it while the run goes
//! on, and the run is recorded as finished only when it ends. A daemon killed during a run
//! leaves its tick unfinished; once the lease runs out another daemon, or the same one
//! restarted, takes the tick over and runs it again. On SQLite, where the daemon is single
//! instance, the restarted daemon releases such runs at start and takes them over at once. A
//! repeat is safe: the digest run records one digest per subscriber and week and queues each
//! delivery under a dedupe key, so subscribers built before the kill are skipped and the rest
//! are built; the delivery queue keeps whatever was not sent. An unfinished run that a later
//! firing has overtaken is closed as abandoned instead, as a missed tick is: the later tick
//! does the work.
//!
//! When the daemon starts (`schedule.poll_on_start`), the sources never polled or whose next
//! poll time has passed are polled once, after the poll jobs' own first due tick, so that a
//! new install shows meetings and failing sources without waiting for the first firing. A
//! failing source still waits out its backoff, so a restart does not poll it again, and it
//! logs one warning per try. This start-up poll is not claimed: several daemons starting at
//! the same moment on one PostgreSQL database each poll the overdue sources once.
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
use crate::sources::poll::{PollFilter, poll_overdue_sources, poll_sources};
use crate::store::jobs::{self, TickClaim};
use crate::store::{Backend, StoreError};

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
    /// The latest tick's run was left unfinished by a daemon that stopped (its lease ran out):
    /// this daemon took it over and ran it again; the summary is in `job_runs.outcome`.
    Resumed { tick_at: i64, summary: String },
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

/// Runs `job` if a tick of it is due at the context's clock and this daemon wins the claim, or
/// takes over the latest tick if the daemon that claimed it stopped before finishing it.
pub async fn run_due(ctx: &Context, job: Job, claimant: &str) -> Result<TickOutcome, JobError> {
    if !job.is_registered() {
        return Err(JobError::NotRegistered(job));
    }
    let settings = ctx.settings();
    let now = ctx.clock.now_ts();
    let lease = lease_seconds(&settings);
    let last = jobs::last_tick(&ctx.store, job.name()).await?;
    let due = due_tick(job.schedule(&settings), last, ctx.clock.now());

    // A lease that ran out on an unfinished run: its daemon stopped during the run. Runs of
    // stopped daemons before the newest tick are superseded by it, as a missed tick is by a
    // later one; the newest tick itself is taken over below.
    let lease_end = jobs::earliest_lease_end(&ctx.store, job.name()).await?;
    let stale = lease_end.is_some_and(|end| end < now);
    if let Some(newest) = due.or(last).filter(|_| stale) {
        let closed =
            jobs::abandon_stale_ticks(&ctx.store, job.name(), newest, SUPERSEDED, now).await?;
        if closed > 0 {
            tracing::warn!(
                job = job.name(),
                runs = closed,
                "runs left unfinished by a stopped daemon are superseded by a later tick"
            );
        }
    }

    let Some(tick_at) = due else {
        let Some(last) = last.filter(|_| stale) else {
            return Ok(TickOutcome::NothingDue);
        };
        let claim =
            jobs::take_over_stale_tick(&ctx.store, job.name(), last, claimant, now, now + lease);
        if claim.await? == TickClaim::Taken {
            return Ok(TickOutcome::NothingDue);
        }
        tracing::warn!(
            job = job.name(),
            tick = %from_ts(last),
            "taking over a run that a stopped daemon did not finish"
        );
        return Ok(
            match run_claimed(ctx, &settings, job, last, claimant).await? {
                Ok(summary) => TickOutcome::Resumed {
                    tick_at: last,
                    summary,
                },
                Err(error) => TickOutcome::Failed {
                    tick_at: last,
                    error,
                },
            },
        );
    };

    let claim = jobs::claim_tick(&ctx.store, job.name(), tick_at, claimant, now, now + lease);
    if claim.await? == TickClaim::Taken {
        return Ok(TickOutcome::ClaimedElsewhere { tick_at });
    }
    if last.is_none() {
        let note = "skipped: the job's first start";
        jobs::finish_tick(&ctx.store, job.name(), tick_at, note, now).await?;
        tracing::info!(job = job.name(), tick = %from_ts(tick_at), "job registered");
        return Ok(TickOutcome::FirstStart { tick_at });
    }

    Ok(
        match run_claimed(ctx, &settings, job, tick_at, claimant).await? {
            Ok(summary) => TickOutcome::Ran { tick_at, summary },
            Err(error) => TickOutcome::Failed { tick_at, error },
        },
    )
}

/// The outcome recorded for a stopped daemon's unfinished run that a later tick supersedes.
const SUPERSEDED: &str = "abandoned: its daemon stopped during the run, and a later tick ran";

fn lease_seconds(settings: &Settings) -> i64 {
    i64::try_from(settings.schedule.lease_seconds).unwrap_or(i64::MAX / 4)
}

/// Runs a tick this daemon has claimed, keeping its lease alive meanwhile, and records how it
/// ended: the summary, or the error as text (the job failed; the next tick tries again).
async fn run_claimed(
    ctx: &Context,
    settings: &Settings,
    job: Job,
    tick_at: i64,
    claimant: &str,
) -> Result<Result<String, String>, JobError> {
    let span = tracing::info_span!("job", job = job.name(), tick = %from_ts(tick_at));
    async move {
        let keeper = LeaseKeeper::start(ctx, settings, job, tick_at, claimant);
        let result = run_job(ctx, settings, job, tick_at).await;
        drop(keeper);

        let (outcome, result) = match result {
            Ok(summary) => {
                // The queue is drained every minute; only the other jobs are news at info.
                if job == Job::Delivery {
                    tracing::debug!(summary = %summary, "job finished");
                } else {
                    tracing::info!(summary = %summary, "job finished");
                }
                (format!("ok: {summary}"), Ok(summary))
            }
            Err(err) => {
                let error = err.to_string();
                tracing::error!(error = %error, "job failed");
                (format!("error: {error}"), Err(error))
            }
        };
        let finished = ctx.clock.now_ts();
        jobs::finish_tick(&ctx.store, job.name(), tick_at, &outcome, finished).await?;
        Ok(result)
    }
    .instrument(span)
    .await
}

/// Renews a claimed tick's lease every third of `schedule.lease_seconds` while its run goes
/// on, in a task of its own (so a run holding the database's write lock cannot starve it);
/// dropping the keeper stops it.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl LeaseKeeper {
    fn start(
        ctx: &Context,
        settings: &Settings,
        job: Job,
        tick_at: i64,
        claimant: &str,
    ) -> LeaseKeeper {
        let lease = lease_seconds(settings);
        let every = std::time::Duration::from_secs((settings.schedule.lease_seconds / 3).max(1));
        let store = ctx.store.clone();
        let clock = ctx.clock.clone();
        let claimant = claimant.to_owned();
        let task = async move {
            loop {
                tokio::time::sleep(every).await;
                let until = clock.now_ts() + lease;
                match jobs::renew_claim(&store, job.name(), tick_at, &claimant, until).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("the run's claim was taken over by another daemon");
                        return;
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot renew the run's claim"),
                }
            }
        };
        LeaseKeeper(tokio::spawn(task.in_current_span()))
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
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

/// Starts one task per registered job; each runs its due ticks until shutdown. With
/// `schedule.poll_on_start`, one more task polls the overdue sources once (see the module doc).
pub fn spawn_jobs(ctx: &Context, tasks: &mut tokio::task::JoinSet<()>) {
    let claimant = claimant_id();
    let mut polls_started = Vec::new();
    for job in registered_jobs() {
        let ctx = ctx.clone();
        let claimant = claimant.clone();
        let started = if matches!(job, Job::PollFull | Job::PollLimited) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            polls_started.push(rx);
            Some(tx)
        } else {
            None
        };
        tasks.spawn(async move { job_loop(ctx, job, claimant, started).await });
    }
    if ctx.settings().schedule.poll_on_start {
        let ctx = ctx.clone();
        tasks.spawn(async move { poll_on_start(ctx, polls_started).await });
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

/// Polls the overdue sources once the poll jobs have run their first due tick (so that what a
/// missed tick polled is not polled twice). Shutdown stops it; what was stored stays stored.
async fn poll_on_start(ctx: Context, polls_started: Vec<tokio::sync::oneshot::Receiver<()>>) {
    for started in polls_started {
        // An error means the job's loop ended early; the poll goes ahead regardless.
        let _ = started.await;
    }
    let settings = ctx.settings();
    let span = tracing::info_span!("job", job = "poll_on_start", tick = "daemon start");
    let poll = poll_overdue_sources(&ctx.store, &settings).instrument(span.clone());
    tokio::select! {
        report = poll => {
            let _entered = span.enter();
            match report {
                Ok(report) => {
                    let totals = report.totals();
                    tracing::info!(
                        sources = totals.sources,
                        new = totals.new,
                        changed = totals.changed,
                        withdrawn = totals.withdrawn,
                        failed = totals.failed,
                        "overdue sources polled at start"
                    );
                }
                Err(err) => tracing::error!(error = %err, "cannot poll the overdue sources"),
            }
        }
        _ = ctx.shutdown.cancelled() => {}
    }
}

/// Runs `job`'s due tick (a missed one first), then sleeps until its next firing, or until the
/// lease of another daemon's unfinished run of it runs out, to take that run over. `started`
/// is told once the first due tick has been dealt with.
async fn job_loop(
    ctx: Context,
    job: Job,
    claimant: String,
    mut started: Option<tokio::sync::oneshot::Sender<()>>,
) {
    if ctx.store.backend() == Backend::Sqlite {
        // One daemon per SQLite database: an unfinished run is its killed predecessor's.
        match jobs::release_unfinished_ticks(&ctx.store, job.name()).await {
            Ok(0) => {}
            Ok(runs) => tracing::info!(job = job.name(), runs, "unfinished runs released"),
            Err(err) => tracing::error!(job = job.name(), error = %err, "cannot release runs"),
        }
    }
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        if let Err(err) = run_due(&ctx, job, &claimant).await {
            tracing::error!(job = job.name(), error = %err, "cannot run a scheduled job");
        }
        if let Some(started) = started.take() {
            let _ = started.send(());
        }

        let settings = ctx.settings();
        let now = ctx.clock.now();
        let next = job.schedule(&settings).next_after(now);
        let lease_end = match jobs::earliest_lease_end(&ctx.store, job.name()).await {
            Ok(end) => end.map(|end| from_ts(end + 1).max(now + chrono::Duration::seconds(1))),
            Err(err) => {
                tracing::warn!(job = job.name(), error = %err, "cannot read the job's leases");
                None
            }
        };
        let Some(wake) = next.into_iter().chain(lease_end).min() else {
            tracing::warn!(job = job.name(), "the job's schedule never fires again");
            return;
        };
        let wait = (wake - now).to_std().unwrap_or_default();
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
