//! One limit per sender across everything that sends from it: campaign batches, single sends,
//! agent replies and dials.
//!
//! A campaign's rate is its own; Twilio's limits are per sender (a US long code takes 1 message
//! a second) and, for dialling, per account (1 call a second), so two campaigns and the replies
//! on one number could together exceed them. Every send therefore takes a slot of its sender from the shared
//! reservation in MongoDB ([`voice_agent_store::senders`]): a batch reserves a chunk of slots
//! with one write and sends at those instants; a single send or a dial reserves one. A slot is
//! used at its instant or, if the send is late for it by more than one spacing, dropped: sends
//! then lie in disjoint intervals one spacing long, so any window of `w` seconds holds at most
//! `w × limit + 1` of them, whichever processes made them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::time::Instant;
use voice_agent_domain::Channel;
use voice_agent_store::{MongoStore, Reservation, StoreError};

/// How far ahead of now a sender's slots may already be reserved before a reserver waits
/// instead of reserving more: bounds how long any send waits for its slot once it has one, and
/// how many slots a crashed reserver can waste.
pub const MAX_LOOK_AHEAD: Duration = Duration::from_secs(5);
/// A batch faster than its sender reserves about this much of the sender's time at once: one
/// write per chunk, and a single send on the same number waits at most about this long behind it.
const CHUNK_SPAN: Duration = Duration::from_millis(500);
/// A batch slower than its sender reserves at least this much of its own sending time at once,
/// so a fast campaign costs at most about ten writes a second.
const MIN_CHUNK_SPAN: Duration = Duration::from_millis(100);
/// Most slots one reservation takes.
const MAX_CHUNK: u32 = 512;
/// A wait for slots checks this often whether it should give up (lease lost, cancelled).
const WAIT_STEP: Duration = Duration::from_millis(500);

/// Sends per second allowed per sender, by channel, with overrides per sender. A rate of 0 (or
/// below) means no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderLimits {
    /// SMS per second per number (Twilio's US long code: 1).
    pub sms_per_second: f64,
    /// WhatsApp messages per second per number.
    pub whatsapp_per_second: f64,
    /// Calls dialled per second by the whole account (Twilio's CPS, 1 by default, is per
    /// account, whichever number dials).
    pub calls_per_second: f64,
    /// Per sender key ([`message_key`]), replacing the channel's default.
    pub overrides: HashMap<String, f64>,
}

/// The key of a message sender: the number (`whatsapp:`-prefixed on WhatsApp), or the
/// Messaging Service when it picks the number.
pub fn message_key(
    channel: Channel,
    from: Option<&str>,
    messaging_service_sid: Option<&str>,
) -> Option<String> {
    match (from, messaging_service_sid) {
        (Some(from), _) => Some(channel.address(from)),
        (None, Some(ms)) => Some(ms.to_owned()),
        (None, None) => None,
    }
}

/// The key of the account's dialling: one deployment talks to one Twilio account.
pub const CALLS_KEY: &str = "calls";

/// One sender and the time between two of its sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The key its slots are reserved under.
    pub key: String,
    /// Time between two sends.
    pub spacing: Duration,
}

impl SenderLimits {
    /// No limits (tests, tools).
    pub fn unlimited() -> Self {
        Self::default()
    }

    fn sender(&self, key: String, default: f64) -> Option<Sender> {
        let rate = self.overrides.get(&key).copied().unwrap_or(default);
        let spacing = crate::campaign::send_interval(rate)?;
        Some(Sender { key, spacing })
    }

    /// The limited sender of a message, if it has a limit. A Messaging Service spreads its
    /// sends over a pool of numbers of unknown size, so it is limited only by an override.
    pub fn message_sender(
        &self,
        channel: Channel,
        from: Option<&str>,
        messaging_service_sid: Option<&str>,
    ) -> Option<Sender> {
        let key = message_key(channel, from, messaging_service_sid)?;
        let default = match (from, channel) {
            (None, _) => 0.0,
            (Some(_), Channel::Sms) => self.sms_per_second,
            (Some(_), Channel::Whatsapp) => self.whatsapp_per_second,
        };
        self.sender(key, default)
    }

    /// The account's limited dialling, if it has a limit.
    pub fn call_sender(&self) -> Option<Sender> {
        self.sender(CALLS_KEY.to_owned(), self.calls_per_second)
    }
}

/// Why a send did not get a slot.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// The caller's condition to keep waiting turned false (its lease, its cancellation).
    #[error("stopped waiting for a send slot")]
    Stopped,
    /// The slot would come too late for the caller.
    #[error("the sender's next free slot is {0:?} away, more than this attempt can wait")]
    TooFar(Duration),
    /// The reservation itself failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The wall-clock instant `at` on this process's monotonic clock.
fn instant_of(at: DateTime<Utc>) -> Instant {
    let ahead = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + ahead
}

/// Sleeps until `at`, checking `keep_going` every [`WAIT_STEP`].
async fn wait_until(at: Instant, keep_going: &(impl Fn() -> bool + Sync)) -> Result<(), SlotError> {
    loop {
        if !keep_going() {
            return Err(SlotError::Stopped);
        }
        let now = Instant::now();
        if now >= at {
            return Ok(());
        }
        tokio::time::sleep((at - now).min(WAIT_STEP)).await;
    }
}

/// Reserves one slot of `sender` and waits for it: a single send or a dial. Fails with
/// [`SlotError::TooFar`] (before reserving) when the sender is backlogged beyond `max_wait`, or
/// (after reserving, the slot then goes unused) when the slot granted is.
pub async fn take_one_slot(
    store: &MongoStore,
    sender: &Sender,
    max_wait: Duration,
) -> Result<(), SlotError> {
    let look_ahead = MAX_LOOK_AHEAD.min(max_wait);
    let started = Instant::now();
    loop {
        match store
            .reserve_sender_slots(&sender.key, 1, sender.spacing, look_ahead)
            .await?
        {
            Reservation::Granted(g) => {
                let at = instant_of(g.first);
                let wait = at.saturating_duration_since(started);
                if wait > max_wait {
                    return Err(SlotError::TooFar(wait));
                }
                return wait_until(at, &|| true).await;
            }
            Reservation::Backlogged { free_at } => {
                let free = instant_of(free_at);
                let wait = free.saturating_duration_since(started);
                if wait > max_wait {
                    return Err(SlotError::TooFar(wait));
                }
                // Ask again once the backlog is within the look-ahead.
                let retry_at = free.checked_sub(look_ahead).unwrap_or(free);
                tokio::time::sleep_until(retry_at.max(Instant::now() + Duration::from_millis(10)))
                    .await;
            }
        }
    }
}

/// A single send's or dial's slot on `sender`, waited for within what the attempt can spare
/// before a request of `request_timeout`. A sender too busy for that is a retryable failure:
/// the retry (after Temporal's back-off) tries again.
pub async fn take_slot(
    store: &MongoStore,
    sender: &Sender,
    deadline: &crate::deadline::AttemptDeadline,
    request_timeout: Duration,
) -> Result<(), temporalio_sdk::activities::ActivityError> {
    match take_one_slot(store, sender, deadline.spare(request_timeout)).await {
        Ok(()) => Ok(()),
        Err(SlotError::Store(e)) => Err(anyhow::Error::new(e)
            .context("Failed to reserve a send slot")
            .into()),
        Err(e) => Err(anyhow::anyhow!("sender busy: {e}").into()),
    }
}

/// A batch's supply of slots on one sender: reserved a chunk at a time, handed out in order.
pub struct SlotPacer {
    store: MongoStore,
    sender: Sender,
    chunk: u32,
    slots: Mutex<VecDeque<DateTime<Utc>>>,
}

impl SlotPacer {
    /// A pacer for a batch whose own rate is `own_rate_per_second` (0: as fast as allowed).
    pub fn new(store: MongoStore, sender: Sender, own_rate_per_second: f64) -> Self {
        let chunk = chunk_size(
            sender.spacing,
            crate::campaign::send_interval(own_rate_per_second),
        );
        Self {
            store,
            sender,
            chunk,
            slots: Mutex::new(VecDeque::new()),
        }
    }

    /// The sender.
    pub fn sender(&self) -> &Sender {
        &self.sender
    }

    /// How many sends the sender's limit lets out in `budget` (at least one).
    pub fn sends_within(&self, budget: Duration) -> i64 {
        let n = budget.as_secs_f64() / self.sender.spacing.as_secs_f64().max(1e-9);
        (n.floor() as i64).max(1)
    }

    /// Waits for this send's slot. Slots the batch was too late for by more than a spacing are
    /// dropped (using them would crowd the sends after them); when none are left, the next chunk
    /// is reserved, or, if the sender is reserved far ahead, waited for. Gives up with
    /// [`SlotError::Stopped`] once `keep_going` is false.
    pub async fn next(&self, keep_going: &(impl Fn() -> bool + Sync)) -> Result<(), SlotError> {
        let spacing =
            chrono::Duration::from_std(self.sender.spacing).unwrap_or(chrono::Duration::MAX);
        loop {
            if !keep_going() {
                return Err(SlotError::Stopped);
            }
            let mut slots = self.slots.lock().await;
            let now = Utc::now();
            while slots.front().is_some_and(|s| *s + spacing < now) {
                slots.pop_front();
            }
            if let Some(slot) = slots.pop_front() {
                drop(slots);
                return wait_until(instant_of(slot), keep_going).await;
            }
            match self
                .store
                .reserve_sender_slots(
                    &self.sender.key,
                    self.chunk,
                    self.sender.spacing,
                    MAX_LOOK_AHEAD,
                )
                .await?
            {
                Reservation::Granted(g) => slots.extend((0..g.count).map(|i| g.slot(i))),
                Reservation::Backlogged { free_at } => {
                    drop(slots);
                    let retry_at = instant_of(free_at)
                        .checked_sub(MAX_LOOK_AHEAD)
                        .unwrap_or_else(Instant::now);
                    wait_until(
                        retry_at.max(Instant::now() + Duration::from_millis(10)),
                        keep_going,
                    )
                    .await?;
                }
            }
        }
    }
}

/// Slots per reservation for a batch paced at `own` (None: unpaced) on a sender paced at
/// `sender`. A batch at least as fast as its sender takes [`CHUNK_SPAN`] of the sender's time.
/// A slower one takes as many as its own pace can use before it falls a whole spacing behind
/// the slots (so none is dropped), but at least [`MIN_CHUNK_SPAN`] of its own time.
fn chunk_size(sender: Duration, own: Option<Duration>) -> u32 {
    let per = |span: Duration, step: Duration| -> u32 {
        let n = span.as_secs_f64() / step.as_secs_f64().max(1e-9);
        n.ceil().clamp(1.0, f64::from(MAX_CHUNK)) as u32
    };
    match own {
        Some(own) if own > sender => {
            let keeps_up = (sender.as_secs_f64() / (own - sender).as_secs_f64()).floor();
            let keeps_up = keeps_up.clamp(1.0, f64::from(MAX_CHUNK)) as u32;
            keeps_up.max(per(MIN_CHUNK_SPAN, own))
        }
        _ => per(CHUNK_SPAN, sender),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_batch_as_fast_as_its_sender_reserves_half_a_second_of_it() {
        assert_eq!(chunk_size(ms(1000), None), 1);
        assert_eq!(chunk_size(ms(100), None), 5);
        assert_eq!(chunk_size(ms(100), Some(ms(50))), 5);
        assert_eq!(chunk_size(Duration::from_micros(10), None), MAX_CHUNK);
    }

    #[test]
    fn a_slower_batch_reserves_what_its_pace_can_use() {
        // 9/s on a 10/s sender: nine slots before its pace falls a spacing behind.
        let n = chunk_size(ms(100), Some(Duration::from_secs_f64(1.0 / 9.0)));
        assert!((8..=9).contains(&n), "{n}");
        // Half the sender's rate: one at a time.
        assert_eq!(chunk_size(ms(100), Some(ms(200))), 1);
        // Fast campaigns: at least a tenth of a second of their own sends per write.
        assert_eq!(chunk_size(ms(1), Some(ms(2))), 50);
    }

    #[test]
    fn limits_are_per_sender_and_channel_with_overrides() {
        let limits = SenderLimits {
            sms_per_second: 1.0,
            whatsapp_per_second: 10.0,
            calls_per_second: 0.0,
            overrides: [("+15005550006".to_owned(), 4.0)].into(),
        };
        let sms = limits
            .message_sender(Channel::Sms, Some("+15005550006"), None)
            .unwrap();
        assert_eq!(sms.spacing, ms(250));
        let other = limits
            .message_sender(Channel::Sms, Some("+15005550007"), None)
            .unwrap();
        assert_eq!(other.spacing, ms(1000));
        let wa = limits
            .message_sender(Channel::Whatsapp, Some("+15005550006"), None)
            .unwrap();
        assert_eq!(wa.key, "whatsapp:+15005550006");
        assert_eq!(wa.spacing, ms(100));
        assert!(limits.call_sender().is_none());
        let service = "MG00000000000000000000000000000000";
        assert!(
            limits
                .message_sender(Channel::Sms, None, Some(service))
                .is_none()
        );
    }
}
