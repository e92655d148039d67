//! Shared state: settings, faults, the store lock and the means to run background deliveries.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::calls::CallStore;
use crate::config::{Config, Secret};
use crate::store::Store;

/// Handle given to handlers; cheap to clone.
pub(crate) type AppState = Arc<Shared>;

/// Everything the simulator knows, plus the means to run background deliveries.
pub(crate) struct Shared {
    pub(crate) account_sid: String,
    pub(crate) auth_token: Secret,
    pub(crate) api_key: Option<(String, Secret)>,
    pub(crate) default_sms_url: Option<Url>,
    pub(crate) default_voice_url: Option<Url>,
    pub(crate) default_voice_status_callback: Option<Url>,
    pub(crate) callback_delay: Duration,
    /// How long calls ring before the callee decides.
    pub(crate) call_ring: Duration,
    /// A callee's default time before each answer.
    pub(crate) call_think: Duration,
    /// Real time of one simulated call second.
    pub(crate) call_second: Duration,
    pub(crate) admin_allow_remote: bool,
    initial_faults: Faults,
    /// Kept apart from the store: every REST request and callback reads the faults, and they
    /// should not queue behind a long ledger query holding the store.
    faults: Mutex<Faults>,
    store: Mutex<Store>,
    /// Calls and callees; separate from the message store so a long ledger query on either
    /// does not hold up the other.
    calls: Mutex<CallStore>,
    pub(crate) http: reqwest::Client,
    /// Bounds concurrent status-callback requests, so a campaign cannot open thousands of
    /// connections to a slow receiver; waiting deliveries cost only their task.
    pub(crate) callback_permits: Semaphore,
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
            twilio_opt_out: config.twilio_opt_out,
            calls_per_second: config.calls_per_second,
        };
        Self {
            account_sid: config.account_sid.clone(),
            auth_token: config.auth_token.clone(),
            api_key: config
                .api_key_sid
                .clone()
                .zip(config.api_key_secret.clone()),
            default_sms_url: config.default_sms_url.clone(),
            default_voice_url: config.default_voice_url.clone(),
            default_voice_status_callback: config.default_voice_status_callback.clone(),
            call_ring: Duration::from_millis(config.call_ring_ms),
            call_think: Duration::from_millis(config.call_think_ms),
            call_second: Duration::from_millis(config.call_second_ms),
            callback_delay: Duration::from_millis(config.callback_delay_ms),
            admin_allow_remote: config.admin_allow_remote,
            initial_faults: faults,
            faults: Mutex::new(faults),
            store: Mutex::new(Store::default()),
            calls: Mutex::new(CallStore::default()),
            http,
            callback_permits: Semaphore::new(config.callback_concurrency),
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

    /// Locks the calls; poisoning is ignored as for the store.
    pub(crate) fn calls(&self) -> MutexGuard<'_, CallStore> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current faults.
    pub(crate) fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the faults under their lock and returns the new value.
    pub(crate) fn update_faults(&self, change: impl FnOnce(&mut Faults)) -> Faults {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut faults);
        *faults
    }

    /// Token that background deliveries stop on (shutdown or reset).
    pub(crate) fn generation(&self) -> CancellationToken {
        self.generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets all messages, calls, callees, number settings, templates, sessions, opt-outs and
    /// rate windows; the clock and the faults return to their start values.
    pub(crate) fn reset(&self) {
        {
            let mut generation = self
                .generation
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            generation.cancel();
            *generation = self.shutdown.child_token();
        }
        *self.store() = Store::default();
        *self.calls() = CallStore::default();
        self.update_faults(|faults| *faults = self.initial_faults);
    }
}

/// Runtime-adjustable fault injection and Twilio behaviours that tests may switch off.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
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
    pub(crate) accept_delay_ms: u64,
    /// Fraction of status callbacks never sent, as if lost on the way; the message's status
    /// still moves on and shows in the REST API.
    pub(crate) callback_loss_rate: f64,
    /// Whether SMS to a user who texted STOP to the sender fail with 21610, as on Twilio.
    pub(crate) twilio_opt_out: bool,
    /// Outbound calls dialled per second; 0 = unlimited. Excess calls wait, as on Twilio.
    pub(crate) calls_per_second: u32,
}

/// Message status values the simulator uses (a subset of Twilio's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MessageStatus {
    Accepted,
    Queued,
    Sent,
    Delivered,
    Read,
    Undelivered,
    Failed,
    Received,
}

impl MessageStatus {
    /// Every status, in the order of their discriminants (ledger counters index by them).
    pub(crate) const ALL: [Self; 8] = [
        Self::Accepted,
        Self::Queued,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Undelivered,
        Self::Failed,
        Self::Received,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
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

/// How an outbound message to a number ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FinalStatus {
    /// `sent` then `delivered`.
    Delivered,
    /// WhatsApp: `sent`, `delivered`, then `read`; SMS has no read receipts and stops at
    /// `delivered`.
    Read,
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
    /// None: the channel's normal ending (`delivered` for SMS, `read` for WhatsApp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<FinalStatus>,
    /// Error code reported with `undelivered`/`failed`; defaults to 30003 / 30008.
    pub(crate) error_code: Option<u32>,
}

/// Twilio's asynchronous error for a free-form WhatsApp message outside the 24-hour window.
pub(crate) const OUTSIDE_WHATSAPP_WINDOW: u32 = 63016;

impl Outcome {
    pub(crate) fn error_code(self) -> Option<u32> {
        match self.status {
            Some(FinalStatus::Undelivered) => Some(self.error_code.unwrap_or(30003)),
            Some(FinalStatus::Failed) => Some(self.error_code.unwrap_or(30008)),
            _ => None,
        }
    }

    /// The statuses an outbound message goes through after its initial one.
    pub(crate) fn plan(self, whatsapp: bool, outside_window: bool) -> Plan {
        use MessageStatus::{Delivered, Failed, Read, Sent, Undelivered};
        if outside_window {
            // Twilio accepts the create and fails the message once it tries to send it.
            return Plan {
                steps: &[Failed],
                error_code: Some(OUTSIDE_WHATSAPP_WINDOW),
            };
        }
        let steps: &'static [MessageStatus] = match (self.status, whatsapp) {
            (None | Some(FinalStatus::Read), true) => &[Sent, Delivered, Read],
            (None | Some(FinalStatus::Read | FinalStatus::Delivered), false)
            | (Some(FinalStatus::Delivered), true) => &[Sent, Delivered],
            (Some(FinalStatus::Undelivered), _) => &[Sent, Undelivered],
            (Some(FinalStatus::Failed), _) => &[Failed],
            (Some(FinalStatus::Sent), _) => &[Sent],
        };
        Plan {
            steps,
            error_code: self.error_code(),
        }
    }
}

/// The status changes scheduled for one outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) steps: &'static [MessageStatus],
    /// Reported with `failed` / `undelivered`.
    pub(crate) error_code: Option<u32>,
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
    /// Webhook for inbound calls to this number (an incoming number's VoiceUrl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) voice_url: Option<Url>,
    /// Status callback of inbound calls to this number (`completed` only, as Twilio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) voice_status_callback: Option<Url>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_listed_in_discriminant_order() {
        for (index, status) in MessageStatus::ALL.into_iter().enumerate() {
            assert_eq!(status as usize, index);
        }
    }

    #[test]
    fn plans_follow_the_channel() {
        use MessageStatus::{Delivered, Failed, Read, Sent, Undelivered};
        let default = Outcome::default();
        assert_eq!(default.plan(false, false).steps, [Sent, Delivered]);
        assert_eq!(default.plan(true, false).steps, [Sent, Delivered, Read]);
        let delivered = Outcome {
            status: Some(FinalStatus::Delivered),
            error_code: None,
        };
        assert_eq!(delivered.plan(true, false).steps, [Sent, Delivered]);
        let undelivered = Outcome {
            status: Some(FinalStatus::Undelivered),
            error_code: None,
        };
        let plan = undelivered.plan(true, false);
        assert_eq!(plan.steps, [Sent, Undelivered]);
        assert_eq!(plan.error_code, Some(30003));
        let closed = default.plan(true, true);
        assert_eq!(closed.steps, [Failed]);
        assert_eq!(closed.error_code, Some(63016));
    }
}
