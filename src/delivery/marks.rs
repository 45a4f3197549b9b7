//! Group commit of `sent` marks.
//!
//! A worker whose message the server accepted hands the mark to [`SentMarks::record`] and waits
//! until it is written; it sends nothing else meanwhile. One writer takes every mark waiting at
//! that moment and writes them in a single statement (`ledger::mark_sent_many`), so workers
//! that finish together share one database write instead of queueing for SQLite's single
//! writer one by one.
//!
//! What a crash can duplicate does not change: a message counts as in flight from the moment
//! it is handed to the server until its mark is written, each worker has at most one message
//! in flight, and so at most `delivery.workers` messages can go out twice after a kill, as
//! with one write per message.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::store::ledger::{self, SentMark};
use crate::store::{Store, StoreError};

/// Marks written in one statement at most.
const MAX_GROUP: usize = 128;

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
    /// Records that the server accepted delivery `id`, and returns once that is written.
    pub(super) async fn record(
        &self,
        id: i64,
        message_id: Option<String>,
        sent_at: i64,
    ) -> Result<(), StoreError> {
        let (written, outcome) = oneshot::channel();
        let pending = Pending {
            id,
            message_id,
            sent_at,
            written,
        };
        match self.queue.send(pending).await {
            Ok(()) => match outcome.await {
                Ok(result) => result,
                // The writer was dropped before answering, which only happens when the whole
                // drain is: the lease expires and the delivery is tried again.
                Err(_) => Err(StoreError::Invalid(format!(
                    "the sent mark of delivery {id} was abandoned unwritten"
                ))),
            },
            // No writer is running: write this mark alone.
            Err(mpsc::error::SendError(pending)) => {
                ledger::mark_sent(
                    &self.store,
                    pending.id,
                    pending.message_id.as_deref(),
                    pending.sent_at,
                )
                .await
            }
        }
    }
}

/// Writes the waiting marks a group at a time until every handle is dropped. A group that
/// cannot be written is written again mark by mark, so each worker hears its own mark's fate.
async fn write_groups(store: &Store, mut pending: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while pending.recv_many(&mut group, MAX_GROUP).await > 0 {
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
