//! Plays one call in the background: the wait for a dialling slot, ringing, the callee's
//! behaviour, the TwiML conversation and the status callbacks, in Twilio's order.
//!
//! Every wait is interruptible by the REST API (hang up, cancel, redirect) and by the call's
//! time limit; a reset or shutdown drops the whole task through the generation token.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::twiml::{self, Element};
use super::{
    Behaviour, Call, CallDirection, CallStatus, CallStore, CallbackEvents, Callee, Control,
    EventKind, Line, MACHINE_END_VERDICTS, MachineDetection, Method, Script, Source, Speaker,
};
use crate::state::AppState;
use crate::util::{country_of, is_e164, rfc2822};
use crate::webhook::{self, WebhookResponse};

mod relay;

/// Twilio's notice for the caller when the application fails.
const APPLICATION_ERROR: &str = "We are sorry, an application error has occurred. Goodbye.";
/// Simulated seconds a dialled party talks before hanging up.
const DIAL_TALK_SECONDS: u64 = 5;
/// Simulated seconds of a machine's greeting before the beep.
const GREETING_SECONDS: u64 = 3;
/// Simulated seconds a callee speaks into a `<Record>`.
const RECORDED_SECONDS: u64 = 4;
/// Speech confidence reported when a line does not give one.
const DEFAULT_CONFIDENCE: f64 = 0.9;

/// Everything a call needs to run, decided when it was created.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) sid: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) direction: CallDirection,
    pub(crate) source: Source,
    pub(crate) status_callback: Option<(String, Method)>,
    pub(crate) callback_events: CallbackEvents,
    pub(crate) machine_detection: Option<MachineDetection>,
    /// Seconds to ring before giving up (`Timeout`).
    pub(crate) timeout: u64,
    /// Seconds the call may last once answered (`TimeLimit`).
    pub(crate) time_limit: u64,
    pub(crate) record: bool,
    /// The other party: the callee of an outbound call, the caller of an inbound one.
    pub(crate) party: Callee,
    /// When an outbound call may be dialled under the calls-per-second limit.
    pub(crate) dial_at: Instant,
    /// Sign webhooks with a wrong key (inbound `bad_signature`).
    pub(crate) forge: bool,
}

/// Stores a new call and starts playing it; returns nothing because callers read the call
/// back from the store.
pub(crate) fn start(state: &AppState, plan: Plan) {
    let (sender, receiver) = mpsc::unbounded_channel();
    {
        let mut calls = state.calls();
        let mut call = Call::new(plan.sid.clone(), &plan.from, &plan.to, plan.direction);
        if plan.direction == CallDirection::Inbound {
            call.status = CallStatus::Ringing;
            call.dialled_at = Some(call.date_created);
        }
        call.control = Some(sender);
        calls.insert(call);
    }
    let cancel = state.generation();
    let runner = Runner::new(Arc::clone(state), plan, receiver);
    state.tasks.spawn(async move {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = runner.run() => {}
        }
    });
}

/// Why the conversation stopped before its document ended.
enum Stop {
    /// End with this status; `ack` answers a REST request waiting for the change.
    End(CallStatus, Option<oneshot::Sender<()>>),
    /// Continue with another document.
    Redirect(Source),
    /// The application failed (11200 retrieval, 12100 parse): the caller hears an error.
    AppError(u32, String),
}

impl From<Option<Control>> for Stop {
    fn from(control: Option<Control>) -> Self {
        match control {
            Some(Control::End(status, ack)) => Self::End(status, Some(ack)),
            Some(Control::Redirect(source)) => Self::Redirect(source),
            // The call left the store (reset): nothing more to do.
            None => Self::End(CallStatus::Completed, None),
        }
    }
}

/// How a call ended.
struct Ending {
    status: CallStatus,
    ack: Option<oneshot::Sender<()>>,
}

impl Ending {
    fn status(status: CallStatus) -> Self {
        Self { status, ack: None }
    }
}

/// What a callee gave a Gather.
enum Heard {
    Speech(String, f64),
    Digits(String),
    Silence,
}

struct Runner {
    state: AppState,
    plan: Plan,
    control: mpsc::UnboundedReceiver<Control>,
    script: Script,
    /// Gathers the party has answered (or let time out).
    turns: usize,
    /// Status callbacks sent so far (`SequenceNumber`).
    sequence: u32,
    answered: Option<Instant>,
    deadline: Option<Instant>,
    answered_by: Option<String>,
    /// URL of the current document: where a Gather or Record without `action` posts.
    document_url: Option<String>,
    /// What a machine heard after answering: the voicemail left.
    heard: Vec<String>,
}

impl Runner {
    fn new(state: AppState, plan: Plan, control: mpsc::UnboundedReceiver<Control>) -> Self {
        let script = plan.party.lines.iter().cloned().collect();
        Self {
            state,
            plan,
            control,
            script,
            turns: 0,
            sequence: 0,
            answered: None,
            deadline: None,
            answered_by: None,
            document_url: None,
            heard: Vec::new(),
        }
    }

    async fn run(mut self) {
        let ending = match self.plan.direction {
            CallDirection::OutboundApi => self.outbound().await,
            CallDirection::Inbound => {
                let source = self.plan.source.clone();
                self.conversation(source).await
            }
        };
        self.finish(ending).await;
    }

    /// Simulated seconds as real time.
    fn seconds(&self, seconds: u64) -> Duration {
        self.state
            .call_second
            .saturating_mul(u32::try_from(seconds).unwrap_or(u32::MAX))
    }

    /// Runs `future` unless the REST API or the time limit interrupts it first.
    async fn guarded<T>(&mut self, future: impl Future<Output = T>) -> Result<T, Stop> {
        let deadline = self.deadline;
        tokio::select! {
            output = future => Ok(output),
            control = self.control.recv() => Err(Stop::from(control)),
            () = until(deadline) => {
                self.log(EventKind::Hangup, Speaker::System, "time limit reached", Map::new());
                Err(Stop::End(CallStatus::Completed, None))
            }
        }
    }

    async fn wait(&mut self, duration: Duration) -> Result<(), Stop> {
        if duration.is_zero() {
            // Still give a pending hang-up the chance to land between verbs.
            return match self.control.try_recv() {
                Ok(control) => Err(Stop::from(Some(control))),
                Err(_) => Ok(()),
            };
        }
        self.guarded(tokio::time::sleep(duration)).await
    }

    fn log(
        &self,
        kind: EventKind,
        speaker: Speaker,
        text: impl Into<String>,
        detail: Map<String, Value>,
    ) {
        self.state
            .calls()
            .log(&self.plan.sid, kind, speaker, text, detail);
    }

    fn update(&self, change: impl FnOnce(&mut Call)) {
        if let Some(call) = self.state.calls().get_mut(&self.plan.sid) {
            change(call);
            call.date_updated = Utc::now();
        }
    }

    /// Queued → initiated → ringing → the callee's decision → the conversation.
    async fn outbound(&mut self) -> Ending {
        let dial_at = self.plan.dial_at;
        if let Err(stop) = self.guarded(tokio::time::sleep_until(dial_at.into())).await {
            return self.stopped(stop);
        }
        let queued = Utc::now();
        self.update(|call| {
            call.dialled_at = Some(queued);
            call.queue_time_ms =
                u64::try_from((queued - call.date_created).num_milliseconds()).unwrap_or_default();
        });
        self.callback(Event::Initiated, "initiated", Vec::new())
            .await;
        if self.plan.party.behaviour == Behaviour::Failed {
            return Ending::status(CallStatus::Failed);
        }
        self.update(|call| call.status = CallStatus::Ringing);
        self.callback(Event::Ringing, "ringing", Vec::new()).await;

        let ring_limit = self.seconds(self.plan.timeout);
        let ring = self.state.call_ring
            + Duration::from_millis(self.plan.party.answer_delay_ms.unwrap_or_default());
        let outcome = match self.plan.party.behaviour {
            Behaviour::Busy => Some((self.state.call_ring, CallStatus::Busy)),
            Behaviour::NoAnswer => Some((ring_limit, CallStatus::NoAnswer)),
            _ if ring > ring_limit => Some((ring_limit, CallStatus::NoAnswer)),
            _ => None,
        };
        if let Some((after, status)) = outcome {
            return match self.wait(after).await {
                Ok(()) => Ending::status(status),
                Err(stop) => self.stopped(stop),
            };
        }
        if let Err(stop) = self.wait(ring).await {
            return self.stopped(stop);
        }
        if let Err(stop) = self.answer().await {
            return self.stopped(stop);
        }
        let source = self.plan.source.clone();
        self.conversation(source).await
    }

    /// The party picks up: AMD decides, the `answered` callback goes out, a machine plays its
    /// greeting before a `DetectMessageEnd` verdict.
    async fn answer(&mut self) -> Result<(), Stop> {
        let now = Instant::now();
        let machine = self.plan.party.behaviour == Behaviour::Machine;
        self.answered_by = self
            .plan
            .machine_detection
            .map(|mode| match (machine, mode) {
                (false, _) => "human".to_owned(),
                (true, MachineDetection::Enable) => "machine_start".to_owned(),
                (true, MachineDetection::DetectMessageEnd) => self
                    .plan
                    .party
                    .answered_by
                    .clone()
                    .unwrap_or_else(|| MACHINE_END_VERDICTS[0].to_owned()),
            });
        self.answered = Some(now);
        self.deadline = Some(now + self.seconds(self.plan.time_limit));
        let answered_by = self.answered_by.clone();
        self.update(|call| {
            call.status = CallStatus::InProgress;
            call.answered_at = Some(Utc::now());
            call.answered_by = answered_by;
        });
        self.callback(Event::Answered, "in-progress", Vec::new())
            .await;
        if machine && self.plan.machine_detection == Some(MachineDetection::DetectMessageEnd) {
            let greeting = self.seconds(GREETING_SECONDS);
            self.wait(greeting).await?;
        }
        Ok(())
    }

    /// Fetches and plays documents until one ends, the call is hung up or the app fails.
    async fn conversation(&mut self, mut source: Source) -> Ending {
        loop {
            let document = match self.load(&source).await {
                Ok(document) => document,
                Err(Stop::Redirect(next)) => {
                    source = next;
                    continue;
                }
                Err(stop) => return self.stopped(stop),
            };
            if self.answered.is_none() {
                // An inbound call is answered by the first verb that is not a rejection.
                if let Some(reject) = document.elements().next().filter(|v| v.name == "Reject") {
                    let reason = reject.attr("reason").unwrap_or("rejected").to_owned();
                    self.log(EventKind::Reject, Speaker::Agent, reason, Map::new());
                    return Ending::status(CallStatus::Busy);
                }
                if let Err(stop) = self.answer().await {
                    return self.stopped(stop);
                }
            }
            match self.execute(&document).await {
                Ok(Some(next)) | Err(Stop::Redirect(next)) => source = next,
                Ok(None) => return Ending::status(CallStatus::Completed),
                Err(stop) => return self.stopped(stop),
            }
        }
    }

    /// Turns an interruption into the call's ending, logging application errors.
    fn stopped(&mut self, stop: Stop) -> Ending {
        match stop {
            Stop::End(status, ack) => Ending { status, ack },
            // Only live calls are redirected; a stray one simply ends the call.
            Stop::Redirect(_) => Ending::status(CallStatus::Completed),
            Stop::AppError(code, message) => {
                tracing::info!(sid = %self.plan.sid, code, "call application error");
                let mut detail = Map::new();
                detail.insert("error_code".into(), json!(code));
                detail.insert("message".into(), json!(message));
                self.log(EventKind::Error, Speaker::System, APPLICATION_ERROR, detail);
                self.update(|call| {
                    call.error_code = Some(code);
                    call.error_message = Some(message);
                });
                Ending::status(CallStatus::Completed)
            }
        }
    }

    /// Webhook parameters every voice request carries.
    fn params(&self, status: &str) -> Vec<(String, String)> {
        let (from, to) = (&self.plan.from, &self.plan.to);
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), self.state.account_sid.clone()),
            ("ApiVersion".into(), "2010-04-01".into()),
            ("CallSid".into(), self.plan.sid.clone()),
            ("CallStatus".into(), status.into()),
            ("Called".into(), to.clone()),
            ("Caller".into(), from.clone()),
            ("Direction".into(), self.plan.direction.as_str().into()),
            ("From".into(), from.clone()),
            ("To".into(), to.clone()),
        ];
        for (prefix, number) in [("Called", to), ("Caller", from), ("From", from), ("To", to)] {
            params.push((format!("{prefix}City"), String::new()));
            params.push((format!("{prefix}Country"), country_of(number).into()));
            params.push((format!("{prefix}State"), String::new()));
            params.push((format!("{prefix}Zip"), String::new()));
        }
        if let Some(answered_by) = &self.answered_by {
            params.push(("AnsweredBy".into(), answered_by.clone()));
        }
        params
    }

    fn current_status(&self) -> &'static str {
        if self.answered.is_some() {
            "in-progress"
        } else {
            "ringing"
        }
    }

    /// Gets a document: inline, or from the application (11200 / 12100 on failure).
    async fn load(&mut self, source: &Source) -> Result<Element, Stop> {
        let body = match source {
            Source::Inline(document) => {
                self.document_url = None;
                document.clone()
            }
            Source::Fetch { url, method, extra } => {
                let mut params = self.params(self.current_status());
                params.extend(extra.iter().cloned());
                let response = self.fetch(url, *method, params).await?;
                self.document_url = Some(url.clone());
                response.body
            }
        };
        twiml::parse(&body)
            .map_err(|error| Stop::AppError(12100, format!("Document parse failure: {error}")))
    }

    /// One signed webhook request; failures are Twilio's 11200.
    async fn fetch(
        &mut self,
        url: &str,
        method: Method,
        params: Vec<(String, String)>,
    ) -> Result<WebhookResponse, Stop> {
        let state = Arc::clone(&self.state);
        let (url, forge) = (url.to_owned(), self.plan.forge);
        let token = uuid::Uuid::new_v4().to_string();
        let request = async move {
            webhook::request_signed(&state, method, &url, &params, &token, forge, true).await
        };
        match self.guarded(request).await? {
            Ok(response) if (200..300).contains(&response.status) => Ok(response),
            Ok(response) => Err(Stop::AppError(
                11200,
                format!(
                    "HTTP retrieval failure: the application answered {}",
                    response.status
                ),
            )),
            Err(error) => Err(Stop::AppError(
                11200,
                format!("HTTP retrieval failure: {error}"),
            )),
        }
    }

    /// Plays a document's verbs; `Some` when one of them moves to another document.
    async fn execute(&mut self, document: &Element) -> Result<Option<Source>, Stop> {
        for verb in document.elements() {
            match verb.name.as_str() {
                "Say" | "Play" | "Pause" => self.prompt(verb).await?,
                "Gather" => {
                    if let Some(next) = self.gather(verb).await? {
                        return Ok(Some(next));
                    }
                }
                "Redirect" => {
                    let target = verb.text();
                    self.log(EventKind::Redirect, Speaker::System, &target, Map::new());
                    let method = Method::parse(verb.attr("method")).unwrap_or(Method::Post);
                    return Ok(self.target(Some(&target), method, Vec::new()));
                }
                "Dial" => {
                    if let Some(next) = self.dial(verb).await? {
                        return Ok(Some(next));
                    }
                }
                "Record" => {
                    if let Some(next) = self.record(verb).await? {
                        return Ok(Some(next));
                    }
                }
                "Connect" => {
                    if let Some(next) = self.connect(verb).await? {
                        return Ok(Some(next));
                    }
                }
                "Hangup" => {
                    self.log(EventKind::Hangup, Speaker::Agent, "", Map::new());
                    return Err(Stop::End(CallStatus::Completed, None));
                }
                "Reject" => {
                    let reason = verb.attr("reason").unwrap_or("rejected").to_owned();
                    self.log(EventKind::Reject, Speaker::Agent, reason, Map::new());
                    return Err(Stop::End(CallStatus::Completed, None));
                }
                other => {
                    tracing::warn!(sid = %self.plan.sid, verb = other, "TwiML verb not simulated; skipped");
                }
            }
        }
        Ok(None)
    }

    /// `<Say>`, `<Play>` and `<Pause>`, alone or inside a `<Gather>`.
    async fn prompt(&mut self, verb: &Element) -> Result<(), Stop> {
        let mut detail = Map::new();
        for name in ["voice", "language", "loop", "digits"] {
            if let Some(value) = verb.attr(name) {
                detail.insert(name.into(), json!(value));
            }
        }
        let text = verb.text();
        match verb.name.as_str() {
            "Say" => self.log(EventKind::Say, Speaker::Agent, &text, detail),
            "Play" => self.log(EventKind::Play, Speaker::Agent, &text, detail),
            _ => {
                let length: u64 = verb
                    .attr("length")
                    .and_then(|l| l.parse().ok())
                    .unwrap_or(1);
                detail.insert("length".into(), json!(length));
                self.log(EventKind::Pause, Speaker::Agent, "", detail);
                let pause = self.seconds(length);
                return self.wait(pause).await;
            }
        }
        if self.plan.party.behaviour == Behaviour::Machine && self.answered.is_some() {
            self.heard.push(text);
        }
        self.wait(Duration::ZERO).await
    }

    /// Where an `action` (or, without one, the current document) sends the call next.
    fn target(
        &self,
        action: Option<&str>,
        method: Method,
        extra: Vec<(String, String)>,
    ) -> Option<Source> {
        let url = match (action.filter(|a| !a.is_empty()), &self.document_url) {
            (Some(action), Some(base)) => url::Url::parse(base)
                .and_then(|base| base.join(action))
                .map_or_else(|_| action.to_owned(), |url| url.to_string()),
            (Some(action), None) => action.to_owned(),
            (None, Some(base)) => base.clone(),
            // Inline TwiML has no URL to come back to.
            (None, None) => return None,
        };
        Some(Source::Fetch { url, method, extra })
    }

    async fn gather(&mut self, verb: &Element) -> Result<Option<Source>, Stop> {
        let input = verb.attr("input").unwrap_or("dtmf").to_owned();
        let (speech_ok, dtmf_ok) = (input.contains("speech"), input.contains("dtmf"));
        let mut detail = Map::new();
        detail.insert("input".into(), json!(input));
        if let Some(action) = verb.attr("action") {
            detail.insert("action".into(), json!(action));
        }
        self.log(EventKind::Gather, Speaker::System, "", detail);
        for prompt in verb.elements() {
            if matches!(prompt.name.as_str(), "Say" | "Play" | "Pause") {
                self.prompt(prompt).await?;
            }
        }

        let party = self.plan.party.clone();
        let hangs_up = match (party.behaviour, party.hangup_after_turns) {
            (Behaviour::HangupMidCall, turns) => Some(turns.unwrap_or(party.lines.len())),
            (Behaviour::Human, Some(turns)) => Some(turns),
            _ => None,
        };
        if hangs_up.is_some_and(|turns| self.turns >= turns) {
            self.log(EventKind::Hangup, Speaker::Callee, "", Map::new());
            return Err(Stop::End(CallStatus::Completed, None));
        }
        let think = party
            .think_ms
            .map_or(self.state.call_think, Duration::from_millis);
        self.wait(think).await?;
        self.turns += 1;
        let line = if self.plan.party.behaviour == Behaviour::Machine {
            None
        } else {
            self.script.pop_front()
        };
        let heard = match line {
            Some(Line::HangupMidReply { .. }) => {
                self.log(EventKind::Hangup, Speaker::Callee, "", Map::new());
                return Err(Stop::End(CallStatus::Completed, None));
            }
            Some(
                Line::Text(speech)
                | Line::Speech {
                    speech,
                    confidence: None,
                }
                | Line::InterruptAfterTokens { speech, .. }
                | Line::InterruptAfterMs { speech, .. },
            ) => Heard::Speech(speech, DEFAULT_CONFIDENCE),
            Some(Line::Speech {
                speech,
                confidence: Some(confidence),
            }) => Heard::Speech(speech, confidence),
            Some(Line::Digits { digits }) => Heard::Digits(digits),
            Some(Line::Silence { .. }) | None => Heard::Silence,
        };
        // What the party did is logged even when this Gather was not listening for it.
        let result = match heard {
            Heard::Speech(speech, confidence) => {
                let mut detail = Map::new();
                detail.insert("confidence".into(), json!(confidence));
                self.log(EventKind::Speech, Speaker::Callee, &speech, detail);
                speech_ok.then(|| {
                    vec![
                        ("SpeechResult".to_owned(), speech),
                        ("Confidence".to_owned(), confidence.to_string()),
                    ]
                })
            }
            Heard::Digits(mut digits) => {
                self.log(EventKind::Digits, Speaker::Callee, &digits, Map::new());
                if let Some(limit) = verb.attr("numDigits").and_then(|n| n.parse().ok()) {
                    digits.truncate(limit);
                }
                dtmf_ok.then(|| vec![("Digits".to_owned(), digits)])
            }
            Heard::Silence => {
                self.log(EventKind::Silence, Speaker::Callee, "", Map::new());
                None
            }
        };
        let method = Method::parse(verb.attr("method")).unwrap_or(Method::Post);
        match result {
            Some(params) => Ok(self.target(verb.attr("action"), method, params)),
            None => {
                let timeout = verb
                    .attr("timeout")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(5);
                let timeout = self.seconds(timeout);
                self.wait(timeout).await?;
                if verb.attr("actionOnEmptyResult") == Some("true") {
                    Ok(self.target(verb.attr("action"), method, Vec::new()))
                } else {
                    // Twilio falls through to the next verb.
                    Ok(None)
                }
            }
        }
    }

    async fn dial(&mut self, verb: &Element) -> Result<Option<Source>, Stop> {
        let mut numbers: Vec<String> = verb
            .elements()
            .filter(|noun| matches!(noun.name.as_str(), "Number" | "Client" | "Sip"))
            .map(Element::text)
            .collect();
        if numbers.is_empty() {
            numbers.push(verb.text());
        }
        // Parallel ringing: the first reachable party answers.
        let number = numbers.swap_remove(0);
        let mut detail = Map::new();
        if let Some(caller_id) = verb.attr("callerId") {
            detail.insert("caller_id".into(), json!(caller_id));
        }
        let valid = is_e164(&number) || number.starts_with("client:") || number.starts_with("sip:");
        let (status, talk) = if valid {
            self.log(EventKind::Dial, Speaker::Agent, &number, detail);
            let transferred = number.clone();
            self.update(|call| call.transfers.push(transferred));
            let talk = self.seconds(DIAL_TALK_SECONDS);
            self.wait(talk).await?;
            ("completed", DIAL_TALK_SECONDS)
        } else {
            detail.insert("error_code".into(), json!(13223));
            self.log(
                EventKind::Error,
                Speaker::System,
                format!("Dial: Invalid phone number format: {number}"),
                detail,
            );
            ("failed", 0)
        };
        let Some(action) = verb.attr("action") else {
            return Ok(None);
        };
        let method = Method::parse(verb.attr("method")).unwrap_or(Method::Post);
        let extra = vec![
            (
                "DialBridged".to_owned(),
                (status == "completed").to_string(),
            ),
            ("DialCallDuration".to_owned(), talk.to_string()),
            ("DialCallSid".to_owned(), CallStore::new_sid()),
            ("DialCallStatus".to_owned(), status.to_owned()),
        ];
        Ok(self.target(Some(action), method, extra))
    }

    async fn record(&mut self, verb: &Element) -> Result<Option<Source>, Stop> {
        let machine = self.plan.party.behaviour == Behaviour::Machine;
        let message = if machine {
            String::new()
        } else {
            match self.script.pop_front() {
                Some(
                    Line::Text(text)
                    | Line::Speech { speech: text, .. }
                    | Line::InterruptAfterTokens { speech: text, .. }
                    | Line::InterruptAfterMs { speech: text, .. },
                ) => text,
                Some(Line::HangupMidReply { .. }) => String::new(),
                Some(Line::Digits { digits }) => digits,
                Some(Line::Silence { .. }) | None => String::new(),
            }
        };
        let seconds = if message.is_empty() {
            verb.attr("timeout")
                .and_then(|t| t.parse().ok())
                .unwrap_or(5)
        } else {
            RECORDED_SECONDS
        };
        let recording_sid = format!("RE{}", uuid::Uuid::new_v4().simple());
        let recording_url = format!(
            "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{recording_sid}",
            self.state.account_sid
        );
        let mut detail = Map::new();
        detail.insert("recording_sid".into(), json!(recording_sid));
        detail.insert("recording_url".into(), json!(recording_url));
        detail.insert("duration".into(), json!(seconds));
        self.log(EventKind::Record, Speaker::Callee, &message, detail);
        let length = self.seconds(seconds);
        self.wait(length).await?;
        let method = Method::parse(verb.attr("method")).unwrap_or(Method::Post);
        let extra = vec![
            ("RecordingDuration".to_owned(), seconds.to_string()),
            ("RecordingSid".to_owned(), recording_sid),
            ("RecordingUrl".to_owned(), recording_url),
        ];
        Ok(self.target(verb.attr("action"), method, extra))
    }

    /// Sends a status callback if the call asked for this event.
    async fn callback(&mut self, event: Event, status: &str, extra: Vec<(String, String)>) {
        let events = self.plan.callback_events;
        let wanted = match event {
            Event::Initiated => events.initiated,
            Event::Ringing => events.ringing,
            Event::Answered => events.answered,
            Event::Completed => events.completed,
        };
        let Some((url, method)) = self.plan.status_callback.clone().filter(|_| wanted) else {
            return;
        };
        let mut params = self.params(status);
        params.push(("CallbackSource".into(), "call-progress-events".into()));
        params.push(("SequenceNumber".into(), self.sequence.to_string()));
        params.push(("Timestamp".into(), rfc2822(Utc::now())));
        params.extend(extra);
        self.sequence += 1;
        webhook::deliver_status_callback(&self.state, &self.plan.sid, method, &url, &params).await;
    }

    /// Stores the final status, answers a waiting REST request, then sends `completed`.
    async fn finish(&mut self, ending: Ending) {
        let duration = self.answered.map(|at| {
            let second = self.state.call_second.as_millis().max(1);
            u64::try_from(at.elapsed().as_millis().div_ceil(second)).unwrap_or(u64::MAX)
        });
        if !self.heard.is_empty() {
            let voicemail = self.heard.join(" ");
            self.log(EventKind::Voicemail, Speaker::Agent, &voicemail, Map::new());
            self.update(|call| call.voicemail = Some(voicemail));
        }
        let status = ending.status;
        self.update(|call| {
            call.status = status;
            call.ended_at = Some(Utc::now());
            call.duration = duration;
            call.control = None;
        });
        if let Some(ack) = ending.ack {
            let _ = ack.send(());
        }
        tracing::debug!(sid = %self.plan.sid, status = status.as_str(), "call ended");
        let seconds = duration.unwrap_or_default();
        let mut extra = vec![
            ("CallDuration".to_owned(), seconds.to_string()),
            ("Duration".to_owned(), seconds.div_ceil(60).to_string()),
        ];
        match status {
            CallStatus::Busy => extra.push(("SipResponseCode".into(), "486".into())),
            CallStatus::NoAnswer => extra.push(("SipResponseCode".into(), "487".into())),
            CallStatus::Failed => extra.push(("SipResponseCode".into(), "500".into())),
            _ => {}
        }
        if self.plan.record && duration.is_some() {
            let sid = format!("RE{}", uuid::Uuid::new_v4().simple());
            extra.push(("RecordingDuration".into(), seconds.to_string()));
            extra.push((
                "RecordingUrl".into(),
                format!(
                    "https://api.twilio.com/2010-04-01/Accounts/{}/Recordings/{sid}",
                    self.state.account_sid
                ),
            ));
            extra.push(("RecordingSid".into(), sid));
        }
        self.callback(Event::Completed, status.as_str(), extra)
            .await;
    }
}

/// Status-callback events a call may subscribe to.
#[derive(Clone, Copy)]
enum Event {
    Initiated,
    Ringing,
    Answered,
    Completed,
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
