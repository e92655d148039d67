//! In-memory state shared by every handler and background delivery task.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::config::{Config, Secret};

/// Handle given to handlers; cheap to clone.
pub(crate) type AppState = Arc<Shared>;

/// Everything the simulator knows, plus the means to run background deliveries.
pub(crate) struct Shared {
    pub(crate) account_sid: String,
    pub(crate) auth_token: Secret,
    pub(crate) api_key: Option<(String, Secret)>,
    pub(crate) default_sms_url: Option<Url>,
    pub(crate) callback_delay: Duration,
    pub(crate) admin_allow_remote: bool,
    initial_faults: Faults,
    store: Mutex<Store>,
    pub(crate) http: reqwest::Client,
    pub(crate) tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled and replaced on reset, so deliveries of wiped messages stop.
    generation: Mutex<CancellationToken>,
}

impl Shared {
    pub(crate) fn new(
        config: &Config,
        http: reqwest::Client,
        shutdown: &CancellationToken,
    ) -> Self {
        let faults = Faults {
            error_rate: config.error_rate,
            too_many_requests_rate: config.too_many_requests_rate,
            latency_ms: config.latency_ms,
            accept_delay_ms: 0,
            callback_loss_rate: 0.0,
            rate_limit_mps: config.rate_limit_mps,
        };
        Self {
            account_sid: config.account_sid.clone(),
            auth_token: config.auth_token.clone(),
            api_key: config
                .api_key_sid
                .clone()
                .zip(config.api_key_secret.clone()),
            default_sms_url: config.default_sms_url.clone(),
            callback_delay: Duration::from_millis(config.callback_delay_ms),
            admin_allow_remote: config.admin_allow_remote,
            initial_faults: faults,
            store: Mutex::new(Store::new(faults)),
            http,
            tasks: TaskTracker::new(),
            shutdown: shutdown.clone(),
            generation: Mutex::new(shutdown.child_token()),
        }
    }

    /// Locks the store. A panic while holding the lock cannot leave it half-updated in a way
    /// that matters to a simulator, so poisoning is ignored.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Token that background deliveries stop on (shutdown or reset).
    pub(crate) fn generation(&self) -> CancellationToken {
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets all messages, number settings and rate windows; faults return to the start values.
    pub(crate) fn reset(&self) {
        {
            let mut generation = self
                .generation
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            generation.cancel();
            *generation = self.shutdown.child_token();
        }
        *self.store() = Store::new(self.initial_faults);
    }
}

/// Runtime-adjustable fault injection.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub(crate) struct Faults {
    /// Fraction of authenticated REST requests answered 500 / 20500.
    pub(crate) error_rate: f64,
    /// Fraction of authenticated REST requests answered 429 / 20429.
    pub(crate) too_many_requests_rate: f64,
    /// Latency added to each REST request.
    pub(crate) latency_ms: u64,
    /// Messages per second per sender; 0 = unlimited.
    pub(crate) rate_limit_mps: u32,
    /// Delay between accepting a created message and answering: a slow or lost response, after
    /// which a client that gave up may wrongly think the message was not sent.
    #[serde(default)]
    pub(crate) accept_delay_ms: u64,
    /// Fraction of status callbacks never sent, as if lost on the way; the message's status
    /// still moves on and shows in the REST API.
    #[serde(default)]
    pub(crate) callback_loss_rate: f64,
}

/// Message status values the simulator uses (a subset of Twilio's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MessageStatus {
    Accepted,
    Queued,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Received,
}

impl MessageStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Received => "received",
        }
    }
}

/// Direction of a message, as Twilio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Direction {
    #[serde(rename = "outbound-api")]
    OutboundApi,
    #[serde(rename = "inbound")]
    Inbound,
}

/// One stored message, outbound (REST-created) or inbound (injected).
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) sid: String,
    pub(crate) direction: Direction,
    pub(crate) from: Option<String>,
    pub(crate) to: String,
    pub(crate) body: String,
    pub(crate) messaging_service_sid: Option<String>,
    pub(crate) status: MessageStatus,
    pub(crate) error_code: Option<u32>,
    pub(crate) num_segments: usize,
    pub(crate) media_urls: Vec<String>,
    pub(crate) date_created: DateTime<Utc>,
    pub(crate) date_updated: DateTime<Utc>,
    pub(crate) date_sent: Option<DateTime<Utc>>,
    pub(crate) status_callback: Option<String>,
    /// Webhook URL and parameters of an inbound message, kept so it can be re-delivered
    /// identically.
    pub(crate) inbound: Option<(String, Vec<(String, String)>)>,
    /// Deleted through the REST API: hidden there, still in the ledger.
    pub(crate) deleted: bool,
}

/// How an outbound message to a number ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FinalStatus {
    /// `sent` then `delivered`.
    #[default]
    Delivered,
    /// `sent` then `undelivered` with an error code.
    Undelivered,
    /// `failed` with an error code, never `sent`.
    Failed,
    /// `sent` and nothing more (the carrier never confirms).
    Sent,
}

/// Scripted delivery outcome for a destination number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Outcome {
    pub(crate) status: FinalStatus,
    /// Error code reported with `undelivered`/`failed`; defaults to 30003 / 30008.
    pub(crate) error_code: Option<u32>,
}

impl Outcome {
    pub(crate) fn error_code(self) -> Option<u32> {
        match self.status {
            FinalStatus::Undelivered => Some(self.error_code.unwrap_or(30003)),
            FinalStatus::Failed => Some(self.error_code.unwrap_or(30008)),
            FinalStatus::Delivered | FinalStatus::Sent => None,
        }
    }
}

/// Per-number settings made through the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NumberConfig {
    /// Webhook for inbound SMS to this number.
    #[serde(default)]
    pub(crate) sms_url: Option<Url>,
    /// How outbound messages to this number end.
    #[serde(default)]
    pub(crate) outcome: Outcome,
}

/// Message filters of the list endpoint; dates compare on the UTC calendar day of `date_sent`.
#[derive(Debug, Default)]
pub(crate) struct ListFilter {
    pub(crate) to: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) date_sent: Option<chrono::NaiveDate>,
    pub(crate) date_sent_before: Option<chrono::NaiveDate>,
    pub(crate) date_sent_after: Option<chrono::NaiveDate>,
}

impl ListFilter {
    fn matches(&self, message: &Message) -> bool {
        if message.deleted {
            return false;
        }
        if self.to.as_deref().is_some_and(|to| to != message.to) {
            return false;
        }
        if self
            .from
            .as_deref()
            .is_some_and(|from| Some(from) != message.from.as_deref())
        {
            return false;
        }
        let has_date_filter = self.date_sent.is_some()
            || self.date_sent_before.is_some()
            || self.date_sent_after.is_some();
        if !has_date_filter {
            return true;
        }
        let Some(sent) = message.date_sent.map(|at| at.date_naive()) else {
            return false;
        };
        self.date_sent.is_none_or(|day| sent == day)
            && self.date_sent_before.is_none_or(|day| sent <= day)
            && self.date_sent_after.is_none_or(|day| sent >= day)
    }
}

/// The mutable state behind [`Shared::store`].
pub(crate) struct Store {
    /// Messages in creation order; lists walk it backwards (Twilio lists newest first).
    messages: Vec<Message>,
    index: HashMap<String, usize>,
    numbers: BTreeMap<String, NumberConfig>,
    pub(crate) faults: Faults,
    /// Acceptance times per sender within the last second.
    rate_windows: HashMap<String, VecDeque<Instant>>,
}

impl Store {
    fn new(faults: Faults) -> Self {
        Self {
            messages: Vec::new(),
            index: HashMap::new(),
            numbers: BTreeMap::new(),
            faults,
            rate_windows: HashMap::new(),
        }
    }

    pub(crate) fn insert(&mut self, message: Message) {
        self.index.insert(message.sid.clone(), self.messages.len());
        self.messages.push(message);
    }

    pub(crate) fn get(&self, sid: &str) -> Option<&Message> {
        self.index.get(sid).map(|&i| &self.messages[i])
    }

    /// The message as the REST API sees it (deleted ones are gone).
    pub(crate) fn get_visible(&self, sid: &str) -> Option<&Message> {
        self.get(sid).filter(|m| !m.deleted)
    }

    /// Deletes a message from the REST view; false if there was none.
    pub(crate) fn hide(&mut self, sid: &str) -> bool {
        match self.get_mut(sid) {
            Some(message) if !message.deleted => {
                message.deleted = true;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn get_mut(&mut self, sid: &str) -> Option<&mut Message> {
        self.index.get(sid).map(|&i| &mut self.messages[i])
    }

    /// Matching messages, newest first.
    pub(crate) fn list<'a>(&'a self, filter: &'a ListFilter) -> impl Iterator<Item = &'a Message> {
        self.messages.iter().rev().filter(|m| filter.matches(m))
    }

    /// Outbound messages (the campaign ledger), oldest first.
    pub(crate) fn outbound(&self) -> impl Iterator<Item = &Message> {
        self.messages
            .iter()
            .filter(|m| m.direction == Direction::OutboundApi)
    }

    pub(crate) fn number(&self, number: &str) -> Option<&NumberConfig> {
        self.numbers.get(number)
    }

    pub(crate) fn numbers(&self) -> &BTreeMap<String, NumberConfig> {
        &self.numbers
    }

    pub(crate) fn set_number(&mut self, number: String, config: NumberConfig) {
        self.numbers.insert(number, config);
    }

    pub(crate) fn remove_number(&mut self, number: &str) -> bool {
        self.numbers.remove(number).is_some()
    }

    /// Records one message for `sender` if the per-second limit allows it.
    pub(crate) fn admit(&mut self, sender: &str, now: Instant) -> bool {
        let limit = self.faults.rate_limit_mps;
        if limit == 0 {
            return true;
        }
        let window = self.rate_windows.entry(sender.to_owned()).or_default();
        while window
            .front()
            .is_some_and(|&at| now.duration_since(at) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return false;
        }
        window.push_back(now);
        true
    }
}
