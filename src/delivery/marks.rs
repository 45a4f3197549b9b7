//! Group commit of `sent` marks.
//!
//! A sender whose message the server accepted hands the mark to [`SentMarks::submit`] and gets
//! a [`PendingMark`] back: it is free to send the next message while the mark is written, and
//! the drain collects the mark's fate later. One writer takes every mark waiting at that moment
//! and writes them in a single statement (`ledger::mark_sent_many`), at most one statement per
//! [`PACE`], so that marks arriving together share one database write instead of queueing for
//! SQLite's single writer one by one.
//!
//! What a crash can duplicate: a message counts as in flight from the moment it is handed to
//! the server until its mark is written. The drain runs at most `delivery.workers` sends at
//! once and lets at most `delivery.workers` marks wait to be written (see `Drain::run`), so at
//! most twice `delivery.workers` messages can go out twice after a kill.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::store::ledger::{self, SentMark};
use crate::store::{Store, StoreError};

/// Marks written in one statement at most.
const MAX_GROUP: usize = 128;

/// The least time from the start of one write to the start of the next, unless a full group
/// is waiting. At a few thousand messages a second this gathers several marks per statement;
/// a lone mark waits at most this long.
pub(super) const PACE: Duration = Duration::from_millis(1);

/// A mark waiting for the writer, and where to say it was written.
struct Pending {
    id: i64,
    message_id: Option<String>,
    sent_at: i64,
    written: oneshot::Sender<Result<(), StoreError>>,
}

/// The workers' end of the group commit. When every handle is dropped the writer writes what
/// is left and finishes.
#[derive(Clone)]
pub(super) struct SentMarks {
    store: Store,
    queue: mpsc::Sender<Pending>,
}

/// A handle for the workers and the writer to run beside them (until the handle is dropped).
pub(super) fn group_commit(store: &Store) -> (SentMarks, impl Future<Output = ()> + '_) {
    let (queue, pending) = mpsc::channel(MAX_GROUP);
    let marks = SentMarks {
        store: store.clone(),
        queue,
    };
    (marks, write_groups(store, pending))
}

impl SentMarks {
    /// Hands the writer the mark of delivery `id`, which the server accepted. Waits only when
    /// the writer's queue is full.
    pub(super) async fn submit(
        &self,
        id: i64,
        message_id: Option<String>,
        sent_at: i64,
    ) -> PendingMark {
        let (written, outcome) = oneshot::channel();
        let pending = Pending {
            id,
            message_id,
            sent_at,
            written,
        };
        if let Err(mpsc::error::SendError(pending)) = self.queue.send(pending).await {
            // No writer is running: write this mark alone.
            let one = ledger::mark_sent(
                &self.store,
                pending.id,
                pending.message_id.as_deref(),
                pending.sent_at,
            )
            .await;
            let _ = pending.written.send(one);
        }
        PendingMark { id, outcome }
    }
}

/// A submitted mark: a future of whether it was written, once the writer has tried.
#[derive(Debug)]
pub(super) struct PendingMark {
    id: i64,
    outcome: oneshot::Receiver<Result<(), StoreError>>,
}

impl Future for PendingMark {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let id = self.id;
        Pin::new(&mut self.outcome)
            .poll(cx)
            .map(|answer| match answer {
                Ok(result) => result,
                // The writer was dropped before answering, which only happens when the whole
                // drain is: the lease expires and the delivery is tried again.
                Err(_) => Err(StoreError::Invalid(format!(
                    "the sent mark of delivery {id} was abandoned unwritten"
                ))),
            })
    }
}

/// Writes the waiting marks a group at a time, one group per [`PACE`] at most, until every
/// handle is dropped. A group that cannot be written is written again mark by mark, so each
/// sender hears its own mark's fate.
async fn write_groups(store: &Store, mut pending: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
        let next_write = tokio::time::Instant::now() + PACE;
        let full = group.len() == MAX_GROUP;
        let marks: Vec<SentMark<'_>> = group.iter().map(Pending::mark).collect();
        let written = ledger::mark_sent_many(store, &marks).await;
        drop(marks);
        match written {
            Ok(()) => {
                for mark in group.drain(..) {
                    // A worker that stopped waiting no longer needs the answer.
                    let _ = mark.written.send(Ok(()));
                }
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    marks = group.len(),
                    "cannot record a group of sent deliveries; recording them one by one"
                );
                for mark in group.drain(..) {
                    let one =
                        ledger::mark_sent(store, mark.id, mark.message_id.as_deref(), mark.sent_at)
                            .await;
                    let _ = mark.written.send(one);
                }
            }
        }
        if !full {
            tokio::time::sleep_until(next_write).await;
        }
    }
}

impl Pending {
    fn mark(&self) -> SentMark<'_> {
        SentMark {
            id: self.id,
            message_id: self.message_id.as_deref(),
            sent_at: self.sent_at,
        }
    }
}
