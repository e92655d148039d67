//! Voice: Twilio's signed voice webhooks drive [`CallWorkflow`]s, and `/api/calls` places
//! outbound calls.
//!
//! | route | from | does |
//! |---|---|---|
//! | `POST /twilio/voice` | Twilio, a call to one of our numbers (its Voice URL) | update-with-start of `call-<CallSid>`; answers with the greeting and a `<Gather>` |
//! | `POST /twilio/voice/answer?wf=` | Twilio, an outbound call answered | `answer` update (with `AnsweredBy`) |
//! | `POST /twilio/voice/gather?wf=` | Twilio, a `<Gather>` result | `gather` update; answers with the agent's turn |
//! | `POST /twilio/voice/status[?wf=&attempt=]` | Twilio, call progress | `status` signal |
//! | `GET /twilio/voice/relay`, `POST /twilio/voice/relay/action` | Twilio ConversationRelay (voice mode `relay`) | see [`crate::relay`] |
//! | `POST /api/calls`, `GET /api/calls`, `GET /api/calls/{id}` | campaign managers | place a call; page the call logs; read one call (live state and logs) |

use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use temporalio_client::errors::WorkflowUpdateError;
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowQueryOptions,
    WorkflowStartOptions, WorkflowUpdateWithStartOptions,
};
use tracing::{info, warn};
use voice_agent_domain::{PhoneNumber, mask_phone};
use voice_agent_protos::v1 as pb;
use voice_agent_protos::v1::call_service_server::{CallService, CallServiceServer};
use voice_agent_store::{CallLogDoc, CallLogQuery, TranscriptEntry};
use voice_agent_twilio::HttpMethod;
use voice_agent_twilio::twiml::{
    Connect, ConversationRelay, Dial, Gather, GatherInput as TwimlGatherInput, Say, SpeechTimeout,
    VoiceResponse,
};
use voice_agent_workflows::{
    AnswerInput, CallInput, CallStatusEvent, CallView, CallWorkflow, GatherInput, IssuedTurn,
    STALE_GATHER, VoiceNext, VoiceTurn,
};

use crate::AppState;
use crate::campaigns::HttpError;
use crate::grpc::ApiError;
use crate::inbox::{CallStatusHandoff, KIND_CALL_STATUS};
use crate::webhooks::{SignedForm, WebhookError, is_twilio_sid, twilio_address, twiml};

/// Said when the call's workflow cannot be reached: never dead air, never an error page.
const TROUBLE: &str = "Sorry, we are having trouble right now. Please call again later.";
/// Seconds a `<Gather>` waits for the person to start talking.
const GATHER_TIMEOUT: u32 = 5;

/// Voice webhooks.
pub fn webhook_routes() -> Router<AppState> {
    Router::new()
        .route("/twilio/voice", post(inbound_call))
        .route("/twilio/voice/answer", post(answered))
        .route("/twilio/voice/gather", post(gathered))
        .route("/twilio/voice/status", post(call_status))
}

/// Outbound calls.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/calls", post(place_call).get(list_calls))
        .route("/api/calls/{id}", get(get_call))
}

#[derive(Debug, Deserialize)]
struct CallRef {
    wf: Option<String>,
    attempt: Option<u32>,
    /// The turn a Gather answers (its action URL carries it).
    turn: Option<u32>,
}

fn call_workflow_id(r: &CallRef, call_sid: &str) -> Result<String, WebhookError> {
    match &r.wf {
        Some(wf) if wf.starts_with("call-") && wf.len() <= 128 => Ok(wf.clone()),
        Some(_) => Err(WebhookError::BadRequest("wf is not a call id".to_owned())),
        None => Ok(format!("call-{call_sid}")),
    }
}

fn call_sid(form: &SignedForm) -> Result<String, WebhookError> {
    let sid = form.require("CallSid")?;
    if !is_twilio_sid(sid, &["CA"]) {
        return Err(WebhookError::BadRequest("CallSid is malformed".to_owned()));
    }
    Ok(sid.to_owned())
}

/// The Gather's action URL; `turn` 0 is a turn from a worker without turn numbers (during a
/// rolling deploy), whose Gather is then accepted whatever turn the call is at.
fn gather_url(state: &AppState, workflow_id: &str, turn: u32) -> String {
    let mut url = state.settings.common.public_base_url.clone();
    url.set_path("/twilio/voice/gather");
    let mut query = url.query_pairs_mut();
    query.clear().append_pair("wf", workflow_id);
    if turn > 0 {
        query.append_pair("turn", &turn.to_string());
    }
    drop(query);
    url.to_string()
}

/// The TwiML for an issued turn of the call `workflow_id`.
fn render_issued(state: &AppState, workflow_id: &str, t: &IssuedTurn) -> String {
    render(&t.turn, &gather_url(state, workflow_id, t.number), || {
        (
            crate::relay::ws_url(state, workflow_id),
            crate::relay::action_url(state, workflow_id),
        )
    })
}

/// The TwiML for a turn: the lines, then gather, dial, hang up or a ConversationRelay
/// session. Lines go inside the `<Gather>` so the person can talk over them; in a session
/// they are its welcome greeting. `relay_urls` gives the session's WebSocket and action URLs.
fn render(
    turn: &VoiceTurn,
    gather_action: &str,
    relay_urls: impl FnOnce() -> (String, String),
) -> String {
    let say = |text: &str| {
        let mut s = Say::new(text).language(turn.language.clone());
        if let Some(v) = &turn.voice {
            s = s.voice(v.clone());
        }
        s
    };
    let mut response = VoiceResponse::new();
    match &turn.next {
        VoiceNext::Gather => {
            let mut gather = Gather::new()
                .input(TwimlGatherInput::DtmfSpeech)
                .action(gather_action)
                .method(HttpMethod::Post)
                .timeout(GATHER_TIMEOUT)
                .speech_timeout(SpeechTimeout::Auto)
                .language(turn.language.clone())
                .action_on_empty_result(true);
            for line in &turn.say {
                gather = gather.say(say(line));
            }
            response = response.gather(gather);
        }
        VoiceNext::Dial { number, caller_id } => {
            for line in &turn.say {
                response = response.say(say(line));
            }
            response = response.dial(Dial::new(number.clone()).caller_id(caller_id.clone()));
        }
        VoiceNext::Hangup => {
            for line in &turn.say {
                response = response.say(say(line));
            }
            response = response.hangup();
        }
        VoiceNext::Relay { settings } => {
            let (url, action) = relay_urls();
            let mut relay = ConversationRelay::new(url)
                .language(turn.language.clone())
                .interruptible(settings.interruptible.clone())
                .welcome_greeting_interruptible(settings.welcome_greeting_interruptible.clone())
                .dtmf_detection(settings.dtmf_detection);
            let greeting = turn.say.join(" ");
            if !greeting.is_empty() {
                relay = relay.welcome_greeting(greeting);
            }
            if let Some(v) = &turn.voice {
                relay = relay.voice(v.clone());
            }
            if let Some(p) = &settings.tts_provider {
                relay = relay.tts_provider(p.clone());
            }
            if let Some(p) = &settings.transcription_provider {
                relay = relay.transcription_provider(p.clone());
            }
            if let Some(m) = &settings.speech_model {
                relay = relay.speech_model(m.clone());
            }
            response = response.connect(
                Connect::relay(relay)
                    .action(action)
                    .method(HttpMethod::Post),
            );
        }
    }
    response.to_xml()
}

fn trouble() -> Response {
    twiml(
        VoiceResponse::new()
            .say(Say::new(TROUBLE))
            .hangup()
            .to_xml(),
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// A call to one of our numbers rings in: start its workflow and answer with the greeting.
async fn inbound_call(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let started = Instant::now();
    let form = SignedForm::verify(&state, &uri, &headers, &body)?;
    let sid = call_sid(&form)?;
    let (_, theirs) = twilio_address(form.require("From")?, "From")?;
    let (_, ours) = twilio_address(form.require("To")?, "To")?;
    let workflow_id = format!("call-{sid}");
    let at = now();
    let input = CallInput {
        call_id: workflow_id.clone(),
        direction: "inbound".to_owned(),
        ours: ours.as_str().to_owned(),
        theirs: theirs.as_str().to_owned(),
        call_sid: Some(sid.clone()),
        started_at: Some(at.clone()),
        ..CallInput::default()
    };
    let answer = AnswerInput {
        call_sid: sid.clone(),
        answered_by: None,
        at,
    };
    let result = state
        .temporal
        .execute_update_with_start_workflow(
            CallWorkflow::run,
            input,
            CallWorkflow::answer,
            answer,
            WorkflowUpdateWithStartOptions::new(
                state.settings.common.task_queue.clone(),
                workflow_id.clone(),
                WorkflowIdConflictPolicy::UseExisting,
            )
            // A repeated webhook for the same call gets the first answer, not a second greeting.
            .update_id(format!("answer-{sid}"))
            .build(),
        )
        .await;
    info!(call_sid = %sid, from = %mask_phone(theirs.as_str()), "inbound call");
    let response = match result {
        Ok(t) => twiml(render_issued(&state, &workflow_id, &t)),
        Err(e) => {
            warn!(call_sid = %sid, error = %e, "could not start the call workflow");
            trouble()
        }
    };
    record_turn("answer", started);
    Ok(response)
}

/// An outbound call was answered (by a person or a machine).
async fn answered(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    Query(r): Query<CallRef>,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let started = Instant::now();
    let form = SignedForm::verify(&state, &uri, &headers, &body)?;
    let sid = call_sid(&form)?;
    let workflow_id = call_workflow_id(&r, &sid)?;
    let answer = AnswerInput {
        call_sid: sid.clone(),
        answered_by: form.get("AnsweredBy").map(str::to_owned),
        at: now(),
    };
    let result = state
        .temporal
        .get_workflow_handle::<CallWorkflow>(workflow_id.clone())
        .execute_update(
            CallWorkflow::answer,
            answer,
            WorkflowExecuteUpdateOptions::builder()
                .update_id(format!("answer-{sid}"))
                .build(),
        )
        .await;
    let response = turn_response(&state, &workflow_id, &sid, result);
    record_turn("answer", started);
    Ok(response)
}

/// A `<Gather>` result: the person's turn.
async fn gathered(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    Query(r): Query<CallRef>,
    body: Bytes,
) -> Result<Response, WebhookError> {
    let started = Instant::now();
    let form = SignedForm::verify(&state, &uri, &headers, &body)?;
    let sid = call_sid(&form)?;
    let workflow_id = call_workflow_id(&r, &sid)?;
    let input = GatherInput {
        call_sid: sid.clone(),
        speech: form.get("SpeechResult").map(str::to_owned),
        confidence: form.get("Confidence").and_then(|c| c.parse().ok()),
        digits: form.get("Digits").map(str::to_owned),
        at: now(),
        turn: r.turn.filter(|t| *t > 0),
    };
    // One update per call and turn: Temporal answers a repeat of the id with the first result,
    // so a Gather Twilio retries (with or without its idempotency token) is answered once.
    let update_id = match r.turn.filter(|t| *t > 0) {
        Some(turn) => Some(format!("gather-{sid}-{turn}")),
        None => idempotency_token(&headers).map(|t| format!("gather-{t}")),
    };
    let result = state
        .temporal
        .get_workflow_handle::<CallWorkflow>(workflow_id.clone())
        .execute_update(
            CallWorkflow::gather,
            input,
            WorkflowExecuteUpdateOptions::builder()
                .maybe_update_id(update_id)
                .build(),
        )
        .await;
    let response = turn_response(&state, &workflow_id, &sid, result);
    record_turn("gather", started);
    Ok(response)
}

/// Twilio's `I-Twilio-Idempotency-Token`: the same on every retry of one webhook request, so a
/// retried Gather result is answered once (a Gather payload has no sequence number of its own).
fn idempotency_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get("i-twilio-idempotency-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 200)
        .map(str::to_owned)
}

pub(crate) fn turn_response(
    state: &AppState,
    workflow_id: &str,
    sid: &str,
    result: Result<IssuedTurn, WorkflowUpdateError>,
) -> Response {
    match result {
        Ok(t) => twiml(render_issued(state, workflow_id, &t)),
        // Not this call's current turn: nothing to say into it, and nothing of ours failed.
        Err(WorkflowUpdateError::Failed(f)) if f.message.starts_with(STALE_GATHER) => {
            info!(call_sid = %sid, reason = %f.message, "Gather result refused");
            twiml(VoiceResponse::new().to_xml())
        }
        Err(e) => {
            warn!(call_sid = %sid, error = %e, "call turn failed");
            trouble()
        }
    }
}

/// The time from the webhook arriving to the TwiML leaving, per kind of turn.
fn record_turn(kind: &'static str, started: Instant) {
    metrics::histogram!("voice_agent_voice_turn_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
}

/// Call progress: stored in the inbox and answered at once; the drainer signals the call's
/// workflow (see [`crate::inbox`]), so a status that arrives while Temporal is unreachable is
/// delivered when it is back instead of being lost (Twilio does not retry status callbacks).
async fn call_status(
    State(state): State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    Query(r): Query<CallRef>,
    body: Bytes,
) -> Result<StatusCode, WebhookError> {
    let form = SignedForm::verify(&state, &uri, &headers, &body)?;
    let sid = call_sid(&form)?;
    let workflow_id = call_workflow_id(&r, &sid)?;
    let status = form.require("CallStatus")?.to_owned();
    if status.len() > 32 {
        return Err(WebhookError::BadRequest(
            "CallStatus is malformed".to_owned(),
        ));
    }
    let event = CallStatusEvent {
        call_sid: sid.clone(),
        status: status.clone(),
        attempt: r.attempt,
        duration_secs: form.get("CallDuration").and_then(|d| d.parse().ok()),
        answered_by: form.get("AnsweredBy").map(str::to_owned),
        recording_url: form.get("RecordingUrl").map(str::to_owned),
        at: now(),
    };
    // One entry per (call, status, attempt): Twilio repeating a callback stores it once.
    let id = format!("{sid}:{status}:{}", r.attempt.unwrap_or(0));
    state
        .inbox
        .put(
            &id,
            KIND_CALL_STATUS,
            &workflow_id,
            &CallStatusHandoff { event },
        )
        .await
        .map_err(|e| WebhookError::Unavailable(e.into()))?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- /api/calls ----------------------------------------------------------------------------

/// `POST /api/calls`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCall {
    /// Callee.
    pub to: String,
    /// Caller; `TWILIO_FROM_NUMBER` by default.
    #[serde(default)]
    pub from: Option<String>,
    /// Agent profile; our number's by default.
    #[serde(default)]
    pub profile: Option<String>,
    /// Said to an answering machine; a machine gets a hang-up without it.
    #[serde(default)]
    pub voicemail: Option<String>,
    /// Detect answering machines (default true).
    #[serde(default)]
    pub machine_detection: Option<bool>,
    /// Attempts for busy / no-answer / failed (default 1, 1-10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10)]
    pub max_attempts: Option<u32>,
    /// Seconds between attempts (default 600, 1-604800).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604800)]
    pub retry_after_secs: Option<u64>,
    /// Record the call; the recording URL lands in the call log (default false).
    #[serde(default)]
    pub record: Option<bool>,
    /// Longest call in seconds (Twilio's `TimeLimit`, 1-14400, default 4 hours).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 14400)]
    pub max_duration_secs: Option<u64>,
    /// Seconds to let it ring (Twilio's `Timeout`, 5-600, default 30).
    #[serde(default)]
    #[schema(minimum = 5, maximum = 600)]
    pub ring_timeout_secs: Option<u32>,
}

/// A placed call.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlacedCall {
    call_id: String,
}

/// `GET /api/calls/{id}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallDetail {
    call_id: String,
    /// The call's workflow is running (dialling, talking, or waiting to retry).
    running: bool,
    /// The workflow's live view (status, transcript so far) while it runs.
    live: Option<LiveCallView>,
    /// One log per attempt, in attempt order.
    logs: Vec<CallLogView>,
}

/// One turn of a call.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TurnView {
    /// `caller` or `agent`.
    speaker: String,
    text: String,
    /// RFC 3339.
    at: String,
    /// Twilio's speech recognition confidence, 0-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f64>,
    /// The caller cut the agent off here: `text` is what was spoken until then (calls in
    /// voice mode `relay`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    interrupted: bool,
}

impl From<&TranscriptEntry> for TurnView {
    fn from(t: &TranscriptEntry) -> Self {
        Self {
            speaker: t.speaker.clone(),
            text: t.text.clone(),
            at: t.at.clone(),
            confidence: t.confidence,
            interrupted: t.interrupted,
        }
    }
}

/// A call in progress, as its workflow holds it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveCallView {
    /// `inbound` or `outbound`.
    direction: String,
    /// Our number.
    ours: String,
    /// The person's number.
    theirs: String,
    /// Current attempt, from 1.
    attempt: u32,
    call_sid: Option<String>,
    /// Latest Twilio call status.
    status: String,
    answered_by: Option<String>,
    answered_at: Option<String>,
    /// This attempt's turns so far.
    transcript: Vec<TurnView>,
}

impl From<CallView> for LiveCallView {
    fn from(v: CallView) -> Self {
        Self {
            direction: v.input.direction,
            ours: v.input.ours,
            theirs: v.input.theirs,
            attempt: v.attempt,
            call_sid: v.call_sid,
            status: v.status,
            answered_by: v.answered_by,
            answered_at: v.answered_at,
            transcript: v.transcript.iter().map(TurnView::from).collect(),
        }
    }
}

/// One attempt of a call, as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallLogView {
    /// `<call id>/<attempt>`.
    id: String,
    call_id: String,
    attempt: u32,
    call_sid: Option<String>,
    /// `inbound` or `outbound`.
    direction: String,
    from: String,
    to: String,
    /// `dialing`, then Twilio's final call status.
    status: String,
    /// human, machine, voicemail_left, busy, no_answer, failed, canceled, opted_out, completed.
    outcome: Option<String>,
    /// Twilio's `AnsweredBy` when answering-machine detection ran.
    answered_by: Option<String>,
    started_at: Option<String>,
    answered_at: Option<String>,
    ended_at: Option<String>,
    duration_secs: Option<i64>,
    transcript: Vec<TurnView>,
    disposition: Option<String>,
    summary: Option<String>,
    recording_url: Option<String>,
    campaign_id: Option<String>,
    item_id: Option<String>,
    /// The agent profile the call used, and its version, once the agent answered a turn.
    profile: Option<String>,
    profile_version: Option<i64>,
}

impl From<&CallLogDoc> for CallLogView {
    fn from(l: &CallLogDoc) -> Self {
        Self {
            id: l.id.clone(),
            call_id: l.call_id.clone(),
            attempt: l.attempt,
            call_sid: l.call_sid.clone(),
            direction: l.direction.clone(),
            from: l.from.clone(),
            to: l.to.clone(),
            status: l.status.clone(),
            outcome: l.outcome.clone(),
            answered_by: l.answered_by.clone(),
            started_at: l.started_at.clone(),
            answered_at: l.answered_at.clone(),
            ended_at: l.ended_at.clone(),
            duration_secs: l.duration_secs,
            transcript: l.transcript.iter().map(TurnView::from).collect(),
            disposition: l.disposition.clone(),
            summary: l.summary.clone(),
            recording_url: l.recording_url.clone(),
            campaign_id: l.campaign_id.clone(),
            item_id: l.item_id.clone(),
            profile: l.profile.clone(),
            profile_version: l.profile_version,
        }
    }
}

/// `GET /api/calls`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CallsQuery {
    /// Only this outcome (human, machine, voicemail_left, busy, no_answer, failed, ...).
    outcome: Option<String>,
    /// Only this campaign's calls.
    campaign_id: Option<String>,
    /// `inbound` or `outbound`.
    direction: Option<String>,
    /// At most this many, newest first (default 50, 1-500).
    #[param(minimum = 1, maximum = 500)]
    page_size: Option<i64>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

/// A page of call logs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CallsPage {
    calls: Vec<CallLogView>,
    /// Empty on the last page.
    next_page_token: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> HttpError {
    ApiError::InvalidArgument {
        field,
        reason: reason.into(),
    }
    .into()
}

/// Validates and starts an outbound call; returns its id.
pub async fn start_call(state: &AppState, req: NewCall) -> Result<String, ApiError> {
    let bad = |field: &'static str, reason: String| ApiError::InvalidArgument { field, reason };
    let region = &state.settings.common.default_region;
    let to = PhoneNumber::parse(&req.to, region).map_err(|e| bad("to", e.to_string()))?;
    let from = match req.from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => PhoneNumber::parse(f, region).map_err(|e| bad("from", e.to_string()))?,
        None => state
            .settings
            .common
            .twilio
            .from_number
            .clone()
            .ok_or_else(|| {
                bad(
                    "from",
                    "no caller given and TWILIO_FROM_NUMBER is not set".to_owned(),
                )
            })?,
    };
    let ring_timeout_secs = req.ring_timeout_secs.unwrap_or(30);
    if !(5..=600).contains(&ring_timeout_secs) {
        return Err(bad(
            "ring_timeout_secs",
            "must be between 5 and 600".to_owned(),
        ));
    }
    // Twilio's TimeLimit is at most 4 hours; a larger value used to overflow the call
    // workflow's deadline arithmetic and fail it on every retry.
    if let Some(max) = req.max_duration_secs
        && !(1..=14_400).contains(&max)
    {
        return Err(bad(
            "max_duration_secs",
            "must be between 1 and 14400 (4 hours)".to_owned(),
        ));
    }
    let max_attempts = req.max_attempts.unwrap_or(1);
    if !(1..=10).contains(&max_attempts) {
        return Err(bad("max_attempts", "must be between 1 and 10".to_owned()));
    }
    let retry_after_secs = req.retry_after_secs.unwrap_or(600);
    if !(1..=604_800).contains(&retry_after_secs) {
        return Err(bad(
            "retry_after_secs",
            "must be between 1 and 604800".to_owned(),
        ));
    }
    if req
        .voicemail
        .as_ref()
        .is_some_and(|v| v.chars().count() > 1_000)
    {
        return Err(bad("voicemail", "at most 1000 characters".to_owned()));
    }
    let call_id = format!("call-{}", uuid::Uuid::new_v4().simple());
    let input = CallInput {
        call_id: call_id.clone(),
        direction: "outbound".to_owned(),
        ours: from.as_str().to_owned(),
        theirs: to.as_str().to_owned(),
        profile: state
            .agent_profile("profile", req.profile.as_deref().unwrap_or(""))
            .await?,
        voicemail: req.voicemail.filter(|v| !v.trim().is_empty()),
        machine_detection: req.machine_detection.unwrap_or(true),
        max_attempts,
        retry_after_secs,
        ring_timeout_secs,
        record: req.record.unwrap_or(false),
        max_duration_secs: req.max_duration_secs,
        ..CallInput::default()
    };
    state
        .temporal
        .start_workflow(
            CallWorkflow::run,
            input,
            WorkflowStartOptions::new(state.settings.common.task_queue.clone(), call_id.clone())
                .build(),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    info!(call_id = %call_id, to = %mask_phone(to.as_str()), "outbound call started");
    Ok(call_id)
}

/// A call's live view and logs, or NotFound.
pub async fn find_call(state: &AppState, id: &str) -> Result<CallDetail, ApiError> {
    if !id.starts_with("call-") || id.len() > 128 {
        return Err(ApiError::InvalidArgument {
            field: "call_id",
            reason: "expected call-…".to_owned(),
        });
    }
    let logs = state
        .store
        .call_logs_of(id)
        .await
        .map_err(|e| ApiError::Unavailable(e.into()))?;
    let handle = state
        .temporal
        .get_workflow_handle::<CallWorkflow>(id.to_owned());
    let running = matches!(
        handle.describe(Default::default()).await,
        Ok(d) if d.status() == temporalio_client::WorkflowExecutionStatus::Running
    );
    let live = if running {
        handle
            .query(CallWorkflow::call, (), WorkflowQueryOptions::default())
            .await
            .ok()
    } else {
        None
    };
    if live.is_none() && logs.is_empty() && !running {
        return Err(ApiError::NotFound(format!("call {id}")));
    }
    Ok(CallDetail {
        call_id: id.to_owned(),
        running,
        live: live.map(LiveCallView::from),
        logs: logs.iter().map(CallLogView::from).collect(),
    })
}

#[utoipa::path(
    post,
    path = "/api/calls",
    tag = "calls",
    request_body = NewCall,
    responses(
        (status = 201, description = "The call's workflow started", body = PlacedCall),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody)
    )
)]
async fn place_call(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<PlacedCall>), HttpError> {
    let req: NewCall =
        serde_json::from_slice(&body).map_err(|e| invalid("body", format!("not a call: {e}")))?;
    let call_id = start_call(&state, req).await?;
    Ok((StatusCode::CREATED, Json(PlacedCall { call_id })))
}

#[utoipa::path(
    get,
    path = "/api/calls/{id}",
    tag = "calls",
    params(("id" = String, Path, description = "call-...")),
    responses(
        (status = 200, description = "The call: live state while it runs, one log per attempt", body = CallDetail),
        (status = 400, description = "Not a call id", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such call", body = crate::openapi::ErrorBody)
    )
)]
async fn get_call(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CallDetail>, HttpError> {
    Ok(Json(find_call(&state, &id).await?))
}

/// Longest filter value accepted.
const MAX_FILTER_CHARS: usize = 64;

#[utoipa::path(
    get,
    path = "/api/calls",
    tag = "calls",
    params(CallsQuery),
    responses(
        (status = 200, description = "Call logs, newest first", body = CallsPage),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 409, description = "The search took too long; narrow it", body = crate::openapi::ErrorBody)
    )
)]
async fn list_calls(
    State(state): State<AppState>,
    Query(q): Query<CallsQuery>,
) -> Result<Json<CallsPage>, HttpError> {
    let limit = q.page_size.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(invalid("page_size", "between 1 and 500"));
    }
    for (field, v) in [
        ("outcome", &q.outcome),
        ("campaign_id", &q.campaign_id),
        ("direction", &q.direction),
    ] {
        if v.as_ref()
            .is_some_and(|v| v.chars().count() > MAX_FILTER_CHARS)
        {
            return Err(invalid(field, "at most 64 characters"));
        }
    }
    let before = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            let (at, id) = t
                .split_once('|')
                .filter(|(at, id)| at.len() <= 64 && id.len() <= 200)
                .ok_or_else(|| invalid("page_token", "not a token from this endpoint"))?;
            Some((at.to_owned(), id.to_owned()))
        }
    };
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let logs = state
        .store
        .list_call_logs(&CallLogQuery {
            outcome: nonempty(q.outcome),
            campaign_id: nonempty(q.campaign_id),
            direction: nonempty(q.direction),
            before,
            limit,
        })
        .await
        .map_err(|e| match e {
            voice_agent_store::StoreError::SearchTimedOut => ApiError::FailedPrecondition(
                "the search took too long; filter by campaign or outcome".to_owned(),
            ),
            e => ApiError::Unavailable(e.into()),
        })?;
    let next_page_token = if logs.len() as i64 == limit {
        logs.last()
            .and_then(|l| Some(format!("{}|{}", l.started_at.as_deref()?, l.id)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    Ok(Json(CallsPage {
        calls: logs.iter().map(CallLogView::from).collect(),
        next_page_token,
    }))
}

// ---- gRPC ----------------------------------------------------------------------------------

/// The gRPC `CallService`.
pub struct CallsApi {
    state: AppState,
}

/// The gRPC service over `state`.
pub fn grpc_service(state: AppState) -> CallServiceServer<CallsApi> {
    CallServiceServer::new(CallsApi { state })
}

fn turn_to_proto(t: &TurnView) -> pb::TranscriptTurn {
    pb::TranscriptTurn {
        speaker: t.speaker.clone(),
        text: t.text.clone(),
        at: t.at.clone(),
        confidence: t.confidence.unwrap_or(0.0),
        interrupted: t.interrupted,
    }
}

#[tonic::async_trait]
impl CallService for CallsApi {
    async fn place_call(
        &self,
        request: tonic::Request<pb::PlaceCallRequest>,
    ) -> Result<tonic::Response<pb::PlaceCallResponse>, tonic::Status> {
        let r = request.into_inner();
        // 0 means "the default"; a negative number is refused, not read as the default, so a
        // client's sign bug shows up instead of dialling with settings it did not ask for.
        let negative = |field: &'static str, range: &str| ApiError::InvalidArgument {
            field,
            reason: format!("must be between {range} (0 for the default)"),
        };
        let max_attempts = match r.max_attempts {
            0 => None,
            n => Some(u32::try_from(n).map_err(|_| negative("max_attempts", "1 and 10"))?),
        };
        let retry_after_secs = match r.retry_after_secs {
            0 => None,
            n => Some(u64::try_from(n).map_err(|_| negative("retry_after_secs", "1 and 604800"))?),
        };
        let max_duration_secs = match r.max_duration_secs {
            0 => None,
            n => Some(u64::try_from(n).map_err(|_| negative("max_duration_secs", "1 and 14400"))?),
        };
        let call_id = start_call(
            &self.state,
            NewCall {
                to: r.to,
                from: Some(r.from),
                profile: Some(r.agent_profile),
                voicemail: Some(r.voicemail),
                machine_detection: Some(!r.disable_machine_detection),
                max_attempts,
                retry_after_secs,
                record: Some(r.record),
                ring_timeout_secs: (r.ring_timeout_secs > 0).then_some(r.ring_timeout_secs),
                max_duration_secs,
            },
        )
        .await?;
        Ok(tonic::Response::new(pb::PlaceCallResponse { call_id }))
    }

    async fn get_call(
        &self,
        request: tonic::Request<pb::GetCallRequest>,
    ) -> Result<tonic::Response<pb::Call>, tonic::Status> {
        let d = find_call(&self.state, &request.into_inner().call_id).await?;
        Ok(tonic::Response::new(pb::Call {
            call_id: d.call_id,
            running: d.running,
            live_status: d
                .live
                .as_ref()
                .map(|l| l.status.clone())
                .unwrap_or_default(),
            live_transcript: d
                .live
                .as_ref()
                .map(|l| l.transcript.iter().map(turn_to_proto).collect())
                .unwrap_or_default(),
            attempts: d
                .logs
                .iter()
                .map(|l| pb::CallAttempt {
                    attempt: l.attempt,
                    call_sid: l.call_sid.clone().unwrap_or_default(),
                    status: l.status.clone(),
                    outcome: l.outcome.clone().unwrap_or_default(),
                    answered_by: l.answered_by.clone().unwrap_or_default(),
                    duration_secs: l.duration_secs.unwrap_or(0),
                    transcript: l.transcript.iter().map(turn_to_proto).collect(),
                    summary: l.summary.clone().unwrap_or_default(),
                    disposition: l.disposition.clone().unwrap_or_default(),
                    started_at: l.started_at.clone().unwrap_or_default(),
                    ended_at: l.ended_at.clone().unwrap_or_default(),
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use voice_agent_agent::RelaySettings;

    use super::*;

    fn relay_urls() -> (String, String) {
        (
            "wss://v.example/twilio/voice/relay?wf=call-1".to_owned(),
            "https://v.example/twilio/voice/relay/action?wf=call-1".to_owned(),
        )
    }

    #[test]
    fn a_relay_turn_connects_the_call_to_a_conversation_relay_with_the_greeting() {
        let turn = VoiceTurn {
            say: vec!["Hi, this is Acme.".to_owned()],
            voice: Some("Polly.Joanna".to_owned()),
            language: "en-US".to_owned(),
            next: VoiceNext::Relay {
                settings: RelaySettings {
                    tts_provider: Some("ElevenLabs".to_owned()),
                    ..RelaySettings::default()
                },
            },
        };
        let xml = render(&turn, "unused", relay_urls);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect \
             action=\"https://v.example/twilio/voice/relay/action?wf=call-1\" method=\"POST\">\
             <ConversationRelay dtmfDetection=\"true\" interruptible=\"any\" language=\"en-US\" \
             ttsProvider=\"ElevenLabs\" url=\"wss://v.example/twilio/voice/relay?wf=call-1\" \
             voice=\"Polly.Joanna\" welcomeGreeting=\"Hi, this is Acme.\" \
             welcomeGreetingInterruptible=\"any\" /></Connect></Response>"
        );
    }

    #[test]
    fn a_gather_turn_never_asks_for_relay_urls() {
        let turn = VoiceTurn {
            say: vec!["Hello".to_owned()],
            voice: None,
            language: "en-US".to_owned(),
            next: VoiceNext::Hangup,
        };
        let xml = render(&turn, "https://v.example/g", || {
            panic!("relay URLs asked for a turn without a session")
        });
        assert!(xml.ends_with("<Say language=\"en-US\">Hello</Say><Hangup /></Response>"));
    }
}
