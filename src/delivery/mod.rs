//! Delivery: drains the ledger so that every queued message is sent exactly once, with leases,
//! retries and a rate limit.
//!
//! [`drain_queue`] claims due deliveries in batches (`store::ledger::claim_due`), renders each
//! one at send time, waits for the rate limiter (`delivery.rate_per_second`, shared by this
//! drain's `delivery.workers` concurrent senders), hands it to the transport and records the
//! outcome: sent only once the server accepted it; a transient failure retries after a capped
//! exponential backoff with jitter until `delivery.max_attempts`; a permanent one fails the row
//! and counts against the subscriber, who is suppressed after
//! `delivery.suppress_after_hard_failures` of them.
//!
//! Crash safety: a claimed row carries a lease. If the process dies, the lease expires and the
//! next drain (of any daemon) puts the row back in the queue, so no delivery is lost. The one
//! window for a duplicate is a message the server accepted just before the process died and
//! whose `sent` mark was never written: only mail in flight at the kill can go out twice.
//! Marks of messages accepted at about the same time are written together (`marks`) while the
//! senders go on; at most `delivery.workers` sends run at once and at most as many marks wait
//! to be written, so at most twice `delivery.workers` messages are in flight.

mod marks;

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use governor::{Quota, RateLimiter};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::Clock;
use crate::mail::MailError;
use crate::mail::message::{MailContext, render_claimed, render_delivery};
use crate::mail::templates::Renderer;
use crate::mail::transport::{SendError, Transport, TransportError, redact_addresses};
use crate::settings::{DeliverySettings, Settings};
use crate::store::ledger::{self, ClaimedDelivery, HardFailure};
use crate::store::{Store, StoreError};
use crate::tokens::SigningKey;
use marks::{PendingMark, SentMarks, group_commit};

/// What one drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DrainReport {
    pub sent: u64,
    pub retrying: u64,
    pub failed: u64,
    /// Deliveries whose outcome could not be recorded (the database failed); their lease
    /// expires and they are tried again.
    pub unrecorded: u64,
    /// Claimed deliveries handed back to the queue unattempted because of shutdown.
    pub released: u64,
}

/// Why a drain stopped early or could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Mail(#[from] MailError),
}

/// What sending needs besides the store, built once from the settings: the transport, the
/// compiled templates and the message context (sender, list headers, link signing key).
pub struct Mailer {
    pub transport: Transport,
    pub renderer: Renderer,
    pub ctx: MailContext,
}

impl Mailer {
    /// Builds the mailer the settings describe. Call it inside the tokio runtime.
    pub fn from_settings(
        settings: &Settings,
        signing_key: SigningKey,
        clock: Clock,
    ) -> Result<Mailer, DeliveryError> {
        Ok(Mailer {
            transport: Transport::from_settings(settings)?,
            renderer: Renderer::new(settings)?,
            ctx: MailContext::new(settings, signing_key, clock)?,
        })
    }

    /// [`drain_queue`] with this mailer.
    pub async fn drain(
        &self,
        store: &Store,
        settings: &Settings,
    ) -> Result<DrainReport, DeliveryError> {
        drain_queue(store, settings, &self.transport, &self.renderer, &self.ctx).await
    }
}

/// A message ready to send and its Message-ID (kept in the ledger).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub message: lettre::Message,
    pub message_id: Option<String>,
}

/// Why a delivery's message could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderFailure {
    /// Its subscriber, digest or council is gone, or its record is unreadable: it never will.
    Permanent(String),
    /// A template, key or database problem an operator can fix: try again later.
    Transient(String),
}

/// Turns a claimed delivery into a message at send time.
pub trait RenderDelivery: Sync {
    fn render(
        &self,
        delivery: &ClaimedDelivery,
    ) -> impl Future<Output = Result<Rendered, RenderFailure>> + Send;

    /// Renders a claimed batch, results in the batch's order. The default renders one
    /// delivery at a time; a renderer that can share reads or cores across the batch does
    /// better.
    fn render_batch(
        &self,
        batch: &[ClaimedDelivery],
    ) -> impl Future<Output = Vec<Result<Rendered, RenderFailure>>> + Send {
        async move {
            let mut out = Vec::with_capacity(batch.len());
            for delivery in batch {
                out.push(self.render(delivery).await);
            }
            out
        }
    }
}

/// The application's renderer: `mail::message::render_delivery` with the built templates.
pub struct MailRenderer<'a> {
    pub store: &'a Store,
    pub settings: &'a Settings,
    pub renderer: &'a Renderer,
    pub ctx: &'a MailContext,
}

impl RenderDelivery for MailRenderer<'_> {
    async fn render(&self, delivery: &ClaimedDelivery) -> Result<Rendered, RenderFailure> {
        match render_delivery(
            self.store,
            self.settings,
            self.renderer,
            self.ctx,
            delivery.id,
        )
        .await
        {
            Ok(rendered) => Ok(Rendered {
                message: rendered.message,
                message_id: Some(rendered.message_id),
            }),
            Err(err) => Err(classify_render_error(&err)),
        }
    }

    async fn render_batch(
        &self,
        batch: &[ClaimedDelivery],
    ) -> Vec<Result<Rendered, RenderFailure>> {
        render_claimed(self.store, self.settings, self.renderer, self.ctx, batch)
            .await
            .into_iter()
            .map(|result| match result {
                Ok(rendered) => Ok(Rendered {
                    message: rendered.message,
                    message_id: Some(rendered.message_id),
                }),
                Err(err) => Err(classify_render_error(&err)),
            })
            .collect()
    }
}

fn classify_render_error(err: &MailError) -> RenderFailure {
    let detail = err.to_string();
    match err {
        MailError::NotFound(_)
        | MailError::Corrupt { .. }
        | MailError::Address { .. }
        | MailError::Build(_) => RenderFailure::Permanent(detail),
        MailError::Template { .. }
        | MailError::TemplateFile { .. }
        | MailError::Dkim(_)
        | MailError::Store(_) => RenderFailure::Transient(detail),
    }
}

/// Sends every delivery that is due now, once, and reports what happened. Deliveries that fail
/// transiently are scheduled for later and not retried within this drain.
pub async fn drain_queue(
    store: &Store,
    settings: &Settings,
    transport: &Transport,
    renderer: &Renderer,
    mail_ctx: &MailContext,
) -> Result<DrainReport, DeliveryError> {
    let render = MailRenderer {
        store,
        settings,
        renderer,
        ctx: mail_ctx,
    };
    let drain = Drain::new(store, &settings.delivery, transport);
    drain.run(&render, None).await
}

/// One drain of the queue by one worker identity, with its settings and transport.
pub struct Drain<'a> {
    store: &'a Store,
    settings: &'a DeliverySettings,
    transport: &'a Transport,
    worker: String,
}

impl<'a> Drain<'a> {
    pub fn new(store: &'a Store, settings: &'a DeliverySettings, transport: &'a Transport) -> Self {
        Drain {
            store,
            settings,
            transport,
            worker: worker_id(),
        }
    }

    /// The name this drain leases rows under (`leased_by`).
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Drains until nothing is due, or until `shutdown` is cancelled: then the sends under way
    /// finish, claimed messages not yet started go back to the queue, and nothing new is
    /// claimed.
    ///
    /// Claiming, rendering and sending are pipelined: while the senders work through the
    /// queue, the next batch is claimed and rendered (on the blocking threads), so the send
    /// rate is not the render rate. At most about two batches are leased at a time (the queue
    /// and the batch being rendered); [`batch_size`] keeps both well inside the lease.
    /// Messages accepted at about the same time share one write of their `sent` marks (see
    /// `marks`). A sender does not wait for its mark; the drain stops taking new messages
    /// while `delivery.workers` marks are waiting to be written.
    pub async fn run<R: RenderDelivery>(
        &self,
        render: &R,
        shutdown: Option<&CancellationToken>,
    ) -> Result<DrainReport, DeliveryError> {
        let (marks, writer) = group_commit(self.store);
        let (report, ()) = futures::join!(self.run_batches(render, shutdown, marks), writer);
        let report = report?;

        // The delivery job drains every minute; a drain that found nothing due is detail.
        let handled =
            report.sent + report.retrying + report.failed + report.unrecorded + report.released;
        if handled == 0 {
            tracing::debug!(transport = %self.transport.describe(), "delivery queue empty");
        } else {
            tracing::info!(
                sent = report.sent,
                retrying = report.retrying,
                failed = report.failed,
                unrecorded = report.unrecorded,
                released = report.released,
                transport = %self.transport.describe(),
                "delivery queue drained"
            );
        }
        Ok(report)
    }

    /// The drain's pipeline: one side claims and renders batches into a queue of one batch,
    /// the other sends from that queue over `delivery.workers` concurrent senders, so the
    /// senders never wait at the end of a batch for the next one. `marks` is dropped when the
    /// senders are done, which lets the writer of sent marks finish.
    async fn run_batches<R: RenderDelivery>(
        &self,
        render: &R,
        shutdown: Option<&CancellationToken>,
        marks: SentMarks,
    ) -> Result<DrainReport, DeliveryError> {
        let capacity = usize::try_from(batch_size(self.settings))
            .unwrap_or(1)
            .max(1);
        let (ready, mut queue) = tokio::sync::mpsc::channel::<Prepared>(capacity);
        let senders = Arc::new(Senders {
            store: self.store.clone(),
            settings: self.settings.clone(),
            transport: self.transport.clone(),
            worker: self.worker.clone(),
            limiter: RateLimiter::direct(quota(self.settings)),
            marks,
            // A drain without a shutdown token never stops early: its own token is never
            // cancelled.
            shutdown: shutdown.cloned().unwrap_or_default(),
        });

        let produce = async move {
            loop {
                let batch = self.claim_and_render(render, shutdown).await?;
                if batch.is_empty() {
                    return Ok::<(), DeliveryError>(());
                }
                for prepared in batch {
                    // The senders stop only after the queue is closed, so this cannot fail.
                    if ready.send(prepared).await.is_err() {
                        return Ok(());
                    }
                }
            }
        };
        let consume = async move {
            let mut report = DrainReport::default();
            let mut running = tokio::task::JoinSet::new();
            // Sent marks handed to the writer and not yet written.
            let mut unwritten = futures::stream::FuturesUnordered::new();
            let workers = self.settings.workers.max(1);
            loop {
                if unwritten.len() >= workers {
                    if let Some(written) = unwritten.next().await {
                        count_mark(&mut report, written);
                    }
                    continue;
                }
                if running.len() >= workers {
                    if let Some(done) = running.join_next().await {
                        count_outcome(&mut report, &mut unwritten, done);
                    }
                    continue;
                }
                let Some((delivery, result)) = queue.recv().await else {
                    break;
                };
                let span = tracing::info_span!(
                    "delivery",
                    delivery_id = delivery.id,
                    subscriber_id = delivery.subscriber_id,
                    attempt = delivery.attempts,
                );
                let sender = Arc::clone(&senders);
                running.spawn(sender.deliver_one(delivery, result).instrument(span));
            }
            while let Some(done) = running.join_next().await {
                count_outcome(&mut report, &mut unwritten, done);
            }
            while let Some(written) = unwritten.next().await {
                count_mark(&mut report, written);
            }
            // The last handle on the sent marks goes with `senders`, so the writer finishes.
            drop(senders);
            report
        };
        let (produced, report) = futures::join!(produce, consume);
        produced?;
        Ok(report)
    }

    /// Claims the next batch of due deliveries and renders it (a suppressed subscriber's
    /// message is not rendered at all). Empty when nothing is due or the drain is stopping.
    async fn claim_and_render<R: RenderDelivery>(
        &self,
        render: &R,
        shutdown: Option<&CancellationToken>,
    ) -> Result<Vec<Prepared>, DeliveryError> {
        if shutdown.is_some_and(CancellationToken::is_cancelled) {
            return Ok(Vec::new());
        }
        let now = self.store.clock().now_ts();
        let released = ledger::release_expired_leases(self.store, now).await?;
        if released > 0 {
            tracing::warn!(released, "deliveries whose lease expired are queued again");
        }
        let lease_until = now + i64::try_from(self.settings.lease_seconds).unwrap_or(300);
        let batch = batch_size(self.settings);
        let claimed = ledger::claim_due(self.store, &self.worker, batch, now, lease_until).await?;

        let to_render: Vec<ClaimedDelivery> =
            claimed.iter().filter(|d| !d.suppressed).cloned().collect();
        let mut rendered = render.render_batch(&to_render).await.into_iter();
        Ok(claimed
            .into_iter()
            .map(|delivery| {
                let result = if delivery.suppressed {
                    None
                } else {
                    rendered.next()
                };
                (delivery, result)
            })
            .collect())
    }
}

/// What the sender tasks share, owned, so that sends run as tasks on every runtime thread
/// while the drain's own task claims and renders.
struct Senders {
    store: Store,
    settings: DeliverySettings,
    transport: Transport,
    worker: String,
    limiter: governor::DefaultDirectRateLimiter,
    marks: SentMarks,
    shutdown: CancellationToken,
}

impl Senders {
    /// Sends one claimed delivery (or hands it back, when the drain is stopping) and records
    /// what happened.
    async fn deliver_one(
        self: Arc<Self>,
        delivery: ClaimedDelivery,
        rendered: Option<Result<Rendered, RenderFailure>>,
    ) -> Result<Outcome, StoreError> {
        if self.shutdown.is_cancelled() {
            ledger::release_lease(&self.store, delivery.id, &self.worker).await?;
            return Ok(Outcome::Released);
        }
        if delivery.suppressed {
            return self
                .give_up(
                    &delivery,
                    "the subscriber is suppressed after permanent failures",
                    false,
                )
                .await;
        }

        let rendered = match rendered {
            Some(Ok(rendered)) => rendered,
            None => {
                return Err(StoreError::Invalid(format!(
                    "delivery {} was claimed but not rendered",
                    delivery.id
                )));
            }
            Some(Err(RenderFailure::Permanent(detail))) => {
                let detail = format!("cannot render the message: {detail}");
                return self.give_up(&delivery, &detail, false).await;
            }
            Some(Err(RenderFailure::Transient(detail))) => {
                let detail = format!("cannot render the message: {detail}");
                return self.retry_later(&delivery, &detail).await;
            }
        };

        self.limiter.until_ready().await;
        match self.transport.send(&rendered.message).await {
            Ok(()) => {
                let now = self.store.clock().now_ts();
                let mark = self
                    .marks
                    .submit(delivery.id, rendered.message_id, now)
                    .await;
                tracing::debug!("delivery sent");
                Ok(Outcome::Sent(mark))
            }
            Err(SendError::Transient(detail)) => self.retry_later(&delivery, &detail).await,
            Err(SendError::Permanent(detail)) => self.give_up(&delivery, &detail, true).await,
        }
    }

    async fn retry_later(
        &self,
        delivery: &ClaimedDelivery,
        detail: &str,
    ) -> Result<Outcome, StoreError> {
        let max_attempts = i64::from(self.settings.max_attempts);
        if delivery.attempts >= max_attempts {
            let detail = format!("gave up after {} attempts: {detail}", delivery.attempts);
            return self.give_up(delivery, &detail, false).await;
        }
        let delay = retry_delay(
            delivery.attempts,
            self.settings.backoff_base_seconds,
            self.settings.backoff_max_seconds,
            rand::thread_rng().r#gen::<f64>(),
        );
        let next_attempt_at = self.store.clock().now_ts() + delay;
        let recorded = ledger::mark_retrying(
            &self.store,
            delivery.id,
            &self.worker,
            next_attempt_at,
            detail,
        )
        .await?;
        tracing::warn!(
            error = %redact_addresses(detail),
            retry_in_seconds = delay,
            "delivery failed for now; it will be retried"
        );
        Ok(match recorded {
            ledger::Recorded::Recorded => Outcome::Retrying,
            ledger::Recorded::Superseded => Outcome::Superseded,
        })
    }

    /// Marks the delivery failed; a permanent refusal by the server (`bounced`) also counts
    /// against the subscriber.
    async fn give_up(
        &self,
        delivery: &ClaimedDelivery,
        detail: &str,
        bounced: bool,
    ) -> Result<Outcome, StoreError> {
        let count_against = if bounced {
            delivery.subscriber_id
        } else {
            None
        };
        let (recorded, hard) = ledger::mark_failed(
            &self.store,
            delivery.id,
            &self.worker,
            detail,
            count_against,
            i64::from(self.settings.suppress_after_hard_failures),
            self.store.clock().now_ts(),
        )
        .await?;
        tracing::warn!(error = %redact_addresses(detail), "delivery failed permanently");
        if let HardFailure::Suppressed { hard_failures } = hard {
            tracing::warn!(
                hard_failures,
                "subscriber suppressed after permanent failures"
            );
        }
        Ok(match recorded {
            ledger::Recorded::Recorded => Outcome::Failed,
            ledger::Recorded::Superseded => Outcome::Superseded,
        })
    }
}

/// Adds one sender task's outcome to the report; a sent message counts once its mark is
/// written, so its mark joins `unwritten`.
fn count_outcome(
    report: &mut DrainReport,
    unwritten: &mut futures::stream::FuturesUnordered<PendingMark>,
    done: Result<Result<Outcome, StoreError>, tokio::task::JoinError>,
) {
    match done {
        Ok(Ok(Outcome::Sent(mark))) => unwritten.push(mark),
        Ok(Ok(Outcome::Retrying)) => report.retrying += 1,
        Ok(Ok(Outcome::Failed)) => report.failed += 1,
        Ok(Ok(Outcome::Superseded)) => {}
        Ok(Ok(Outcome::Released)) => report.released += 1,
        Ok(Err(err)) => {
            report.unrecorded += 1;
            tracing::error!(error = %err, "cannot record a delivery's outcome");
        }
        Err(err) => {
            report.unrecorded += 1;
            tracing::error!(error = %err, "a send stopped before its outcome was recorded");
        }
    }
}

/// Adds a sent message whose mark the writer has tried to write to the report.
fn count_mark(report: &mut DrainReport, written: Result<(), StoreError>) {
    match written {
        Ok(()) => report.sent += 1,
        Err(err) => {
            report.unrecorded += 1;
            tracing::error!(error = %err, "cannot record that a delivery was sent");
        }
    }
}

/// A claimed delivery and its rendered message (`None` for a suppressed subscriber).
type Prepared = (ClaimedDelivery, Option<Result<Rendered, RenderFailure>>);

/// How one delivery ended in this drain.
enum Outcome {
    /// The server accepted it; its mark is being written.
    Sent(PendingMark),
    Retrying,
    Failed,
    /// Another worker owns the row now; its outcome counts there.
    Superseded,
    /// Not attempted because the daemon is stopping; back in the queue.
    Released,
}

/// Seconds to wait before attempt `attempts + 1`: `base x 2^(attempts-1)` capped at `max`,
/// of which the upper half is jittered by `unit` (0..1) so that failures spread out.
pub fn retry_delay(attempts: i64, base: u64, max: u64, unit: f64) -> i64 {
    let doublings = u32::try_from((attempts - 1).clamp(0, 62)).unwrap_or(62);
    let full = base
        .saturating_mul(2u64.saturating_pow(doublings))
        .min(max.max(base));
    let half = full / 2;
    let jitter = (half as f64 * unit.clamp(0.0, 1.0)).round() as u64;
    i64::try_from(full - half + jitter).unwrap_or(i64::MAX)
}

/// The rate limit: `rate_per_second` messages a second, in bursts of at most one per worker.
fn quota(settings: &DeliverySettings) -> Quota {
    let period = Duration::from_secs_f64(1.0 / settings.rate_per_second.max(1e-6));
    let burst = NonZeroU32::new(u32::try_from(settings.workers).unwrap_or(1).max(1))
        .unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// How many deliveries one claim takes: enough to keep the workers busy, few enough that the
/// batch is sent well within its lease at the configured rate.
fn batch_size(settings: &DeliverySettings) -> i64 {
    let per_lease = settings.rate_per_second * settings.lease_seconds as f64 / 10.0;
    let workers = settings.workers.max(1) as f64;
    per_lease.min(500.0).max(workers).round() as i64
}

/// A name for this process in `leased_by`: pid and a random part, unique across hosts in
/// practice.
fn worker_id() -> String {
    format!(
        "pid{}-{:08x}",
        std::process::id(),
        rand::thread_rng().r#gen::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_the_base_up_to_the_cap_with_the_upper_half_jittered() {
        // (attempts, base, max, unit) -> delay, worked out by hand: full = base x 2^(n-1)
        // capped at max; delay = full/2 + unit x full/2.
        let cases = [
            ((1, 60, 21_600, 0.0), 30),
            ((1, 60, 21_600, 1.0), 60),
            ((2, 60, 21_600, 0.5), 90),
            ((3, 60, 21_600, 0.0), 120),
            ((3, 60, 21_600, 1.0), 240),
            ((9, 60, 21_600, 1.0), 15_360),
            ((10, 60, 21_600, 0.0), 10_800),
            ((10, 60, 21_600, 1.0), 21_600),
            ((200, 60, 21_600, 1.0), 21_600),
            ((0, 60, 21_600, 1.0), 60),
            ((5, 1, 1, 1.0), 1),
        ];
        for ((attempts, base, max, unit), expected) in cases {
            assert_eq!(
                retry_delay(attempts, base, max, unit),
                expected,
                "attempts {attempts}, base {base}, max {max}, unit {unit}"
            );
        }
    }

    #[test]
    fn a_claim_batch_fits_well_inside_the_lease_and_feeds_every_worker() {
        let mut settings = Settings::defaults().delivery;
        settings.rate_per_second = 50.0;
        settings.lease_seconds = 300;
        settings.workers = 4;
        assert_eq!(batch_size(&settings), 500);
        settings.rate_per_second = 2.0;
        assert_eq!(batch_size(&settings), 60);
        settings.rate_per_second = 0.1;
        assert_eq!(batch_size(&settings), 4);
    }

    #[test]
    fn render_errors_about_missing_records_are_permanent_and_template_errors_transient() {
        let gone = MailError::NotFound("subscriber 4".into());
        assert!(matches!(
            classify_render_error(&gone),
            RenderFailure::Permanent(_)
        ));
        let template = MailError::Template {
            name: "digest".into(),
            detail: "missing variable".into(),
        };
        assert!(matches!(
            classify_render_error(&template),
            RenderFailure::Transient(_)
        ));
    }
}
