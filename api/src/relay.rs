//! Calls in voice mode `relay`: Twilio ConversationRelay sessions on the live-session engine.
//!
//! | route | from | does |
//! |---|---|---|
//! | `GET /twilio/voice/relay?wf=` | Twilio, the `<ConversationRelay url>` of a call (a WebSocket) | checks the handshake's `X-Twilio-Signature` (403 without a valid one), then speaks ConversationRelay's protocol |
//! | `POST /twilio/voice/relay/action?wf=` | Twilio, the `<Connect action>` once the session ended | `relay_end` update; answers with what comes next (`<Dial>`, `<Hangup />`, or a new session) |
//!
//! The call's workflow answered the call with the greeting as the session's welcome greeting.
//! The session then works like the browser chat ([`crate::session`]): the context (profile,
//! memory, transcript) comes from the workflow's `relay_context` query once, each caller
//! prompt goes straight to the agent, and each piece of the reply goes out as a `text` token as
//! it arrives. A turn is settled once its reply is complete (all tokens sent) or cut off
//! (Twilio's `interrupt`, whose `utteranceUntilInterrupt` is then what was said): a `relay_turn`
//! signal, in the workflow's history as soon as it returns; an interrupt that comes after the
//! reply was complete is a `relay_interrupted` signal that cuts the recorded line. Tokens never
//! go through Temporal. The signals are sent by a task of their own, in order, so the session
//! answers the next prompt or interrupt at once. A transfer, an end or an opt-out ends the
//! session with `end` (its `handoffData` names the reason) once the turn's signal is in; the
//! workflow carries the actions out and decides what the `<Connect action>` answers.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowHandle, WorkflowQueryOptions, WorkflowSignalOptions,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use voice_agent_agent::{AgentAction, AgentChannel, AgentReply, AgentRequest, Turn};
use voice_agent_domain::mask_workflow_id;
use voice_agent_twilio::relay::{self, Inbound, Outbound};
use voice_agent_twilio::signature;
use voice_agent_workflows::{
    CallWorkflow, RelayClosed, RelayContext, RelayEnd, RelayInterrupted, RelayTurn,
};

use crate::AppState;
use crate::session::{MAX_PERSON_CHARS, Streaming, heard_of, stream_reply};
use crate::webhooks::{SignedForm, WebhookError, is_twilio_sid};

/// How long Twilio has to send `setup` after the handshake.
const SETUP_WAIT: Duration = Duration::from_secs(10);
/// How long a session waits for the call's context from the workflow.
const CONTEXT_WAIT: Duration = Duration::from_secs(10);
/// After our `end`, how long Twilio has to close the socket.
const END_WAIT: Duration = Duration::from_secs(10);
/// How long one turn's signal is retried (Temporal unreachable) before it is given up.
const SIGNAL_RETRY: Duration = Duration::from_secs(60);
/// Said when a transfer is asked for and the profile has no number to transfer to.
const NO_TRANSFER: &str = "A member of our team will call you back.";
/// Sessions of one call open at once on this api: Twilio opens one at a time (the next only
/// after the `<Connect action>`), so a second is at most the next session arriving while the
/// last one closes. The handshake's signature covers only the URL, the same for every session
/// of the call, so a copied handshake gets no more than this.
const MAX_SESSIONS_PER_CALL: usize = 2;
/// The longest session: Twilio ends every call by four hours.
const MAX_SESSION: Duration = Duration::from_secs(4 * 60 * 60);
/// Frames that are not a message we know before the session is closed.
const MAX_BAD_FRAMES: u32 = 32;
/// The most of a Twilio text (an error's description, a parse error) a log line repeats.
const LOGGED_CHARS: usize = 200;

/// The calls with a session open on this api, and how many.
static OPEN_CALLS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, usize>>> =
    std::sync::LazyLock::new(Default::default);

/// A call's place in [`OPEN_CALLS`], given back when the session ends.
struct CallSlot(String);

impl CallSlot {
    fn take(wf: &str) -> Option<Self> {
        let mut open = OPEN_CALLS.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(wf.to_owned()).or_default();
        if *n >= MAX_SESSIONS_PER_CALL {
            return None;
        }
        *n += 1;
        Some(Self(wf.to_owned()))
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        let mut open = OPEN_CALLS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.0);
            }
        }
    }
}

/// `text` cut to [`LOGGED_CHARS`], for a log line (written with `?`, which escapes it).
fn for_log(text: &str) -> String {
    text.chars().take(LOGGED_CHARS).collect()
}

/// A key Twilio sends in a `dtmf` message: one of `0-9`, `*`, `#`, `A-D`.
fn dtmf_key(digit: &str) -> Option<char> {
    let mut chars = digit.trim().chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D') => Some(c),
        _ => None,
    }
}

/// The session's routes (Twilio's; signature-checked, not behind user access control).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/voice/relay", get(upgrade))
        .route("/twilio/voice/relay/action", post(action))
}

#[derive(Debug, Deserialize)]
struct RelayRef {
    wf: String,
}

fn valid_workflow_id(wf: &str) -> bool {
    wf.starts_with("call-") && wf.len() <= 128 && wf.bytes().all(|b| b.is_ascii_graphic())
}

/// The `<ConversationRelay url>` of a call: the public base URL as a WebSocket URL.
pub(crate) fn ws_url(state: &AppState, workflow_id: &str) -> String {
    let mut url = state.settings.common.public_base_url.clone();
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    // http(s) and ws(s) are all "special" schemes, between which the url crate allows a switch.
    let _ = url.set_scheme(scheme);
    url.set_path("/twilio/voice/relay");
    url.query_pairs_mut().clear().append_pair("wf", workflow_id);
    url.to_string()
}

/// The `<Connect action>` of a call.
pub(crate) fn action_url(state: &AppState, workflow_id: &str) -> String {
    let mut url = state.settings.common.public_base_url.clone();
    url.set_path("/twilio/voice/relay/action");
    url.query_pairs_mut().clear().append_pair("wf", workflow_id);
    url.to_string()
}

/// Twilio signs the session's URL as given in the TwiML (`wss://…`) with no parameters; the
/// `https://` form of it is accepted too, as validators built for webhooks compute that.
fn handshake_signed(state: &AppState, uri: &OriginalUri, headers: &HeaderMap) -> bool {
    let Some(sig) = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut url = state.settings.common.public_base_url.clone();
    url.set_path(uri.path());
    url.set_query(uri.query());
    let token = state.settings.common.twilio.webhook_token();
    let http_form = url.to_string();
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    let _ = url.set_scheme(scheme);
    signature::validate(token, url.as_str(), &[], sig)
        || signature::validate(token, &http_form, &[], sig)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn upgrade(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    Query(r): Query<RelayRef>,
    ws: WebSocketUpgrade,
) -> Response {
    if !handshake_signed(&state, &uri, &headers) {
        return refuse(StatusCode::FORBIDDEN, "invalid Twilio signature");
    }
    if !valid_workflow_id(&r.wf) {
        return refuse(StatusCode::BAD_REQUEST, "wf is not a call id");
    }
    let Some(slot) = CallSlot::take(&r.wf) else {
        return refuse(StatusCode::CONFLICT, "this call has a session open");
    };
    let Some(permit) = state.live_engine.admit() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many live sessions");
    };
    ws.max_message_size(relay::MAX_FRAME_BYTES)
        .max_frame_size(relay::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            run(state, socket, r.wf).await;
            drop(permit);
            drop(slot);
        })
}

/// What goes to the workflow, in order.
enum Record {
    Turn(Box<RelayTurn>),
    Interrupted(RelayInterrupted),
    /// Answered once everything before it was signalled.
    Flush(oneshot::Sender<()>),
}

type CallHandle = WorkflowHandle<temporalio_client::Client, CallWorkflow>;

/// Signals the session's records in order, each retried while Temporal is unreachable, then
/// `relay_closed` once the session is over.
async fn recorder(
    handle: CallHandle,
    masked: String,
    call_sid: String,
    mut records: mpsc::UnboundedReceiver<Record>,
) {
    while let Some(record) = records.recv().await {
        match record {
            Record::Flush(done) => {
                let _ = done.send(());
            }
            Record::Turn(turn) => {
                let sent = retry(|| {
                    handle.signal(
                        CallWorkflow::relay_turn,
                        (*turn).clone(),
                        WorkflowSignalOptions::default(),
                    )
                })
                .await;
                if !sent {
                    warn!(call = %masked, "relay: a turn could not be recorded");
                }
            }
            Record::Interrupted(cut) => {
                if !retry(|| {
                    handle.signal(
                        CallWorkflow::relay_interrupted,
                        cut.clone(),
                        WorkflowSignalOptions::default(),
                    )
                })
                .await
                {
                    warn!(call = %masked, "relay: an interruption could not be recorded");
                }
            }
        }
    }
    let closed = RelayClosed { call_sid };
    let _ = retry(|| {
        handle.signal(
            CallWorkflow::relay_closed,
            closed.clone(),
            WorkflowSignalOptions::default(),
        )
    })
    .await;
}

/// Runs `send` until it succeeds or [`SIGNAL_RETRY`] passed; a workflow that is gone, or an
/// input that cannot be encoded, is not retried.
async fn retry<F, Fut>(mut send: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), WorkflowInteractionError>>,
{
    let deadline = tokio::time::Instant::now() + SIGNAL_RETRY;
    let mut wait = Duration::from_millis(100);
    loop {
        match send().await {
            Ok(()) => return true,
            Err(e) => {
                let hopeless = matches!(
                    e,
                    WorkflowInteractionError::NotFound(_)
                        | WorkflowInteractionError::PayloadConversion(_)
                );
                if hopeless || tokio::time::Instant::now() + wait > deadline {
                    warn!(error = %e, "relay: a signal was given up");
                    return false;
                }
                tracing::debug!(error = %e, "relay: a signal failed; retrying");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// The call's context by query, retried while no worker answers, up to [`CONTEXT_WAIT`].
async fn context(handle: &CallHandle) -> Option<RelayContext> {
    let deadline = tokio::time::Instant::now() + CONTEXT_WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(
            left,
            handle.query(
                CallWorkflow::relay_context,
                (),
                WorkflowQueryOptions::default(),
            ),
        )
        .await
        {
            Ok(Ok(c)) => return Some(c),
            Ok(Err(temporalio_client::errors::WorkflowQueryError::NotFound(_))) => return None,
            Ok(Err(e)) => tracing::debug!(error = %e, "relay: the context query failed"),
            Err(_) => return None,
        }
        if tokio::time::Instant::now() + Duration::from_millis(250) >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn send(socket: &mut WebSocket, message: &Outbound) -> bool {
    socket
        .send(Message::Text(Utf8Bytes::from(message.to_json())))
        .await
        .is_ok()
}

/// The next message from Twilio; `None` when the socket closed. Frames that are not a
/// message we know are logged and skipped (Twilio's protocol has no error for them), up to
/// [`MAX_BAD_FRAMES`] in a session; then the session ends as if the socket closed.
async fn next_message(socket: &mut WebSocket, bad: &mut u32) -> Option<Inbound> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(t))) => match relay::parse_inbound(&t) {
                Ok(m) => return Some(m),
                Err(e) => {
                    *bad += 1;
                    warn!(error = ?for_log(&e.to_string()), "relay: a frame was not understood; skipped");
                    if *bad >= MAX_BAD_FRAMES {
                        warn!("relay: too many frames not understood; session closed");
                        return None;
                    }
                }
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// A reply being streamed.
struct Pending {
    turn_id: String,
    person: String,
    person_at: String,
    said: String,
    stream: Streaming,
}

/// One ConversationRelay session.
struct Session {
    context: RelayContext,
    call_sid: String,
    history: Vec<Turn>,
    records: mpsc::UnboundedSender<Record>,
    /// The last reply recorded as complete, which an interrupt may still cut.
    last_complete: Option<(Option<String>, String)>,
}

impl Session {
    fn request(&self, person: &str) -> AgentRequest {
        let mut history = self.history.clone();
        history.push(Turn::person(person));
        AgentRequest {
            profile: self.context.profile.clone(),
            channel: AgentChannel::Voice,
            history,
            contact: Default::default(),
            memory: self.context.memory.clone(),
            earlier_person_turns: 0,
        }
    }

    fn record(&mut self, turn: RelayTurn) {
        self.history.push(Turn::person(turn.person.clone()));
        if !turn.agent.is_empty() {
            self.history.push(Turn::agent(turn.agent.clone()));
        }
        self.context.memory.extend(turn.remember.clone());
        let _ = self.records.send(Record::Turn(Box::new(turn)));
    }

    /// Cuts the reply in progress, or the last complete one, at what was heard; true when a
    /// reply was still streaming (its talk cycle then needs its `last`).
    fn interrupted(&mut self, pending: &mut Option<Pending>, utterance: &str) -> bool {
        if let Some(p) = pending.take() {
            p.stream.done.abort();
            let heard = heard_of(&p.said, utterance);
            self.record(RelayTurn {
                turn_id: p.turn_id,
                call_sid: self.call_sid.clone(),
                person: p.person,
                person_at: p.person_at,
                agent: heard,
                interrupted: true,
                agent_at: now(),
                ..RelayTurn::default()
            });
            return true;
        }
        let Some((turn_id, said)) = self.last_complete.take() else {
            return false;
        };
        let heard = heard_of(&said, utterance);
        if let Some(Turn { text, .. }) = self
            .history
            .iter_mut()
            .rev()
            .find(|t| t.speaker == voice_agent_agent::Speaker::Agent)
        {
            text.clone_from(&heard);
        }
        let _ = self.records.send(Record::Interrupted(RelayInterrupted {
            call_sid: self.call_sid.clone(),
            turn_id,
            heard,
        }));
        false
    }

    /// Waits until every record so far was signalled.
    async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.records.send(Record::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// Why the agent's turn ends the session, as `handoffData` says it.
fn ending(reply: &AgentReply, transfer_number: bool) -> Option<&'static str> {
    reply.actions.iter().find_map(|a| match a {
        AgentAction::Transfer { .. } if transfer_number => Some("transfer"),
        AgentAction::EndConversation { .. } => Some("end"),
        AgentAction::OptOut => Some("opt_out"),
        _ => None,
    })
}

async fn run(state: AppState, mut socket: WebSocket, wf: String) {
    let masked = mask_workflow_id(&wf);
    let mut bad = 0;
    let account = &state.settings.common.twilio.account_sid;
    let setup = match tokio::time::timeout(SETUP_WAIT, next_message(&mut socket, &mut bad)).await {
        Ok(Some(Inbound::Setup(s)))
            if is_twilio_sid(&s.call_sid, &["CA"]) && s.account_sid == *account =>
        {
            s
        }
        _ => {
            warn!(call = %masked, "relay: no valid setup; session closed");
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let handle = state
        .temporal
        .get_workflow_handle::<CallWorkflow>(wf.clone());
    let Some(context) = context(&handle).await else {
        warn!(call = %masked, "relay: the call's workflow did not answer; session closed");
        let _ = socket.send(Message::Close(None)).await;
        return;
    };
    if context.call_sid.as_deref() != Some(setup.call_sid.as_str()) || context.ended {
        warn!(call = %masked, "relay: the session is not for this call's live attempt; closed");
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    info!(call = %masked, "relay session opened");
    let (records, rx) = mpsc::unbounded_channel();
    let recording = tokio::spawn(recorder(handle, masked.clone(), setup.call_sid.clone(), rx));
    let history = context
        .transcript
        .iter()
        .map(|t| {
            if t.speaker == "caller" {
                Turn::person(t.text.clone())
            } else {
                Turn::agent(t.text.clone())
            }
        })
        .collect();
    // Only the first session's only line is the welcome greeting an interrupt can cut.
    let last_complete = match context.transcript.as_slice() {
        [greeting] if greeting.speaker == "agent" && !greeting.interrupted => {
            Some((None, greeting.text.clone()))
        }
        _ => None,
    };
    let mut session = Session {
        call_sid: setup.call_sid.clone(),
        context,
        history,
        records,
        last_complete,
    };
    let agent = state.live_engine.agent();
    let closed = state.live_engine.closed();
    let mut pending: Option<Pending> = None;
    let mut partial = String::new();
    let mut ended = false;
    let too_long = tokio::time::sleep(MAX_SESSION);
    tokio::pin!(too_long);
    loop {
        let piece = async {
            match &mut pending {
                Some(p) => p.stream.pieces.recv().await,
                None => std::future::pending::<Option<String>>().await,
            }
        };
        tokio::select! {
            _ = closed.cancelled() => break,
            _ = &mut too_long => {
                warn!(call = %masked, "relay: the session outlived any call; closed");
                break;
            }
            piece = piece => match piece {
                Some(p) => {
                    if let Some(pending) = &mut pending {
                        pending.said.push_str(&p);
                    }
                    if !send(&mut socket, &Outbound::text(p, false)).await {
                        break;
                    }
                }
                None => {
                    let Some(mut done) = pending.take() else { continue };
                    let (reply, _agent_name) = match (&mut done.stream.done).await {
                        Ok(r) => r,
                        Err(e) => {
                            warn!(call = %masked, error = %e, "relay: the reply task failed");
                            break;
                        }
                    };
                    let has_number = session.context.profile.transfer_number.is_some();
                    let transfer = reply
                        .actions
                        .iter()
                        .any(|a| matches!(a, AgentAction::Transfer { .. }));
                    if transfer && !has_number {
                        // As on gather calls: nobody to transfer to, so the call goes on.
                        let extra = if done.said.is_empty() {
                            NO_TRANSFER.to_owned()
                        } else {
                            format!(" {NO_TRANSFER}")
                        };
                        done.said.push_str(&extra);
                        if !send(&mut socket, &Outbound::text(extra, false)).await {
                            break;
                        }
                    }
                    if !send(&mut socket, &Outbound::text("", true)).await {
                        break;
                    }
                    let reason = ending(&reply, has_number);
                    session.last_complete = Some((Some(done.turn_id.clone()), done.said.clone()));
                    session.record(RelayTurn {
                        turn_id: done.turn_id.clone(),
                        call_sid: session.call_sid.clone(),
                        person: done.person,
                        person_at: done.person_at,
                        agent: done.said,
                        interrupted: false,
                        agent_at: now(),
                        actions: reply.actions.clone(),
                        remember: reply.remember.clone(),
                        usage: reply.usage,
                        disposition: reply.disposition,
                    });
                    if let Some(reason) = reason {
                        // The workflow must hold the turn before Twilio asks what comes next.
                        session.flush().await;
                        let handoff = serde_json::json!({
                            "reason": reason,
                            "turn_id": done.turn_id,
                        })
                        .to_string();
                        if !send(&mut socket, &Outbound::end(Some(handoff))).await {
                            break;
                        }
                        ended = true;
                        break;
                    }
                }
            },
            message = next_message(&mut socket, &mut bad) => {
                let Some(message) = message else {
                    // The caller hung up (or Twilio went): a reply still streaming was not
                    // heard to its end, and what part of it was is unknown; the caller's
                    // words are kept.
                    if let Some(p) = pending.take() {
                        p.stream.done.abort();
                        session.record(RelayTurn {
                            turn_id: p.turn_id,
                            call_sid: session.call_sid.clone(),
                            person: p.person,
                            person_at: p.person_at,
                            ..RelayTurn::default()
                        });
                    }
                    break;
                };
                let person = match message {
                    Inbound::Prompt(p) => {
                        // A caller's turn is at most what a chat prompt may be; words past
                        // it in one turn are not kept.
                        let room = MAX_PERSON_CHARS.saturating_sub(partial.chars().count());
                        partial.extend(p.voice_prompt.chars().take(room));
                        if !p.last {
                            continue;
                        }
                        let text = std::mem::take(&mut partial).trim().to_owned();
                        if text.is_empty() {
                            continue;
                        }
                        text
                    }
                    Inbound::Dtmf(d) => match dtmf_key(&d.digit) {
                        Some(key) => format!("(pressed {key})"),
                        None => {
                            warn!(call = %masked, digit = ?for_log(&d.digit), "relay: not a key; skipped");
                            continue;
                        }
                    },
                    Inbound::Interrupt(i) => {
                        if session.interrupted(&mut pending, &i.utterance_until_interrupt)
                            && !send(&mut socket, &Outbound::text("", true)).await
                        {
                            break;
                        }
                        continue;
                    }
                    Inbound::Error(e) => {
                        warn!(call = %masked, description = ?for_log(&e.description), "relay: Twilio reported an error");
                        continue;
                    }
                    Inbound::Setup(_) => continue,
                };
                // Speech over a reply without an interrupt first: what was sent counts as
                // said up to here.
                if let Some(p) = &pending {
                    let heard = p.said.clone();
                    session.interrupted(&mut pending, &heard);
                    if !send(&mut socket, &Outbound::text("", true)).await {
                        break;
                    }
                }
                session.last_complete = None;
                let request = session.request(&person);
                pending = Some(Pending {
                    turn_id: uuid::Uuid::new_v4().simple().to_string(),
                    person,
                    person_at: now(),
                    said: String::new(),
                    stream: stream_reply(agent.clone(), request),
                });
            }
        }
    }
    if ended {
        // Twilio closes the socket after `end`; anything it still sends is of no use now.
        let _ = tokio::time::timeout(END_WAIT, async {
            while next_message(&mut socket, &mut bad).await.is_some() {}
        })
        .await;
    }
    drop(session);
    let _ = socket.send(Message::Close(None)).await;
    let _ = recording.await;
    info!(call = %masked, "relay session closed");
}

/// The `<Connect action>`: the session ended. What comes next is the workflow's to say.
async fn action(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    Query(r): Query<RelayRef>,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let form = SignedForm::verify(&state, &uri, &headers, &body)?;
    let sid = form.require("CallSid")?.to_owned();
    if !is_twilio_sid(&sid, &["CA"]) {
        return Err(WebhookError::BadRequest("CallSid is malformed".to_owned()));
    }
    if !valid_workflow_id(&r.wf) {
        return Err(WebhookError::BadRequest("wf is not a call id".to_owned()));
    }
    // One update per session: a repeat of this request gets the first answer.
    let session = form
        .get("SessionId")
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .map(str::to_owned)
        .or_else(|| {
            headers
                .get("i-twilio-idempotency-token")
                .and_then(|v| v.to_str().ok())
                .filter(|t| !t.is_empty() && t.len() <= 200)
                .map(str::to_owned)
        })
        // Neither: the request itself names the update, so a repeat is still one.
        .unwrap_or_else(|| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(&body);
            digest[..16].iter().map(|b| format!("{b:02x}")).collect()
        });
    let input = RelayEnd {
        call_sid: sid.clone(),
        handoff_data: form.get("HandoffData").map(str::to_owned),
        call_status: form.get("CallStatus").map(str::to_owned),
        at: now(),
    };
    let result = state
        .temporal
        .get_workflow_handle::<CallWorkflow>(r.wf.clone())
        .execute_update(
            CallWorkflow::relay_end,
            input,
            WorkflowExecuteUpdateOptions::builder()
                .update_id(format!("relay-end-{sid}-{session}"))
                .build(),
        )
        .await;
    Ok(crate::voice::turn_response(&state, &r.wf, &sid, result))
}

/// A test hook: the parts of the session that need no socket.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_call_workflow_ids_are_taken() {
        assert!(valid_workflow_id("call-CA0123"));
        assert!(!valid_workflow_id("conversation-1"));
        assert!(!valid_workflow_id("call-a b"));
        assert!(!valid_workflow_id(&format!("call-{}", "a".repeat(200))));
    }

    #[test]
    fn only_one_key_is_a_key() {
        for k in ["0", "9", "*", "#", "A", "D", " 5 "] {
            assert!(dtmf_key(k).is_some(), "{k}");
        }
        for k in ["", "12", "E", "a", "(pressed 1)", "1 2", "١"] {
            assert_eq!(dtmf_key(k), None, "{k}");
        }
    }

    #[test]
    fn a_call_has_at_most_two_sessions_open() {
        let wf = "call-CAslot-test";
        let first = CallSlot::take(wf).expect("the first");
        let second = CallSlot::take(wf).expect("the next, while the first closes");
        assert!(CallSlot::take(wf).is_none());
        drop(first);
        let third = CallSlot::take(wf).expect("room again");
        drop((second, third));
        assert!(!OPEN_CALLS.lock().unwrap().contains_key(wf));
    }

    #[test]
    fn transfers_without_a_number_do_not_end_the_session() {
        let reply = AgentReply {
            actions: vec![AgentAction::Transfer { reason: None }],
            ..AgentReply::default()
        };
        assert_eq!(ending(&reply, false), None);
        assert_eq!(ending(&reply, true), Some("transfer"));
        let bye = AgentReply {
            actions: vec![AgentAction::EndConversation { reason: None }],
            ..AgentReply::default()
        };
        assert_eq!(ending(&bye, false), Some("end"));
    }
}
