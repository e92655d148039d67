//! The durable inbox: webhooks whose work can wait answer Twilio once that work is stored in
//! MongoDB, and a drainer hands it to the workflows behind them at whatever pace Temporal
//! accepts.
//!
//! Why: an inbound message used to wait for a signal-with-start of its conversation before
//! the webhook answered, so a burst of replies after a campaign was served at Temporal's
//! workflow-start rate, and Twilio (which waits 15 s for a messaging webhook and does not retry
//! by itself) dropped the rest. Now the webhook costs a few MongoDB writes.
//!
//! How the drain keeps its promises:
//! - **Nothing lost.** An entry is deleted only after its workflow accepted it; an api that
//!   crashes leaves it stored, and the next drainer delivers it.
//! - **Once, in order.** Entries carry an arrival sequence; one target's entries (a
//!   conversation's messages, a call's progress) go one after the other, oldest first, and a
//!   failed one holds back the rest of its target. A delivery repeated after a crash (the
//!   signal landed, the delete did not) is dropped by the workflow, which keeps the ids it has
//!   seen.
//! - **One drainer at a time.** Every api process runs the drain loop, but only the holder of
//!   the `inbox` lease delivers. The holder renews it every second and delivers only within
//!   [`DELIVER_WINDOW`] of its last renewal, each delivery bounded by [`DELIVERY_TIMEOUT`];
//!   another process takes over only after seeing no renewal for [`LEASE`] on its own clock,
//!   which is longer than both together, so two processes never deliver at the same time.
//! - **Backpressure.** At most [`CONCURRENCY`] deliveries are in flight; when a round
//!   delivers nothing (Temporal down), the drainer backs off up to [`MAX_BACKOFF`]. A target
//!   whose entry fails rests (1 s doubling to 60 s) and is left out of the reads meanwhile, so
//!   a stuck conversation holds back nobody else; at most [`PER_TARGET`] entries of one target
//!   go per round. A holder that delivers nothing for [`GIVE_UP_AFTER`] gives the lease up, in
//!   case another api can reach Temporal where it cannot.
//! - **Refusals are kept.** An entry Temporal refuses outright (an invalid argument) moves to
//!   `inbox_dead` with the reason; everything else (unreachable, permission, an unknown kind
//!   from a newer version) is retried.
//!
//! Known limits: the arrival sequence is the receiving api's clock (microseconds, strictly
//! increasing within a process), so two messages of one conversation that reach two apis
//! within their clock skew may be handed over in either order (keep the apis' clocks
//! NTP-synced); a signal-with-start resent after a timed-out attempt that Temporal did apply
//! reaches the workflow twice, and the workflow drops the repeat by its id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use temporalio_client::errors::{WorkflowInteractionError, WorkflowStartError};
use temporalio_client::{WorkflowSignalOptions, WorkflowStartOptions};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use voice_agent_domain::mask_workflow_id;
use voice_agent_store::{InboxEntry, MongoStore, StoreError};
use voice_agent_workflows::{
    CallStatusEvent, CallWorkflow, ConversationMessage, ConversationState, ConversationWorkflow,
};

/// The lease's name in the `leases` collection.
const LEASE_NAME: &str = "inbox";
/// How often the holder renews the lease.
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// A delivery starts only this soon after a renewal began.
const DELIVER_WINDOW: Duration = Duration::from_secs(3);
/// Longest a delivery may take; a slower one counts as failed and is retried.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// A lease unrenewed this long (seen on the taker's own clock) has lapsed. Longer than
/// [`DELIVER_WINDOW`] + [`DELIVERY_TIMEOUT`], so the old holder's last delivery has ended.
const LEASE: Duration = Duration::from_secs(10);
const _: () = assert!(
    DELIVER_WINDOW.as_millis() + DELIVERY_TIMEOUT.as_millis() < LEASE.as_millis()
        && RENEW_EVERY.as_millis() < DELIVER_WINDOW.as_millis()
);
/// Entries read per round.
const ROUND: i64 = 512;
/// Entries of one target delivered per round: well below the 200 ids a conversation
/// remembers, so entries delivered again after a crash are recognised as repeats.
const PER_TARGET: usize = 20;
/// A target whose entry failed rests this long before its next try, doubling up to
/// [`TARGET_BACKOFF_MAX`].
const TARGET_BACKOFF_MIN: Duration = Duration::from_secs(1);
const TARGET_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Most resting targets left out of a round's read (the query's size stays bounded).
const MAX_RESTING: usize = 1000;
/// A holder that has delivered nothing this long while entries wait gives the lease up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);
/// Deliveries in flight at once (each to a different target).
const CONCURRENCY: usize = 64;
/// How often an idle drainer looks for entries other api processes stored.
const POLL: Duration = Duration::from_millis(200);
/// Longest pause after a round that delivered nothing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An inbound SMS or WhatsApp message for its conversation (signal-with-start).
pub const KIND_MESSAGE: &str = "message";
/// A call's progress for its call workflow (a signal; an unknown call is skipped).
pub const KIND_CALL_STATUS: &str = "call_status";

/// What an inbound message's entry carries.
#[derive(Debug, Serialize, Deserialize)]
pub struct MessageHandoff {
    /// The conversation's state if this message starts it.
    pub state: ConversationState,
    /// The message signal.
    pub message: ConversationMessage,
}

/// What a call status entry carries.
#[derive(Debug, Serialize, Deserialize)]
pub struct CallStatusHandoff {
    /// The status signal.
    pub event: CallStatusEvent,
}

/// The webhooks' side of the inbox: store an entry and wake the local drainer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Inbox {
    store: MongoStore,
    wake: Arc<Notify>,
}

/// Arrival sequence: microseconds since the epoch, strictly increasing within this process
/// (two webhooks in the same microsecond still get an order).
fn next_seq() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

impl Inbox {
    /// An inbox over `store`.
    pub fn new(store: MongoStore) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Stores one entry (once per `id`) and wakes the drainer. Returns false when an entry
    /// with this id is already waiting.
    pub async fn put<T: Serialize>(
        &self,
        id: &str,
        kind: &str,
        target: &str,
        payload: &T,
    ) -> Result<bool, StoreError> {
        let entry = InboxEntry {
            id: id.to_owned(),
            kind: kind.to_owned(),
            target: target.to_owned(),
            seq: next_seq(),
            received_at: mongodb::bson::DateTime::now(),
            payload: serde_json::to_string(payload)
                .expect("inbox payloads are plain data and always encode"),
            attempts: 0,
            last_error: None,
        };
        let stored = self.store.enqueue_inbox(&entry).await?;
        self.wake.notify_one();
        Ok(stored)
    }

    /// Runs the drain loop until `shutdown`: waits for the lease, delivers while holding it,
    /// and gives it up on the way out so another api takes over at once.
    pub async fn drain(
        self,
        temporal: temporalio_client::Client,
        task_queue: String,
        shutdown: CancellationToken,
    ) {
        let holder = format!("api-{}", uuid::Uuid::new_v4().simple());
        let drainer = Drainer {
            inbox: self,
            temporal,
            task_queue,
            holder,
            blocked: Mutex::new(HashMap::new()),
        };
        tokio::spawn(report_backlog(
            drainer.inbox.store.clone(),
            shutdown.clone(),
        ));
        while !shutdown.is_cancelled() {
            let taken_at = match drainer.acquire(&shutdown).await {
                Ok(Some(at)) => at,
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "cannot reach MongoDB for the inbox lease; retrying");
                    sleep_or_stop(&shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            };
            info!("draining the inbox");
            if drainer.hold_and_deliver(&shutdown, taken_at).await == Held::GaveUp {
                // Another api may reach Temporal where this one cannot: let it have a go
                // before claiming again.
                drainer.release().await;
                sleep_or_stop(&shutdown, LEASE).await;
            }
        }
        drainer.release().await;
    }
}

struct Drainer {
    inbox: Inbox,
    temporal: temporalio_client::Client,
    task_queue: String,
    holder: String,
    /// Targets whose head entry failed, until when they rest and their current back-off: their
    /// entries are left out of rounds meanwhile, so they hold back nobody else.
    blocked: Mutex<HashMap<String, (Instant, Duration)>>,
}

/// How one delivery went.
enum Delivery {
    /// The workflow has it (or, for a call's progress, the call is gone and nothing needs it).
    Done,
    /// Try again later; the target's later entries wait.
    Retry(String),
    /// Temporal refuses it outright (an invalid argument): set aside in `inbox_dead` for an
    /// operator, and said loudly.
    Refused(String),
}

/// How a spell of holding the lease ended.
#[derive(Debug, PartialEq, Eq)]
enum Held {
    /// Lost to another api, or stopped.
    Ended,
    /// Nothing could be delivered for [`GIVE_UP_AFTER`]: this api may be cut off from Temporal.
    GaveUp,
}

impl Drainer {
    async fn release(&self) {
        if let Err(e) = self
            .inbox
            .store
            .release_lease(LEASE_NAME, &self.holder)
            .await
        {
            warn!(error = %e, "could not release the inbox lease; it lapses by itself");
        }
    }

    /// Waits until this process holds the lease. Returns when the claim that took it was sent
    /// (the delivery window counts from there), or `None` when stopped first.
    async fn acquire(&self, shutdown: &CancellationToken) -> Result<Option<Instant>, StoreError> {
        let store = &self.inbox.store;
        loop {
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            let sent = Instant::now();
            if store.claim_lease(LEASE_NAME, &self.holder).await? {
                return Ok(Some(sent));
            }
            let Some(seen) = store.lease(LEASE_NAME).await? else {
                continue;
            };
            if seen.holder.is_none() {
                continue;
            }
            // Another api drains, or did until it stopped: take over only once it has not
            // renewed for a whole lease period, timed here.
            let watched_from = Instant::now();
            loop {
                sleep_or_stop(shutdown, RENEW_EVERY).await;
                if shutdown.is_cancelled() {
                    return Ok(None);
                }
                let now = store.lease(LEASE_NAME).await?;
                if now.as_ref() != Some(&seen) {
                    break;
                }
                if watched_from.elapsed() >= LEASE {
                    let sent = Instant::now();
                    if store
                        .take_over_lease(LEASE_NAME, &self.holder, &seen)
                        .await?
                    {
                        info!("took over the inbox lease from an api that stopped");
                        return Ok(Some(sent));
                    }
                    break;
                }
            }
        }
    }

    /// Renews the lease in the background and delivers rounds until it is lost, `shutdown`,
    /// or nothing could be delivered for [`GIVE_UP_AFTER`].
    async fn hold_and_deliver(&self, shutdown: &CancellationToken, taken_at: Instant) -> Held {
        let (renewed_tx, renewed) = watch::channel(taken_at);
        let lost = CancellationToken::new();
        let keeper = tokio::spawn({
            let store = self.inbox.store.clone();
            let holder = self.holder.clone();
            let lost = lost.clone();
            let shutdown = shutdown.clone();
            async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(RENEW_EVERY) => {}
                    }
                    let started = Instant::now();
                    match store.renew_lease(LEASE_NAME, &holder).await {
                        Ok(true) => {
                            let _ = renewed_tx.send(started);
                        }
                        Ok(false) => {
                            warn!("lost the inbox lease to another api");
                            lost.cancel();
                            return;
                        }
                        // Keep trying; deliveries stop by themselves once the window passes.
                        Err(e) => warn!(error = %e, "could not renew the inbox lease"),
                    }
                }
            }
        });
        let may_deliver = || {
            !lost.is_cancelled()
                && !shutdown.is_cancelled()
                && renewed.borrow().elapsed() < DELIVER_WINDOW
        };
        let mut backoff = Duration::ZERO;
        let mut failing_since: Option<Instant> = None;
        let outcome = loop {
            if lost.is_cancelled() || shutdown.is_cancelled() {
                break Held::Ended;
            }
            if !may_deliver() {
                // Renewals are failing (MongoDB unreachable): wait for one to land.
                sleep_or_stop(shutdown, RENEW_EVERY).await;
                continue;
            }
            let resting = self.resting_targets();
            let entries = match self.inbox.store.pending_inbox(ROUND, &resting).await {
                Ok(entries) => entries,
                Err(e) => {
                    warn!(error = %e, "cannot read the inbox");
                    sleep_or_stop(shutdown, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if entries.is_empty() {
                failing_since = None;
                tokio::select! {
                    () = self.inbox.wake.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                    () = shutdown.cancelled() => {}
                    () = lost.cancelled() => {}
                }
                continue;
            }
            let (delivered, failed) = self.round(entries, &may_deliver).await;
            if delivered == 0 && failed > 0 {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GIVE_UP_AFTER {
                    warn!("no inbox entry could be delivered for 30 s; letting another api try");
                    break Held::GaveUp;
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                sleep_or_stop(shutdown, backoff).await;
            } else {
                failing_since = None;
                backoff = Duration::ZERO;
            }
        };
        keeper.abort();
        outcome
    }

    /// Targets resting after a failure (at most [`MAX_RESTING`] of them, soonest due first).
    fn resting_targets(&self) -> Vec<String> {
        let mut blocked = self.blocked.lock().expect("not poisoned");
        let now = Instant::now();
        // Long rested targets are forgotten: their next failure starts a fresh back-off.
        blocked.retain(|_, (until, backoff)| now < *until + *backoff * 4);
        let mut resting: Vec<(&String, &Instant)> = blocked
            .iter()
            .filter(|(_, (until, _))| now < *until)
            .map(|(t, (until, _))| (t, until))
            .collect();
        resting.sort_by_key(|(_, until)| **until);
        resting
            .into_iter()
            .take(MAX_RESTING)
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn rest(&self, target: &str) {
        let mut blocked = self.blocked.lock().expect("not poisoned");
        let now = Instant::now();
        let backoff = blocked.get(target).map_or(TARGET_BACKOFF_MIN, |(_, b)| {
            (*b * 2).min(TARGET_BACKOFF_MAX)
        });
        blocked.insert(target.to_owned(), (now + backoff, backoff));
    }

    /// Delivers one round: the oldest entries, grouped by target (at most [`PER_TARGET`] each,
    /// which keeps a replay after a crash within what a conversation remembers of the ids it
    /// has seen), targets side by side. Each group is cleared as soon as it is done. Returns
    /// how many were delivered and how many failed.
    async fn round(
        &self,
        entries: Vec<InboxEntry>,
        may_deliver: &(impl Fn() -> bool + Sync),
    ) -> (usize, usize) {
        let mut order: Vec<String> = Vec::new();
        let mut by_target: HashMap<String, Vec<InboxEntry>> = HashMap::new();
        for entry in entries {
            let group = by_target.entry(entry.target.clone()).or_default();
            if group.is_empty() {
                order.push(entry.target.clone());
            }
            if group.len() < PER_TARGET {
                group.push(entry);
            }
        }
        let groups: Vec<Vec<InboxEntry>> = order
            .into_iter()
            .filter_map(|t| by_target.remove(&t))
            .collect();
        let outcomes: Vec<(usize, usize)> = futures::stream::iter(groups)
            .map(|group| self.deliver_group(group, may_deliver))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        outcomes
            .into_iter()
            .fold((0, 0), |(d, f), (dd, ff)| (d + dd, f + ff))
    }

    /// One target's entries, one after the other; stops at the first that fails.
    async fn deliver_group(
        &self,
        group: Vec<InboxEntry>,
        may_deliver: &(impl Fn() -> bool + Sync),
    ) -> (usize, usize) {
        let mut done: Vec<InboxEntry> = Vec::new();
        let mut failed = 0;
        for entry in group {
            if !may_deliver() {
                break;
            }
            match self.deliver(&entry).await {
                Delivery::Done => done.push(entry),
                Delivery::Refused(reason) => {
                    error!(
                        entry = %entry.id, kind = %entry.kind, reason = %mask_workflow_id(&reason),
                        "Temporal refused an inbox entry; set aside in inbox_dead"
                    );
                    metrics::counter!("voice_agent_inbox_refused_total", "kind" => kind_label(&entry.kind))
                        .increment(1);
                    if let Err(e) = self.inbox.store.dead_letter_inbox(&entry, &reason).await {
                        warn!(error = %e, "could not set a refused inbox entry aside; retrying");
                        failed += 1;
                        break;
                    }
                }
                Delivery::Retry(reason) => {
                    debug!(
                        entry = %entry.id, reason = %mask_workflow_id(&reason),
                        "inbox delivery failed; retrying later"
                    );
                    if let Err(e) = self.inbox.store.fail_inbox(&entry.id, &reason).await {
                        warn!(error = %e, "could not record a failed inbox delivery");
                    }
                    self.rest(&entry.target);
                    failed += 1;
                    // Its target's later entries wait for it.
                    break;
                }
            }
        }
        let delivered = done.len();
        if delivered > 0 {
            if failed == 0 {
                self.blocked
                    .lock()
                    .expect("not poisoned")
                    .remove(&done[0].target);
            }
            for entry in &done {
                metrics::counter!("voice_agent_inbox_delivered_total", "kind" => kind_label(&entry.kind))
                    .increment(1);
            }
            let messages: Vec<String> = done
                .iter()
                .filter(|e| e.kind == KIND_MESSAGE)
                .map(|e| e.id.clone())
                .collect();
            let ids: Vec<String> = done.into_iter().map(|e| e.id).collect();
            // Marked before the entries go: a crash in between delivers them again (the
            // workflow drops the repeats), never forgets them.
            let cleared = async {
                self.inbox.store.mark_handed_over(&messages).await?;
                self.inbox.store.complete_inbox(&ids).await
            };
            if let Err(e) = cleared.await {
                warn!(error = %e, "could not clear delivered inbox entries; they are delivered again");
            }
        }
        (delivered, failed)
    }

    async fn deliver(&self, entry: &InboxEntry) -> Delivery {
        let result = tokio::time::timeout(DELIVERY_TIMEOUT, async {
            match entry.kind.as_str() {
                KIND_MESSAGE => self.deliver_message(entry).await,
                KIND_CALL_STATUS => self.deliver_call_status(entry).await,
                // Written by a newer api (a rolling deploy or a rollback): leave it for one
                // that knows it.
                other => Delivery::Retry(format!("unknown inbox entry kind {other:?}")),
            }
        })
        .await;
        result.unwrap_or_else(|_| Delivery::Retry("Temporal did not answer in time".to_owned()))
    }

    async fn deliver_message(&self, entry: &InboxEntry) -> Delivery {
        let handoff: MessageHandoff = match serde_json::from_str(&entry.payload) {
            Ok(h) => h,
            Err(e) => return Delivery::Retry(format!("undecodable payload: {e}")),
        };
        let sent = self
            .temporal
            .signal_with_start_workflow(
                ConversationWorkflow::run,
                handoff.state,
                ConversationWorkflow::message,
                handoff.message,
                WorkflowStartOptions::new(self.task_queue.clone(), entry.target.clone()).build(),
            )
            .await;
        match sent {
            Ok(_) => Delivery::Done,
            Err(WorkflowStartError::PayloadConversion(e)) => Delivery::Refused(e.to_string()),
            Err(WorkflowStartError::Rpc(s)) if is_refusal(&s) => {
                Delivery::Refused(s.message().to_owned())
            }
            Err(e) => Delivery::Retry(e.to_string()),
        }
    }

    async fn deliver_call_status(&self, entry: &InboxEntry) -> Delivery {
        let handoff: CallStatusHandoff = match serde_json::from_str(&entry.payload) {
            Ok(h) => h,
            Err(e) => return Delivery::Retry(format!("undecodable payload: {e}")),
        };
        let sent = self
            .temporal
            .get_workflow_handle::<CallWorkflow>(entry.target.clone())
            .signal(
                CallWorkflow::status,
                handoff.event,
                // Temporal drops a repeat of the same request (a delivery resent after a
                // timeout or a crash).
                WorkflowSignalOptions::builder()
                    .request_id(entry.id.clone())
                    .build(),
            )
            .await;
        match sent {
            Ok(()) => Delivery::Done,
            // A missing namespace is a configuration error worth retrying, not a missing call.
            Err(WorkflowInteractionError::NotFound(s)) if s.message().contains("amespace") => {
                Delivery::Retry(s.message().to_owned())
            }
            // A call we never started a workflow for (or one long finished): nothing to update.
            Err(WorkflowInteractionError::NotFound(_)) => {
                debug!(call = %entry.id, "status of an unknown call skipped");
                Delivery::Done
            }
            Err(WorkflowInteractionError::PayloadConversion(e)) => Delivery::Refused(e.to_string()),
            Err(WorkflowInteractionError::Rpc(s)) if is_refusal(&s) => {
                Delivery::Refused(s.message().to_owned())
            }
            Err(e) => Delivery::Retry(e.to_string()),
        }
    }
}

/// The `kind` label of the inbox metrics: only the kinds this version writes, so an entry
/// from elsewhere cannot grow the label set.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        KIND_MESSAGE => KIND_MESSAGE,
        KIND_CALL_STATUS => KIND_CALL_STATUS,
        _ => "other",
    }
}

/// Statuses that a retry cannot change.
fn is_refusal(status: &temporalio_client::tonic::Status) -> bool {
    use temporalio_client::tonic::Code;
    matches!(
        status.code(),
        Code::InvalidArgument | Code::PermissionDenied
    )
}

async fn sleep_or_stop(shutdown: &CancellationToken, pause: Duration) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(pause) => {}
    }
}

/// Publishes the backlog every second: `voice_agent_inbox_pending` and
/// `voice_agent_inbox_oldest_age_seconds` (every api reports the same shared backlog).
async fn report_backlog(store: MongoStore, shutdown: CancellationToken) {
    loop {
        match store.inbox_backlog().await {
            Ok(backlog) => {
                metrics::gauge!("voice_agent_inbox_pending").set(backlog.pending as f64);
                let age = backlog.oldest.map_or(0.0, |at| {
                    let ms =
                        mongodb::bson::DateTime::now().timestamp_millis() - at.timestamp_millis();
                    ms.max(0) as f64 / 1000.0
                });
                metrics::gauge!("voice_agent_inbox_oldest_age_seconds").set(age);
            }
            Err(e) => debug!(error = %e, "cannot read the inbox backlog"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_sequence_strictly_increases() {
        let seqs: Vec<i64> = (0..10_000).map(|_| next_seq()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
}
