//! Voice: calls, their ledger of events, scripted callees and the dialling rate.
//!
//! Calls live in their own store under their own lock: there are few of them compared with
//! messages, and each carries a conversation log the message store has no place for.
//! `runner` plays a call through its lifecycle and TwiML; `twiml` parses documents.

pub(crate) mod runner;
pub(crate) mod twiml;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use tokio::sync::{mpsc, oneshot};

/// A call's status, as Twilio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    Failed,
    NoAnswer,
    Canceled,
}

impl CallStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::NoAnswer => "no-answer",
            Self::Canceled => "canceled",
        }
    }

    pub(crate) fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "queued" => Self::Queued,
            "ringing" => Self::Ringing,
            "in-progress" => Self::InProgress,
            "completed" => Self::Completed,
            "busy" => Self::Busy,
            "failed" => Self::Failed,
            "no-answer" => Self::NoAnswer,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }
}

/// Direction of a call, as Twilio names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum CallDirection {
    #[serde(rename = "outbound-api")]
    OutboundApi,
    #[serde(rename = "inbound")]
    Inbound,
}

impl CallDirection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::OutboundApi => "outbound-api",
            Self::Inbound => "inbound",
        }
    }
}

/// Twilio's answering-machine detection modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MachineDetection {
    /// Decides as soon as it can: `machine_start` for a machine.
    Enable,
    /// Waits for the greeting to end: `machine_end_beep|silence|other`.
    DetectMessageEnd,
}

/// Where a call's TwiML comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Fetched from a URL with GET or POST, with extra parameters (e.g. a Gather's result).
    Fetch {
        url: String,
        method: Method,
        extra: Vec<(String, String)>,
    },
    /// A document given inline (`Twiml`).
    Inline(String),
}

/// HTTP method of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

impl Method {
    /// Twilio accepts the method names in any case; absent means POST.
    pub(crate) fn parse(value: Option<&str>) -> Option<Self> {
        match value.map(str::to_ascii_uppercase).as_deref() {
            None | Some("" | "POST") => Some(Self::Post),
            Some("GET") => Some(Self::Get),
            _ => None,
        }
    }
}

/// Which status-callback events a call asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallbackEvents {
    pub(crate) initiated: bool,
    pub(crate) ringing: bool,
    pub(crate) answered: bool,
    pub(crate) completed: bool,
}

impl CallbackEvents {
    /// Twilio's default: only `completed`.
    pub(crate) const COMPLETED_ONLY: Self = Self {
        initiated: false,
        ringing: false,
        answered: false,
        completed: true,
    };
}

/// Who produced an event of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Speaker {
    /// Our application, through TwiML.
    Agent,
    /// The person or machine at the other end.
    Callee,
    /// The simulated Twilio itself.
    System,
}

/// What happened at one point of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EventKind {
    Say,
    Play,
    Pause,
    Gather,
    Speech,
    Digits,
    Silence,
    Dial,
    Record,
    Hangup,
    Redirect,
    Reject,
    Error,
    Voicemail,
    /// A `<Connect><ConversationRelay>` session started (its WebSocket is open).
    Connect,
    /// One `text` token of a ConversationRelay reply, as the callee heard it.
    Token,
    /// The callee spoke over a reply: `text` is what had been spoken until then.
    Interrupt,
    /// The application switched languages (`language`).
    Language,
    /// The application ended the ConversationRelay session (`end`, with its handoff data).
    End,
}

/// One entry of a call's conversation log.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CallEvent {
    #[serde(serialize_with = "rfc3339")]
    pub(crate) at: DateTime<Utc>,
    pub(crate) kind: EventKind,
    pub(crate) speaker: Speaker,
    pub(crate) text: String,
    /// Verb attributes and results worth asserting on (voice, confidence, URLs, codes).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty", flatten)]
    pub(crate) detail: serde_json::Map<String, serde_json::Value>,
}

fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn opt_rfc3339<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// A request to a running call from the REST API.
#[derive(Debug)]
pub(crate) enum Control {
    /// End the call with this status; the runner acknowledges once the status is stored.
    End(CallStatus, oneshot::Sender<()>),
    /// Replace the current TwiML with another document.
    Redirect(Source),
}

/// Everything known about one call.
#[derive(Debug, Serialize)]
pub(crate) struct Call {
    pub(crate) sid: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) direction: CallDirection,
    pub(crate) status: CallStatus,
    pub(crate) answered_by: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub(crate) date_created: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub(crate) date_updated: DateTime<Utc>,
    /// When the simulated Twilio started dialling (after any wait for the calls-per-second
    /// limit).
    #[serde(serialize_with = "opt_rfc3339")]
    pub(crate) dialled_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "opt_rfc3339")]
    pub(crate) answered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "opt_rfc3339")]
    pub(crate) ended_at: Option<DateTime<Utc>>,
    /// Simulated seconds between answer and end (see `--call-second-ms`).
    pub(crate) duration: Option<u64>,
    pub(crate) error_code: Option<u32>,
    pub(crate) error_message: Option<String>,
    /// What a machine heard after it answered: everything our TwiML said or played.
    pub(crate) voicemail: Option<String>,
    /// Numbers reached with `<Dial>`.
    pub(crate) transfers: Vec<String>,
    pub(crate) events: Vec<CallEvent>,
    #[serde(skip)]
    pub(crate) control: Option<mpsc::UnboundedSender<Control>>,
    #[serde(skip)]
    pub(crate) queue_time_ms: u64,
}

impl Call {
    pub(crate) fn new(sid: String, from: &str, to: &str, direction: CallDirection) -> Self {
        let now = Utc::now();
        Self {
            sid,
            from: from.to_owned(),
            to: to.to_owned(),
            direction,
            status: CallStatus::Queued,
            answered_by: None,
            date_created: now,
            date_updated: now,
            dialled_at: None,
            answered_at: None,
            ended_at: None,
            duration: None,
            error_code: None,
            error_message: None,
            voicemail: None,
            transfers: Vec::new(),
            events: Vec::new(),
            control: None,
            queue_time_ms: 0,
        }
    }
}

/// How a scripted callee (or inbound caller) behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Behaviour {
    /// Answers and gives its next line to each `<Gather>`.
    #[default]
    Human,
    /// Answers as voicemail: never speaks, records what it hears.
    Machine,
    /// Never connects: `busy`.
    Busy,
    /// Rings out: `no-answer`.
    NoAnswer,
    /// Never connects: `failed`.
    Failed,
    /// Answers, then hangs up after `hangup_after_turns` Gathers.
    HangupMidCall,
}

/// One thing a callee says when a `<Gather>` listens (or, on a ConversationRelay call, when
/// the agent's reply is over, or over it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Line {
    /// Relay: hangs up once this many tokens of the agent's reply were heard.
    HangupMidReply {
        hangup_after_tokens: usize,
    },
    /// Relay: says `speech` over the agent's reply once this many of its tokens were heard.
    InterruptAfterTokens {
        speech: String,
        interrupt_after_tokens: usize,
    },
    /// Relay: says `speech` over the agent's reply this long (real ms) after its first token,
    /// when the reply is still being spoken then (each token takes `RELAY_TOKEN_SECONDS`).
    InterruptAfterMs {
        speech: String,
        interrupt_after_ms: u64,
    },
    Text(String),
    Speech {
        speech: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confidence: Option<f64>,
    },
    Digits {
        digits: String,
    },
    Silence {
        silence: bool,
    },
}

/// A scripted party of a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Callee {
    #[serde(default)]
    pub(crate) behaviour: Behaviour,
    #[serde(default)]
    pub(crate) lines: Vec<Line>,
    /// Gathers answered before hanging up (`hangup_mid_call`; default: all lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hangup_after_turns: Option<usize>,
    /// Extra ringing before answering, in real milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) answer_delay_ms: Option<u64>,
    /// Time before each answer to a Gather, in real milliseconds (default `--call-think-ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) think_ms: Option<u64>,
    /// A machine's AMD verdict with `DetectMessageEnd` (default `machine_end_beep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) answered_by: Option<String>,
}

/// Verdicts a machine may be given under `DetectMessageEnd`.
pub(crate) const MACHINE_END_VERDICTS: [&str; 3] = [
    "machine_end_beep",
    "machine_end_silence",
    "machine_end_other",
];

/// The callee "number" whose script every number without its own follows (a campaign of
/// thousands of contacts scripted with one request).
pub(crate) const ANY_NUMBER: &str = "*";

/// Calls, callees and the dialling queue.
#[derive(Debug, Default)]
pub(crate) struct CallStore {
    calls: Vec<Call>,
    by_sid: HashMap<String, usize>,
    callees: BTreeMap<String, Callee>,
    /// Earliest instant the next outbound call may be dialled under the calls-per-second limit.
    next_dial: Option<Instant>,
}

impl CallStore {
    pub(crate) fn new_sid() -> String {
        format!("CA{}", uuid::Uuid::new_v4().simple())
    }

    pub(crate) fn insert(&mut self, call: Call) {
        self.by_sid.insert(call.sid.clone(), self.calls.len());
        self.calls.push(call);
    }

    pub(crate) fn get(&self, sid: &str) -> Option<&Call> {
        self.by_sid.get(sid).map(|&index| &self.calls[index])
    }

    pub(crate) fn get_mut(&mut self, sid: &str) -> Option<&mut Call> {
        self.by_sid.get(sid).map(|&index| &mut self.calls[index])
    }

    /// Position of a call in creation order (list paging tokens).
    pub(crate) fn index_of(&self, sid: &str) -> Option<usize> {
        self.by_sid.get(sid).copied()
    }

    /// All calls, oldest first.
    pub(crate) fn all(&self) -> &[Call] {
        &self.calls
    }

    /// Appends an event to a call's log; a no-op for unknown calls (reset meanwhile).
    pub(crate) fn log(
        &mut self,
        sid: &str,
        kind: EventKind,
        speaker: Speaker,
        text: impl Into<String>,
        detail: serde_json::Map<String, serde_json::Value>,
    ) {
        if let Some(call) = self.get_mut(sid) {
            call.events.push(CallEvent {
                at: Utc::now(),
                kind,
                speaker,
                text: text.into(),
                detail,
            });
        }
    }

    /// Reserves the next dialling slot under `cps` calls per second (0 = no limit) and returns
    /// when it starts. Slots are handed out in creation order, so queued calls go out in order.
    pub(crate) fn reserve_dial_slot(&mut self, cps: u32, now: Instant) -> Instant {
        if cps == 0 {
            return now;
        }
        let slot = self.next_dial.map_or(now, |next| next.max(now));
        self.next_dial = Some(slot + Duration::from_secs(1) / cps);
        slot
    }

    /// The callee scripted for `number`, else the script under [`ANY_NUMBER`], else a human
    /// with nothing to say.
    pub(crate) fn callee(&self, number: &str) -> Callee {
        self.callees
            .get(number)
            .or_else(|| self.callees.get(ANY_NUMBER))
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn callees(&self) -> &BTreeMap<String, Callee> {
        &self.callees
    }

    pub(crate) fn get_callee(&self, number: &str) -> Option<&Callee> {
        self.callees.get(number)
    }

    pub(crate) fn set_callee(&mut self, number: String, callee: Callee) {
        self.callees.insert(number, callee);
    }

    pub(crate) fn remove_callee(&mut self, number: &str) -> bool {
        self.callees.remove(number).is_some()
    }
}

/// The lines a callee has left, consumed one per Gather.
pub(crate) type Script = VecDeque<Line>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_slots_are_spaced_by_the_rate_and_handed_out_in_order() {
        let mut store = CallStore::default();
        let now = Instant::now();
        let slots: Vec<Instant> = (0..3).map(|_| store.reserve_dial_slot(2, now)).collect();
        assert_eq!(slots[0], now);
        assert_eq!(slots[1], now + Duration::from_millis(500));
        assert_eq!(slots[2], now + Duration::from_millis(1000));
        assert_eq!(store.reserve_dial_slot(0, now), now);
    }

    #[test]
    fn a_number_without_its_own_script_follows_the_any_number_script() {
        let mut store = CallStore::default();
        assert_eq!(store.callee("+15550001111"), Callee::default());
        let busy = Callee {
            behaviour: Behaviour::Busy,
            ..Callee::default()
        };
        let machine = Callee {
            behaviour: Behaviour::Machine,
            ..Callee::default()
        };
        store.set_callee(ANY_NUMBER.to_owned(), busy.clone());
        store.set_callee("+15550002222".to_owned(), machine.clone());
        assert_eq!(store.callee("+15550001111"), busy);
        assert_eq!(store.callee("+15550002222"), machine);
        store.remove_callee(ANY_NUMBER);
        assert_eq!(store.callee("+15550001111"), Callee::default());
    }

    #[test]
    fn callee_lines_take_every_documented_shape() {
        let callee: Callee = serde_json::from_str(
            r#"{"behaviour":"human","lines":["hi",{"speech":"yes","confidence":0.5},{"digits":"1"},{"silence":true}]}"#,
        )
        .unwrap();
        assert_eq!(
            callee.lines,
            vec![
                Line::Text("hi".into()),
                Line::Speech {
                    speech: "yes".into(),
                    confidence: Some(0.5)
                },
                Line::Digits { digits: "1".into() },
                Line::Silence { silence: true },
            ]
        );
        let machine: Callee = serde_json::from_str(r#"{"behaviour":"no_answer"}"#).unwrap();
        assert_eq!(machine.behaviour, Behaviour::NoAnswer);
    }
}
