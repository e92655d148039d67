//! One phone call (inbound or outbound, with its retry attempts) as a durable workflow.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::error::Error;
use std::pin::pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    CancellableFuture, ChildWorkflowOptions, ParentClosePolicy, SignalWorkflowOptions,
    SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult, workflows::select,
};
use voice_agent_activities::agent::{AgentActivities, AgentTurnInput, OptOutInput, SummaryInput};
use voice_agent_activities::voice::{CallLogRecord, PlaceCallInput, VoiceActivities};
use voice_agent_activities::window;
use voice_agent_agent::{
    AgentAction, AgentChannel, AgentProfile, AgentReply, AgentRequest, Disposition, RelaySettings,
    Speaker, Turn, Usage, VoiceMode,
};
use voice_agent_domain::Channel;
use voice_agent_store::{NewCallAttempt, TranscriptEntry};

use crate::campaign::{CallFinished, CampaignWorkflow};
use crate::followup::{FollowUpInput, FollowUpWorkflow};
use crate::options::{
    VOICE_OPT_OUT_BUDGET, VOICE_PROFILE_BUDGET, VOICE_REPLY_BUDGET, call_summary_options,
    dial_options, local_options, store_options,
};

/// Longest a call may go on, unless the call says otherwise (Twilio's `TimeLimit`).
const MAX_CALL: Duration = Duration::from_secs(4 * 3600);
/// How long after its longest possible end (ringing plus time limit) the workflow waits for
/// a final status before asking Twilio what became of the call.
const STATUS_GRACE: Duration = Duration::from_secs(10);
/// Patch id of finishing the turn in progress before the attempt is logged.
const TURN_FINISHES_PATCH: &str = "turn-finishes-before-log";
/// How long a call that ended waits for its ConversationRelay session to hand over its last
/// turns (the api closes the session once the caller is gone; this covers an api that died).
const RELAY_CLOSE_GRACE: Duration = Duration::from_secs(15);
/// Sessions one call may open: the first, and new ones after a session dropped (the api that
/// held it died) before the caller hung up.
const MAX_RELAY_SESSIONS: u32 = 4;

/// What starts a call workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallInput {
    /// The workflow id (`call-…`); also the prefix of each attempt's log id.
    pub call_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Our number (E.164).
    pub ours: String,
    /// Their number (E.164).
    pub theirs: String,
    /// Twilio's SID, known up front for inbound calls.
    #[serde(default)]
    pub call_sid: Option<String>,
    /// Agent profile by name; by default the profile of our number, else the default profile.
    #[serde(default)]
    pub profile: Option<String>,
    /// Said to an answering machine (outbound); without it machines get a hang-up.
    #[serde(default)]
    pub voicemail: Option<String>,
    /// Ask for answering-machine detection (outbound).
    #[serde(default)]
    pub machine_detection: bool,
    /// Attempts for busy / no-answer / failed (outbound), at least 1.
    #[serde(default)]
    pub max_attempts: u32,
    /// Wait between attempts, seconds.
    #[serde(default)]
    pub retry_after_secs: u64,
    /// Seconds to let it ring (outbound).
    #[serde(default)]
    pub ring_timeout_secs: u32,
    /// Campaign of the call.
    #[serde(default)]
    pub campaign_id: Option<String>,
    /// Campaign item of the call.
    #[serde(default)]
    pub item_id: Option<String>,
    /// When the call rang in (inbound), RFC 3339, set by the API.
    #[serde(default)]
    pub started_at: Option<String>,
    /// Calling window in the person's local time (campaigns): retries wait for it.
    #[serde(default)]
    pub window: Option<CallWindow>,
    /// Record the call (outbound).
    #[serde(default)]
    pub record: bool,
    /// Longest call in seconds (Twilio's `TimeLimit`); 4 hours when unset.
    #[serde(default)]
    pub max_duration_secs: Option<u64>,
    /// No retry is dialled at or after this time, Unix ms (a campaign's `end_at`).
    #[serde(default)]
    pub not_after_ms: Option<i64>,
}

impl CallInput {
    /// When to stop waiting for the final status and ask Twilio instead.
    fn status_deadline(&self) -> Duration {
        // The API bounds both; saturating keeps an input from elsewhere from failing the task.
        let talk = self
            .max_duration_secs
            .map_or(MAX_CALL, |s| Duration::from_secs(s).min(MAX_CALL));
        Duration::from_secs(u64::from(self.ring_timeout_secs))
            .saturating_add(talk)
            .saturating_add(STATUS_GRACE)
    }
}

/// A calling window: minutes after local midnight, and the contact's time zone if known
/// (else the number's region decides).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallWindow {
    /// Opening minute.
    pub start_minute: u32,
    /// Closing minute (exclusive; before the opening one when the window spans midnight).
    pub end_minute: u32,
    /// IANA zone of the contact.
    pub time_zone: Option<String>,
}

/// When the next attempt may dial: `delay` from now, moved to the window's next opening when
/// that falls outside it; `None` when the window never opens, or not before `not_after_ms`.
fn retry_delay(
    window: Option<&CallWindow>,
    theirs: &str,
    now: Option<std::time::SystemTime>,
    delay: Duration,
    not_after_ms: Option<i64>,
) -> Option<Duration> {
    let delay = delay_in_window(window, theirs, now, delay)?;
    match (not_after_ms, now) {
        (Some(end), Some(now)) => {
            let now_ms = chrono::DateTime::<chrono::Utc>::from(now).timestamp_millis();
            let at_ms = now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            (at_ms < end).then_some(delay)
        }
        _ => Some(delay),
    }
}

fn delay_in_window(
    window: Option<&CallWindow>,
    theirs: &str,
    now: Option<std::time::SystemTime>,
    delay: Duration,
) -> Option<Duration> {
    let (Some(w), Some(now)) = (window, now) else {
        return Some(delay);
    };
    let now = chrono::DateTime::<chrono::Utc>::from(now);
    let at = now + chrono::Duration::from_std(delay).ok()?;
    let region = voice_agent_domain::PhoneNumber::parse_e164(theirs)
        .ok()
        .and_then(|p| p.region());
    let zones = window::zones(w.time_zone.as_deref(), region.as_deref());
    let win = window::Window {
        start: w.start_minute,
        end: w.end_minute,
    };
    if window::is_open(win, &zones, at) {
        return Some(delay);
    }
    let next = window::next_open(win, &zones, at)?;
    (next - now).to_std().ok()
}

/// How a refused Gather result's error message starts (the API answers it without a turn).
pub const STALE_GATHER: &str = "a late or foreign Gather result";

/// What the API answers Twilio with: lines to say, then gather, dial or hang up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceTurn {
    /// Lines to `<Say>`.
    pub say: Vec<String>,
    /// `<Say voice>`.
    pub voice: Option<String>,
    /// `<Say language>` / `<Gather language>`.
    pub language: String,
    /// What comes after.
    pub next: VoiceNext,
}

/// A turn as sent to Twilio, numbered: the Gather it ends with carries the number back, so a
/// late result can be told from the current one. (Flattened: the same JSON as a bare turn.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedTurn {
    /// The turn.
    #[serde(flatten)]
    pub turn: VoiceTurn,
    /// Its number on the call, from 1.
    #[serde(default)]
    pub number: u32,
}

/// After the lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VoiceNext {
    /// Listen for the person's next turn.
    Gather,
    /// Transfer to a human.
    Dial {
        /// Number to dial.
        number: String,
        /// Caller id shown.
        caller_id: String,
    },
    /// End the call.
    Hangup,
    /// Hand the call to a ConversationRelay session (the profile's voice mode `relay`); the
    /// lines are its welcome greeting.
    Relay {
        /// What `<ConversationRelay>` is told.
        settings: RelaySettings,
    },
}

/// One settled turn of a ConversationRelay session, from the api. Tokens never come here:
/// only the turn once its reply is complete or was cut off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayTurn {
    /// Unique per turn (a repeated signal is recorded once).
    pub turn_id: String,
    /// The session's `CallSid`.
    pub call_sid: String,
    /// What the caller said (or `(pressed 1)`).
    pub person: String,
    /// When the caller's prompt arrived, RFC 3339.
    pub person_at: String,
    /// What the agent said, or when cut off, what was spoken until then (empty: nothing).
    pub agent: String,
    /// The caller cut the reply off.
    pub interrupted: bool,
    /// When the reply ended, RFC 3339.
    pub agent_at: String,
    /// The reply's actions, carried out by the workflow (transfer and end also end the session).
    pub actions: Vec<AgentAction>,
    /// Memory slots set.
    pub remember: BTreeMap<String, String>,
    /// Tokens used.
    pub usage: Usage,
    /// Disposition set.
    pub disposition: Option<Disposition>,
}

/// The caller cut off a reply that had been settled as complete (Twilio's `interrupt` came
/// after its last token): only `heard` was spoken.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInterrupted {
    /// The session's `CallSid`.
    pub call_sid: String,
    /// The turn; `None` for the welcome greeting.
    pub turn_id: Option<String>,
    /// `utteranceUntilInterrupt`.
    pub heard: String,
}

/// The api closed a ConversationRelay session: every turn it settled was signalled before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayClosed {
    /// The session's `CallSid`.
    pub call_sid: String,
}

/// Twilio requested the `<Connect action>` URL: the session ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayEnd {
    /// `CallSid`.
    pub call_sid: String,
    /// `HandoffData` of our `end`, if we sent one.
    pub handoff_data: Option<String>,
    /// `CallStatus` at that moment.
    pub call_status: Option<String>,
    /// When the request arrived, RFC 3339 (set by the API).
    pub at: String,
}

/// What a ConversationRelay session needs to carry on the call (the `relay_context` query).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayContext {
    /// The current attempt's SID.
    pub call_sid: Option<String>,
    /// The call's profile.
    pub profile: AgentProfile,
    /// Memory slots.
    pub memory: BTreeMap<String, String>,
    /// The attempt's transcript so far.
    pub transcript: Vec<TranscriptEntry>,
    /// Our number.
    pub ours: String,
    /// Their number.
    pub theirs: String,
    /// The call is over.
    pub ended: bool,
}

/// A `<Gather>` result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatherInput {
    /// `CallSid`.
    pub call_sid: String,
    /// `SpeechResult`.
    pub speech: Option<String>,
    /// `Confidence`.
    pub confidence: Option<f64>,
    /// `Digits`.
    pub digits: Option<String>,
    /// When the webhook arrived, RFC 3339 (set by the API).
    pub at: String,
    /// The turn whose Gather this answers (from the action URL; absent on calls whose TwiML
    /// came from a version without turn numbers).
    #[serde(default)]
    pub turn: Option<u32>,
}

/// The call was answered (or rang in): `CallSid` and `AnsweredBy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerInput {
    /// `CallSid`.
    pub call_sid: String,
    /// `AnsweredBy`, when detection ran.
    pub answered_by: Option<String>,
    /// When the webhook arrived, RFC 3339 (set by the API).
    pub at: String,
}

/// A call status callback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStatusEvent {
    /// `CallSid`.
    pub call_sid: String,
    /// `CallStatus`.
    pub status: String,
    /// Our attempt number, from the callback URL (outbound).
    pub attempt: Option<u32>,
    /// `CallDuration`.
    pub duration_secs: Option<u64>,
    /// `AnsweredBy`.
    pub answered_by: Option<String>,
    /// `RecordingUrl`.
    pub recording_url: Option<String>,
    /// When the webhook arrived, RFC 3339 (set by the API).
    pub at: String,
}

impl CallStatusEvent {
    fn is_final(&self) -> bool {
        is_final_status(&self.status)
    }
}

fn is_final_status(status: &str) -> bool {
    matches!(
        status,
        "completed" | "busy" | "no-answer" | "failed" | "canceled"
    )
}

/// One attempt, as the result reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptResult {
    /// Attempt number.
    pub attempt: u32,
    /// Twilio's SID.
    pub call_sid: Option<String>,
    /// Final status.
    pub status: String,
    /// Outcome.
    pub outcome: String,
}

/// How the call ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallResult {
    /// The last attempt's outcome: human, machine, voicemail_left, busy, no_answer, failed,
    /// canceled, opted_out (not dialled), completed (inbound).
    pub outcome: String,
    /// Every attempt.
    pub attempts: Vec<AttemptResult>,
    /// The agent's disposition.
    pub disposition: Option<Disposition>,
}

/// The call as the workflow holds it; also what the `call` query answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallView {
    /// Input.
    pub input: CallInput,
    /// Current attempt, from 1.
    pub attempt: u32,
    /// Current SID.
    pub call_sid: Option<String>,
    /// Latest status.
    pub status: String,
    /// `AnsweredBy`.
    pub answered_by: Option<String>,
    /// RFC 3339.
    pub answered_at: Option<String>,
    /// This attempt's turns.
    pub transcript: Vec<TranscriptEntry>,
    /// Outcome decided during the call (voicemail_left, machine).
    pub outcome: Option<String>,
    /// Disposition.
    pub disposition: Option<Disposition>,
    /// Finished attempts.
    pub attempts: Vec<AttemptResult>,
}

/// One call. Inbound calls start with the API's update-with-start (`answer`) when Twilio's
/// voice webhook arrives; outbound calls dial in the workflow, with a retry ladder for busy,
/// no-answer and failed. Each `<Gather>` result is a `gather` update answered with the next
/// [`VoiceTurn`], computed by the agent in a local activity (the caller is waiting); status
/// callbacks are `status` signals. The transcript lives in workflow state, so a worker killed
/// mid-call loses no turn. A call whose final status never arrives (the API was down when
/// Twilio posted it) is reconciled with Twilio once it cannot be going on any more (ringing
/// plus its time limit plus a grace): its real status is fetched and, if still live, it is
/// ended. Each attempt
/// ends with a `call_logs` document.
#[workflow]
pub struct CallWorkflow {
    view: CallView,
    profile: Option<AgentProfile>,
    memory: BTreeMap<String, String>,
    silences: u32,
    usage: Usage,
    final_status: Option<CallStatusEvent>,
    recording_url: Option<String>,
    duration_secs: Option<u64>,
    started_at: Option<String>,
    ended_at: Option<String>,
    followups: u32,
    /// The campaign was cancelled: dial no more (see [`CallWorkflow::stop_dialling`]).
    stop: bool,
    /// Turns sent to Twilio so far; the latest one's Gather is the only one answered.
    turn: u32,
    /// An opt-out decided in a turn whose write did not fit in the turn's time.
    opt_out_pending: bool,
    /// A ConversationRelay session is open (or about to be): its last turns may still come.
    relay_open: bool,
    /// ConversationRelay sessions opened on this attempt.
    relay_sessions: u32,
    /// Relay turns recorded, by id.
    relay_seen: BTreeSet<String>,
    /// Where each relay turn's agent line is in the transcript (`""`: the welcome greeting).
    relay_lines: BTreeMap<String, usize>,
    /// Actions of relay turns not carried out yet, oldest first.
    relay_actions: VecDeque<Vec<AgentAction>>,
    /// Carrying out relay actions right now.
    relay_busy: bool,
    /// What the `<Connect action>` answers: set by a relay turn's transfer or end.
    relay_next: Option<VoiceNext>,
}

#[workflow_methods]
impl CallWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: CallInput) -> Self {
        Self {
            view: CallView {
                call_sid: input.call_sid.clone(),
                status: if input.direction == "inbound" {
                    "ringing"
                } else {
                    "queued"
                }
                .to_owned(),
                attempt: 1,
                input: input.clone(),
                ..CallView::default()
            },
            profile: None,
            memory: BTreeMap::new(),
            silences: 0,
            usage: Usage::default(),
            final_status: None,
            recording_url: None,
            duration_secs: None,
            started_at: input.started_at,
            ended_at: None,
            followups: 0,
            stop: false,
            turn: 0,
            opt_out_pending: false,
            relay_open: false,
            relay_sessions: 0,
            relay_seen: BTreeSet::new(),
            relay_lines: BTreeMap::new(),
            relay_actions: VecDeque::new(),
            relay_busy: false,
            relay_next: None,
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<CallResult> {
        let input = ctx.state(|s| s.view.input.clone());
        let profile = load_profile(ctx, &input).await;
        ctx.state_mut(|s| s.profile = Some(profile));
        let inbound = input.direction == "inbound";
        let max_attempts = if inbound {
            1
        } else {
            input.max_attempts.max(1)
        };

        let mut stopped = false;
        loop {
            let attempt = ctx.state(|s| s.view.attempt);
            let log_id = format!("{}/{attempt}", input.call_id);
            if !inbound && ctx.state(|s| s.stop) {
                // Cancelled before the first dial: nothing was placed.
                ctx.state_mut(|s| {
                    s.final_status = Some(CallStatusEvent {
                        status: "canceled".to_owned(),
                        ..CallStatusEvent::default()
                    });
                    s.view.outcome = Some("canceled".to_owned());
                });
            } else if !inbound {
                let started = now(ctx.workflow_time());
                ctx.state_mut(|s| s.started_at = Some(started));
                let placed = ctx
                    .execute_activity(
                        VoiceActivities::place_call,
                        PlaceCallInput {
                            attempt: NewCallAttempt {
                                id: log_id.clone(),
                                call_id: input.call_id.clone(),
                                attempt,
                                direction: "outbound".to_owned(),
                                from: input.ours.clone(),
                                to: input.theirs.clone(),
                                campaign_id: input.campaign_id.clone(),
                                item_id: input.item_id.clone(),
                            },
                            machine_detection: input.machine_detection,
                            ring_timeout_secs: if input.ring_timeout_secs == 0 {
                                30
                            } else {
                                input.ring_timeout_secs
                            },
                            record: input.record,
                            time_limit_secs: input.max_duration_secs,
                        },
                        dial_options(),
                    )
                    .await;
                match placed {
                    Ok(out) if out.not_dialled.is_some() => {
                        ctx.state_mut(|s| {
                            s.final_status = Some(CallStatusEvent {
                                status: "not_dialled".to_owned(),
                                ..CallStatusEvent::default()
                            });
                            s.view.outcome = Some("opted_out".to_owned());
                        });
                    }
                    Ok(out) => ctx.state_mut(|s| s.view.call_sid = Some(out.call_sid)),
                    Err(e) => {
                        // Refused for good (invalid number…): no call happened.
                        ctx.state_mut(|s| {
                            s.final_status = Some(CallStatusEvent {
                                status: "failed".to_owned(),
                                ..CallStatusEvent::default()
                            });
                            s.view.outcome = Some("failed".to_owned());
                            s.view.disposition = None;
                        });
                        tracing::warn!(error = %e, "call could not be placed");
                    }
                }
            }

            wait_for_end(ctx).await;
            if ctx.state(|s| s.relay_open) {
                // The session's last turns may still be on their way from the api.
                let mut grace = pin!(ctx.timer(RELAY_CLOSE_GRACE));
                let closed = select! {
                    _ = ctx.wait_condition(|s| !s.relay_open) => true,
                    _ = grace.as_mut() => false,
                };
                if closed {
                    grace.cancel();
                }
            }
            carry_out_relay_actions(ctx).await;
            // A caller who hangs up while the agent is answering ends the call mid-turn: the
            // turn's actions (an opt-out, a callback) still happen, and the log is written
            // after them. Turns are bounded well under a minute, so this wait is too.
            if ctx.patched(TURN_FINISHES_PATCH) {
                let handlers = ctx.clone();
                ctx.wait_condition(move |_| handlers.all_handlers_finished())
                    .await?;
                if ctx.state(|s| s.opt_out_pending) {
                    // Nobody is waiting any more: the write may now take its time.
                    let done = ctx
                        .execute_activity(
                            AgentActivities::opt_out,
                            OptOutInput {
                                phone: input.theirs.clone(),
                                channel: "voice".to_owned(),
                            },
                            store_options(Duration::from_secs(30)),
                        )
                        .await
                        .is_ok();
                    ctx.state_mut(|s| s.opt_out_pending = !done);
                }
            }
            let result = finish_attempt(ctx, &log_id).await;
            let retry = matches!(result.outcome.as_str(), "busy" | "no_answer" | "failed")
                && attempt < max_attempts
                && result.call_sid.is_some();
            ctx.state_mut(|s| s.view.attempts.push(result));
            if !retry {
                break;
            }
            let Some(delay) = retry_delay(
                input.window.as_ref(),
                &input.theirs,
                ctx.workflow_time(),
                Duration::from_secs(input.retry_after_secs.max(1)),
                input.not_after_ms,
            ) else {
                break;
            };
            {
                let mut wait = pin!(ctx.timer(delay));
                stopped = select! {
                    _ = ctx.wait_condition(|s| s.stop) => true,
                    _ = wait.as_mut() => false,
                };
                if stopped {
                    wait.cancel();
                }
            }
            if stopped {
                break;
            }
            ctx.state_mut(|s| {
                s.view.attempt += 1;
                s.view.call_sid = None;
                s.view.status = "queued".to_owned();
                s.view.answered_by = None;
                s.view.answered_at = None;
                s.view.transcript.clear();
                s.view.outcome = None;
                s.final_status = None;
                s.silences = 0;
                s.recording_url = None;
                s.duration_secs = None;
                s.ended_at = None;
                s.relay_open = false;
                s.relay_sessions = 0;
                s.relay_lines.clear();
                s.relay_next = None;
            });
        }
        let result = ctx.state(|s| CallResult {
            // Cancelled while waiting to dial again: the item says so, not the last busy.
            outcome: if stopped {
                "canceled".to_owned()
            } else {
                s.view
                    .attempts
                    .last()
                    .map(|a| a.outcome.clone())
                    .unwrap_or_default()
            },
            attempts: s.view.attempts.clone(),
            disposition: s.view.disposition,
        });
        if let (Some(campaign_id), Some(item_id)) = (&input.campaign_id, &input.item_id) {
            ctx.execute_activity(
                VoiceActivities::finish_call_item,
                (item_id.clone(), result.outcome.clone()),
                store_options(Duration::from_secs(30)),
            )
            .await?;
            // The campaign counts its calls in flight; a campaign already over ignores this.
            let _ = ctx
                .external_workflow(format!("campaign-{campaign_id}"), None)
                .signal(
                    CampaignWorkflow::call_finished,
                    CallFinished {
                        item_id: item_id.clone(),
                        outcome: result.outcome.clone(),
                    },
                    SignalWorkflowOptions::default(),
                )
                .await;
        }
        Ok(result)
    }

    /// The campaign this call belongs to was cancelled: no further attempt is dialled, and an
    /// attempt still ringing is cancelled; a call already answered goes on to its end.
    #[signal]
    pub fn stop_dialling(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.stop = true;
    }

    /// The call was answered (outbound) or rang in (inbound): the first thing to say.
    #[update]
    pub async fn answer(
        ctx: &mut WorkflowContext<Self>,
        input: AnswerInput,
    ) -> Result<IssuedTurn, Box<dyn Error + Send + Sync>> {
        let turn = answer_turn(ctx, input).await?;
        Ok(issue(ctx, turn))
    }

    /// Refuses a Gather result that is not for this call's current turn: one of another call
    /// (another attempt's SID), or one that answers a turn already answered. A repeat of the
    /// current turn's request never gets here: the API names each Gather's update by its call
    /// and turn, and Temporal answers a repeated update id with the first result.
    #[update_validator(gather)]
    pub fn validate_gather(
        &self,
        _ctx: &WorkflowContextView,
        input: &GatherInput,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        if let Some(current) = &self.view.call_sid
            && *current != input.call_sid
        {
            return Err(format!("{STALE_GATHER}: it is for another call").into());
        }
        if let Some(turn) = input.turn
            && turn != self.turn
        {
            return Err(format!(
                "{STALE_GATHER}: it answers turn {turn}, and the call is at turn {}",
                self.turn
            )
            .into());
        }
        Ok(())
    }

    /// A `<Gather>` result: the person's turn, answered with the agent's.
    #[update]
    pub async fn gather(
        ctx: &mut WorkflowContext<Self>,
        input: GatherInput,
    ) -> Result<IssuedTurn, Box<dyn Error + Send + Sync>> {
        let turn = gather_turn(ctx, input).await?;
        Ok(issue(ctx, turn))
    }

    /// A settled turn of the call's ConversationRelay session (see [`RelayTurn`]).
    #[signal]
    pub fn relay_turn(&mut self, _ctx: &mut SyncWorkflowContext<Self>, turn: RelayTurn) {
        if self
            .view
            .call_sid
            .as_ref()
            .is_some_and(|s| *s != turn.call_sid)
            || !self.relay_seen.insert(turn.turn_id.clone())
        {
            return;
        }
        if !turn.person.trim().is_empty() {
            push(
                &mut self.view.transcript,
                Speaker::Person,
                &turn.person,
                &turn.person_at,
                None,
            );
        }
        if !turn.agent.is_empty() {
            push(
                &mut self.view.transcript,
                Speaker::Agent,
                &turn.agent,
                &turn.agent_at,
                None,
            );
            let line = self.view.transcript.len() - 1;
            self.view.transcript[line].interrupted = turn.interrupted;
            self.relay_lines.insert(turn.turn_id.clone(), line);
        }
        self.memory.extend(turn.remember);
        self.usage.add(turn.usage);
        if turn.disposition.is_some() {
            self.view.disposition = turn.disposition;
        }
        if !turn.actions.is_empty() {
            self.relay_actions.push_back(turn.actions);
        }
    }

    /// A reply recorded as complete was cut off after all (see [`RelayInterrupted`]).
    #[signal]
    pub fn relay_interrupted(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        cut: RelayInterrupted,
    ) {
        if self
            .view
            .call_sid
            .as_ref()
            .is_some_and(|s| *s != cut.call_sid)
        {
            return;
        }
        let key = cut.turn_id.unwrap_or_default();
        let Some(entry) = self
            .relay_lines
            .get(&key)
            .and_then(|&i| self.view.transcript.get_mut(i))
        else {
            return;
        };
        if entry.interrupted {
            return;
        }
        entry.text = heard_of(&entry.text, &cut.heard);
        entry.interrupted = true;
    }

    /// The api closed the call's ConversationRelay session.
    #[signal]
    pub fn relay_closed(&mut self, _ctx: &mut SyncWorkflowContext<Self>, closed: RelayClosed) {
        if self
            .view
            .call_sid
            .as_ref()
            .is_none_or(|s| *s == closed.call_sid)
        {
            self.relay_open = false;
        }
    }

    /// Refuses the end of a session of another call (another attempt's SID).
    #[update_validator(relay_end)]
    pub fn validate_relay_end(
        &self,
        _ctx: &WorkflowContextView,
        input: &RelayEnd,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        match &self.view.call_sid {
            Some(current) if *current != input.call_sid => {
                Err(format!("{STALE_GATHER}: the session is of another call").into())
            }
            _ => Ok(()),
        }
    }

    /// The ConversationRelay session ended (Twilio requested the `<Connect action>` URL): a
    /// transfer or an end the agent decided, or, when the session dropped without one while
    /// the caller is still on the line, a new session.
    #[update]
    pub async fn relay_end(
        ctx: &mut WorkflowContext<Self>,
        input: RelayEnd,
    ) -> Result<IssuedTurn, Box<dyn Error + Send + Sync>> {
        // The turn that ended the session is signalled before the api sends `end`.
        ctx.wait_condition(|s| s.relay_actions.is_empty() && !s.relay_busy)
            .await?;
        let profile = ctx.state(|s| s.profile.clone().unwrap_or_default());
        let caller_gone = input.call_status.as_deref().is_some_and(is_final_status);
        let next = ctx.state_mut(|s| {
            s.relay_open = false;
            match s.relay_next.take() {
                Some(next) => next,
                None if !caller_gone
                    && s.final_status.is_none()
                    && s.relay_sessions < MAX_RELAY_SESSIONS =>
                {
                    s.relay_open = true;
                    s.relay_sessions += 1;
                    VoiceNext::Relay {
                        settings: profile.relay.clone(),
                    }
                }
                None => VoiceNext::Hangup,
            }
        });
        let turn = VoiceTurn {
            say: Vec::new(),
            voice: profile.voice,
            language: profile.language,
            next,
        };
        Ok(issue(ctx, turn))
    }

    /// What a ConversationRelay session needs to carry on the call.
    #[query]
    pub fn relay_context(&self, _ctx: &WorkflowContextView) -> RelayContext {
        RelayContext {
            call_sid: self.view.call_sid.clone(),
            profile: self.profile.clone().unwrap_or_default(),
            memory: self.memory.clone(),
            transcript: self.view.transcript.clone(),
            ours: self.view.input.ours.clone(),
            theirs: self.view.input.theirs.clone(),
            ended: self.final_status.is_some(),
        }
    }

    /// A status callback.
    #[signal]
    pub fn status(&mut self, _ctx: &mut SyncWorkflowContext<Self>, ev: CallStatusEvent) {
        // Callbacks of an earlier attempt arrive late sometimes; they are not this call's.
        if ev.attempt.is_some_and(|a| a != self.view.attempt) {
            return;
        }
        if let Some(sid) = &self.view.call_sid
            && !ev.call_sid.is_empty()
            && sid != &ev.call_sid
        {
            return;
        }
        if self.view.call_sid.is_none() && !ev.call_sid.is_empty() {
            self.view.call_sid = Some(ev.call_sid.clone());
        }
        if ev.answered_by.is_some() {
            self.view.answered_by.clone_from(&ev.answered_by);
        }
        if ev.recording_url.is_some() {
            self.recording_url.clone_from(&ev.recording_url);
        }
        if self.final_status.is_some() {
            return;
        }
        self.view.status.clone_from(&ev.status);
        if ev.is_final() {
            self.duration_secs = ev.duration_secs;
            self.ended_at = Some(ev.at.clone());
            self.final_status = Some(ev);
        }
    }

    /// The call now.
    #[query]
    pub fn call(&self, _ctx: &WorkflowContextView) -> CallView {
        self.view.clone()
    }
}

/// What the person heard of `said` when they cut in, by Twilio's or the browser's account:
/// the longest start of `said` whose letters and digits `heard` repeats in order (spacing,
/// punctuation and case aside, as a speech engine may change them). Never more than was said,
/// and never words the agent did not say: an account that strays ends the match there.
pub fn heard_of(said: &str, heard: &str) -> String {
    let mut theirs = heard
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase);
    let mut end = 0;
    'said: for (i, c) in said.char_indices() {
        if !c.is_alphanumeric() {
            continue;
        }
        for lower in c.to_lowercase() {
            if theirs.next() != Some(lower) {
                break 'said;
            }
        }
        end = i + c.len_utf8();
    }
    // An account that ends on punctuation, having matched to its end, was heard through the
    // punctuation that follows the last word.
    let ends_on_mark = heard
        .trim_end()
        .chars()
        .next_back()
        .is_some_and(|c| !c.is_alphanumeric());
    if ends_on_mark && theirs.next().is_none() {
        end += said[end..]
            .chars()
            .take_while(|c| !c.is_alphanumeric() && !c.is_whitespace())
            .map(char::len_utf8)
            .sum::<usize>();
    }
    said[..end].to_owned()
}

fn now(t: Option<std::time::SystemTime>) -> String {
    t.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
        .unwrap_or_default()
}

fn push(
    transcript: &mut Vec<TranscriptEntry>,
    speaker: Speaker,
    text: &str,
    at: &str,
    confidence: Option<f64>,
) {
    transcript.push(TranscriptEntry {
        speaker: match speaker {
            Speaker::Person => "caller",
            Speaker::Agent => "agent",
        }
        .to_owned(),
        text: text.to_owned(),
        at: at.to_owned(),
        confidence,
        interrupted: false,
    });
}

fn turns(transcript: &[TranscriptEntry]) -> Vec<Turn> {
    transcript
        .iter()
        .map(|t| {
            if t.speaker == "caller" {
                Turn::person(t.text.clone())
            } else {
                Turn::agent(t.text.clone())
            }
        })
        .collect()
}

/// The profile named by the input, else our number's, else the default profile.
async fn load_profile(ctx: &mut WorkflowContext<CallWorkflow>, input: &CallInput) -> AgentProfile {
    let found = match &input.profile {
        Some(name) => {
            ctx.execute_local_activity(
                AgentActivities::agent_profile_by_name,
                name.clone(),
                local_options(VOICE_PROFILE_BUDGET),
            )
            .await
        }
        None => {
            ctx.execute_local_activity(
                AgentActivities::agent_profile,
                input.ours.clone(),
                local_options(VOICE_PROFILE_BUDGET),
            )
            .await
        }
    };
    found.ok().flatten().unwrap_or_default()
}

/// The agent's turn on the current transcript, with its actions carried out.
async fn agent_turn(
    ctx: &mut WorkflowContext<CallWorkflow>,
    profile: &AgentProfile,
    at: &str,
) -> VoiceTurn {
    let (request, call_id, theirs, ours) = ctx.state(|s| {
        (
            AgentRequest {
                profile: profile.clone(),
                channel: AgentChannel::Voice,
                history: turns(&s.view.transcript),
                contact: BTreeMap::new(),
                memory: s.memory.clone(),
                earlier_person_turns: 0,
            },
            s.view.input.call_id.clone(),
            s.view.input.theirs.clone(),
            s.view.input.ours.clone(),
        )
    });
    let input = AgentTurnInput {
        conversation_id: call_id.clone(),
        theirs: theirs.clone(),
        request,
    };
    let reply = match ctx
        .execute_local_activity(
            AgentActivities::agent_reply,
            input,
            // Twilio waits 15 s for this turn: past the budget the caller hears the fallback
            // rather than an application error, and the transcript holds what was said.
            local_options(VOICE_REPLY_BUDGET),
        )
        .await
    {
        Ok(out) => out.reply,
        Err(e) => {
            tracing::warn!(error = %e, "agent turn failed on a call; saying the fallback");
            AgentReply {
                text: profile.fallback_reply.clone(),
                ..AgentReply::default()
            }
        }
    };
    let mut say = Vec::new();
    if !reply.text.trim().is_empty() {
        say.push(reply.text.clone());
    }
    let mut next = VoiceNext::Gather;
    for action in &reply.actions {
        match action {
            AgentAction::EndConversation { .. } => next = VoiceNext::Hangup,
            AgentAction::OptOut => {
                let stored = ctx
                    .execute_local_activity(
                        AgentActivities::opt_out,
                        OptOutInput {
                            phone: theirs.clone(),
                            channel: "voice".to_owned(),
                        },
                        local_options(VOICE_OPT_OUT_BUDGET),
                    )
                    .await
                    .is_ok();
                // The caller is waiting: a write that did not fit is done once the call ends.
                if !stored {
                    ctx.state_mut(|s| s.opt_out_pending = true);
                }
                next = VoiceNext::Hangup;
            }
            AgentAction::Transfer { .. } => match &profile.transfer_number {
                Some(number) => {
                    if say.is_empty() {
                        say.push(profile.transfer_message.clone());
                    }
                    next = VoiceNext::Dial {
                        number: number.clone(),
                        caller_id: ours.clone(),
                    };
                }
                None => {
                    // Nobody to transfer to: tell them someone will call back.
                    say.push("A member of our team will call you back.".to_owned());
                }
            },
            AgentAction::ScheduleCallback {
                delay_seconds,
                note,
            } => schedule_callback(ctx, profile, *delay_seconds, note.clone()).await,
        }
    }
    ctx.state_mut(|s| {
        // After a hang-up the lines were never heard: the transcript keeps what was said.
        let heard = s.final_status.is_none();
        for line in say.iter().filter(|_| heard) {
            push(&mut s.view.transcript, Speaker::Agent, line, at, None);
        }
        s.memory.extend(reply.remember.clone());
        s.usage.add(reply.usage);
        if reply.disposition.is_some() {
            s.view.disposition = reply.disposition;
        }
    });
    VoiceTurn {
        say,
        voice: profile.voice.clone(),
        language: profile.language.clone(),
        next,
    }
}

/// Starts the follow-up call the agent promised (a child that outlives the call).
async fn schedule_callback(
    ctx: &WorkflowContext<CallWorkflow>,
    profile: &AgentProfile,
    delay_seconds: u64,
    note: Option<String>,
) {
    let (call_id, ours, theirs, n) = ctx.state_mut(|s| {
        s.followups += 1;
        (
            s.view.input.call_id.clone(),
            s.view.input.ours.clone(),
            s.view.input.theirs.clone(),
            s.followups,
        )
    });
    let options = ChildWorkflowOptions::builder()
        .workflow_id(format!("followup-{call_id}-{n}"))
        .parent_close_policy(ParentClosePolicy::Abandon)
        .build();
    let _ = ctx
        .start_child_workflow(
            FollowUpWorkflow::run,
            FollowUpInput {
                conversation_id: call_id,
                channel: Channel::Sms,
                ours,
                theirs,
                delay_seconds,
                message: profile.callback_message.clone(),
                note,
                call: true,
            },
            options,
        )
        .await;
}

/// Carries out the actions of settled relay turns, oldest first. Nobody waits on them (the
/// session already streamed the reply), so an opt-out is an ordinary activity; a transfer or
/// an end decides what the `<Connect action>` URL answers.
async fn carry_out_relay_actions(ctx: &WorkflowContext<CallWorkflow>) {
    let profile = ctx.state(|s| s.profile.clone().unwrap_or_default());
    loop {
        let Some(actions) = ctx.state_mut(|s| {
            let next = s.relay_actions.pop_front();
            s.relay_busy = next.is_some();
            next
        }) else {
            return;
        };
        for action in actions {
            match action {
                AgentAction::EndConversation { .. } => ctx.state_mut(|s| {
                    if s.relay_next.is_none() {
                        s.relay_next = Some(VoiceNext::Hangup);
                    }
                }),
                AgentAction::OptOut => {
                    let theirs = ctx.state(|s| s.view.input.theirs.clone());
                    let done = ctx
                        .execute_activity(
                            AgentActivities::opt_out,
                            OptOutInput {
                                phone: theirs,
                                channel: "voice".to_owned(),
                            },
                            store_options(Duration::from_secs(30)),
                        )
                        .await
                        .is_ok();
                    ctx.state_mut(|s| {
                        s.opt_out_pending |= !done;
                        s.relay_next = Some(VoiceNext::Hangup);
                    });
                }
                // Without a number the session told the caller someone will call back.
                AgentAction::Transfer { .. } => {
                    if let Some(number) = profile.transfer_number.clone() {
                        ctx.state_mut(|s| {
                            s.relay_next = Some(VoiceNext::Dial {
                                number,
                                caller_id: s.view.input.ours.clone(),
                            });
                        });
                    }
                }
                AgentAction::ScheduleCallback {
                    delay_seconds,
                    note,
                } => schedule_callback(ctx, &profile, delay_seconds, note).await,
            }
        }
        ctx.state_mut(|s| s.relay_busy = false);
    }
}

/// The first thing to say on the call (see [`CallWorkflow::answer`]).
async fn answer_turn(
    ctx: &mut WorkflowContext<CallWorkflow>,
    input: AnswerInput,
) -> Result<VoiceTurn, Box<dyn Error + Send + Sync>> {
    ctx.wait_condition(|s| s.profile.is_some()).await?;
    let machine = input
        .answered_by
        .as_deref()
        .is_some_and(|a| a.starts_with("machine") || a == "fax");
    let voicemail = ctx.state_mut(|s| {
        s.view.call_sid = Some(input.call_sid.clone());
        s.view.status = "in-progress".to_owned();
        s.view.answered_by.clone_from(&input.answered_by);
        s.view.answered_at = Some(input.at.clone());
        if s.started_at.is_none() {
            s.started_at = Some(input.at.clone());
        }
        s.view.input.voicemail.clone()
    });
    let profile = ctx.state(|s| s.profile.clone().unwrap_or_default());
    if machine {
        return Ok(match voicemail {
            Some(text) => {
                ctx.state_mut(|s| {
                    s.view.outcome = Some("voicemail_left".to_owned());
                    push(
                        &mut s.view.transcript,
                        Speaker::Agent,
                        &text,
                        &input.at,
                        None,
                    );
                });
                VoiceTurn {
                    say: vec![text],
                    voice: profile.voice.clone(),
                    language: profile.language.clone(),
                    next: VoiceNext::Hangup,
                }
            }
            None => {
                ctx.state_mut(|s| s.view.outcome = Some("machine".to_owned()));
                VoiceTurn {
                    say: Vec::new(),
                    voice: None,
                    language: profile.language.clone(),
                    next: VoiceNext::Hangup,
                }
            }
        });
    }
    let mut turn = agent_turn(ctx, &profile, &input.at).await;
    if profile.voice_mode == VoiceMode::Relay && turn.next == VoiceNext::Gather {
        // The greeting becomes the session's welcome greeting; the rest streams.
        ctx.state_mut(|s| {
            s.relay_open = true;
            s.relay_sessions += 1;
            if !turn.say.is_empty() {
                s.relay_lines
                    .insert(String::new(), s.view.transcript.len().saturating_sub(1));
            }
        });
        turn.next = VoiceNext::Relay {
            settings: profile.relay.clone(),
        };
    }
    Ok(turn)
}

/// The answer to a `<Gather>` result (see [`CallWorkflow::gather`]).
async fn gather_turn(
    ctx: &mut WorkflowContext<CallWorkflow>,
    input: GatherInput,
) -> Result<VoiceTurn, Box<dyn Error + Send + Sync>> {
    ctx.wait_condition(|s| s.profile.is_some()).await?;
    let profile = ctx.state(|s| s.profile.clone().unwrap_or_default());
    let said = input
        .speech
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            input
                .digits
                .as_deref()
                .filter(|d| !d.is_empty())
                .map(|d| format!("(pressed {d})"))
        });
    let Some(text) = said else {
        // Silence: re-prompt, then end politely.
        let silences = ctx.state_mut(|s| {
            s.silences += 1;
            s.silences
        });
        let (line, next) = if silences > profile.max_silences {
            (profile.closing.clone(), VoiceNext::Hangup)
        } else {
            (profile.reprompt.clone(), VoiceNext::Gather)
        };
        ctx.state_mut(|s| {
            push(
                &mut s.view.transcript,
                Speaker::Agent,
                &line,
                &input.at,
                None,
            )
        });
        return Ok(VoiceTurn {
            say: vec![line],
            voice: profile.voice.clone(),
            language: profile.language.clone(),
            next,
        });
    };
    ctx.state_mut(|s| {
        s.silences = 0;
        push(
            &mut s.view.transcript,
            Speaker::Person,
            &text,
            &input.at,
            input.confidence,
        );
    });
    Ok(agent_turn(ctx, &profile, &input.at).await)
}

/// Numbers a turn before it goes out.
fn issue(ctx: &mut WorkflowContext<CallWorkflow>, turn: VoiceTurn) -> IssuedTurn {
    let number = ctx.state_mut(|s| {
        s.turn += 1;
        s.turn
    });
    IssuedTurn { turn, number }
}

/// Why [`wait_for_end`] woke.
enum Woke {
    /// The final status came (`true`) or the deadline passed (`false`).
    Ended(bool),
    /// The campaign was cancelled while the call rings.
    StopRinging,
    /// A relay turn brought actions.
    RelayActions,
}

/// Waits for the attempt's final status; a call that never reports one is reconciled with
/// Twilio (fetched, ended if still live).
async fn wait_for_end(ctx: &mut WorkflowContext<CallWorkflow>) {
    let ended = {
        let deadline = ctx.state(|s| s.view.input.status_deadline());
        let mut limit = pin!(ctx.timer(deadline));
        let mut cancel_sent = false;
        let ended = loop {
            // A stop while the call still rings cancels it (Twilio's `canceled` leaves a call
            // that has just been answered alone); then the final status is awaited as usual.
            let ringing_stopped = |s: &CallWorkflow| {
                s.stop && s.view.answered_at.is_none() && s.view.call_sid.is_some()
            };
            let woke = select! {
                _ = ctx.wait_condition(|s| s.final_status.is_some()) => Woke::Ended(true),
                _ = limit.as_mut() => Woke::Ended(false),
                _ = ctx.wait_condition(move |s| !cancel_sent && ringing_stopped(s)) => Woke::StopRinging,
                _ = ctx.wait_condition(|s| !s.relay_actions.is_empty()) => Woke::RelayActions,
            };
            match woke {
                Woke::Ended(ended) => break ended,
                Woke::RelayActions => carry_out_relay_actions(ctx).await,
                Woke::StopRinging => {
                    cancel_sent = true;
                    if let Some(sid) = ctx.state(|s| s.view.call_sid.clone()) {
                        let _ = ctx
                            .execute_activity(
                                VoiceActivities::cancel_ringing_call,
                                sid,
                                store_options(Duration::from_secs(30)),
                            )
                            .await;
                    }
                }
            }
        };
        if ended {
            limit.cancel();
        }
        ended
    };
    if ended {
        return;
    }
    let Some(sid) = ctx.state(|s| s.view.call_sid.clone()) else {
        ctx.state_mut(|s| {
            s.final_status = Some(CallStatusEvent {
                status: "failed".to_owned(),
                ..CallStatusEvent::default()
            })
        });
        return;
    };
    let options = store_options(Duration::from_secs(30));
    let mut snapshot = ctx
        .execute_activity(VoiceActivities::fetch_call, sid.clone(), options.clone())
        .await
        .ok();
    if snapshot
        .as_ref()
        .is_none_or(|s| !is_final_status(&s.status))
    {
        snapshot = ctx
            .execute_activity(VoiceActivities::end_call, sid.clone(), options)
            .await
            .ok();
    }
    let at = now(ctx.workflow_time());
    ctx.state_mut(|s| {
        if s.final_status.is_none() {
            let snap = snapshot.unwrap_or(voice_agent_activities::voice::CallSnapshot {
                status: "completed".to_owned(),
                duration_secs: None,
                answered_by: None,
            });
            s.duration_secs = snap.duration_secs;
            s.ended_at = Some(at.clone());
            s.view.status = if is_final_status(&snap.status) {
                snap.status
            } else {
                "completed".to_owned()
            };
            s.final_status = Some(CallStatusEvent {
                call_sid: sid,
                status: s.view.status.clone(),
                at,
                ..CallStatusEvent::default()
            });
        }
    });
}

/// Classifies the attempt, summarises it and writes its log.
async fn finish_attempt(ctx: &mut WorkflowContext<CallWorkflow>, log_id: &str) -> AttemptResult {
    let (status, mut outcome, has_person, profile) = ctx.state(|s| {
        let status = s
            .final_status
            .as_ref()
            .map_or_else(|| "completed".to_owned(), |f| f.status.clone());
        let machine = s
            .view
            .answered_by
            .as_deref()
            .is_some_and(|a| a.starts_with("machine") || a == "fax");
        let outcome = s
            .view
            .outcome
            .clone()
            .unwrap_or_else(|| match status.as_str() {
                "busy" => "busy".to_owned(),
                "no-answer" => "no_answer".to_owned(),
                "failed" => "failed".to_owned(),
                "canceled" => "canceled".to_owned(),
                _ if machine => "machine".to_owned(),
                _ if s.view.input.direction == "inbound" => "completed".to_owned(),
                _ => "human".to_owned(),
            });
        let has_person = s.view.transcript.iter().any(|t| t.speaker == "caller");
        (
            status,
            outcome,
            has_person,
            s.profile.clone().unwrap_or_default(),
        )
    });
    if outcome == "failed" && status == "completed" {
        outcome = "human".to_owned();
    }
    let mut summary = None;
    if has_person {
        let request = ctx.state(|s| AgentRequest {
            profile: profile.clone(),
            channel: AgentChannel::Voice,
            history: turns(&s.view.transcript),
            contact: BTreeMap::new(),
            memory: s.memory.clone(),
            earlier_person_turns: 0,
        });
        if let Ok(sum) = ctx
            .execute_activity(
                AgentActivities::agent_summary,
                SummaryInput {
                    conversation_id: log_id.to_owned(),
                    request,
                },
                call_summary_options(ctx.task_queue()),
            )
            .await
        {
            ctx.state_mut(|s| {
                if s.view.disposition.is_none() {
                    s.view.disposition = Some(sum.disposition);
                }
            });
            summary = Some(sum.summary);
        }
    }
    let record = ctx.state(|s| CallLogRecord {
        id: log_id.to_owned(),
        call_id: s.view.input.call_id.clone(),
        attempt: s.view.attempt,
        call_sid: s.view.call_sid.clone(),
        direction: s.view.input.direction.clone(),
        from: if s.view.input.direction == "inbound" {
            s.view.input.theirs.clone()
        } else {
            s.view.input.ours.clone()
        },
        to: if s.view.input.direction == "inbound" {
            s.view.input.ours.clone()
        } else {
            s.view.input.theirs.clone()
        },
        status: status.clone(),
        outcome: Some(outcome.clone()),
        answered_by: s.view.answered_by.clone(),
        started_at: s.started_at.clone().filter(|t| !t.is_empty()),
        answered_at: s.view.answered_at.clone(),
        ended_at: s.ended_at.clone().filter(|t| !t.is_empty()),
        duration_secs: s.duration_secs,
        transcript: s.view.transcript.clone(),
        disposition: s.view.disposition.map(|d| d.as_str().to_owned()),
        summary: summary.clone(),
        recording_url: s.recording_url.clone(),
        campaign_id: s.view.input.campaign_id.clone(),
        item_id: s.view.input.item_id.clone(),
    });
    let _ = ctx
        .execute_activity(
            VoiceActivities::save_call_log,
            record,
            store_options(Duration::from_secs(30)),
        )
        .await;
    ctx.state(|s| AttemptResult {
        attempt: s.view.attempt,
        call_sid: s.view.call_sid.clone(),
        status,
        outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Option<std::time::SystemTime> {
        Some(
            chrono::DateTime::parse_from_rfc3339(rfc3339)
                .unwrap()
                .with_timezone(&chrono::Utc)
                .into(),
        )
    }

    #[test]
    fn retries_wait_for_the_calling_window() {
        let window = CallWindow {
            start_minute: 9 * 60,
            end_minute: 17 * 60,
            time_zone: Some("America/New_York".to_owned()),
        };
        let hour = Duration::from_secs(3600);
        // 15:00 in New York: an hour later is still inside.
        assert_eq!(
            retry_delay(
                Some(&window),
                "+12125550100",
                at("2026-06-01T19:00:00Z"),
                hour,
                None
            ),
            Some(hour)
        );
        // 16:30 in New York: an hour later is outside; wait for 09:00 the next day.
        assert_eq!(
            retry_delay(
                Some(&window),
                "+12125550100",
                at("2026-06-01T20:30:00Z"),
                hour,
                None
            ),
            Some(Duration::from_secs((16 * 60 + 30) * 60))
        );
        // No window: the delay as asked.
        assert_eq!(
            retry_delay(None, "+12125550100", at("2026-06-01T20:30:00Z"), hour, None),
            Some(hour)
        );
    }

    #[test]
    fn any_time_limit_gives_a_deadline_without_overflow() {
        let input = |max| CallInput {
            ring_timeout_secs: u32::MAX,
            max_duration_secs: max,
            ..CallInput::default()
        };
        // u64::MAX seconds used to panic the workflow task on every retry.
        assert!(input(Some(u64::MAX)).status_deadline() >= MAX_CALL);
        assert_eq!(
            input(Some(u64::MAX)).status_deadline(),
            input(None).status_deadline()
        );
        let short = CallInput {
            ring_timeout_secs: 30,
            max_duration_secs: Some(60),
            ..CallInput::default()
        };
        assert_eq!(short.status_deadline(), Duration::from_secs(100));
    }

    #[test]
    fn no_retry_is_dialled_at_or_after_the_campaigns_end() {
        let hour = Duration::from_secs(3600);
        let ms = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_millis()
        };
        let now = at("2026-06-01T20:30:00Z");
        assert_eq!(
            retry_delay(
                None,
                "+12125550100",
                now,
                hour,
                Some(ms("2026-06-01T21:31:00Z"))
            ),
            Some(hour)
        );
        assert_eq!(
            retry_delay(
                None,
                "+12125550100",
                now,
                hour,
                Some(ms("2026-06-01T21:30:00Z"))
            ),
            None
        );
        // The window's next opening (09:00 in New York) is what must come before the end.
        let window = CallWindow {
            start_minute: 9 * 60,
            end_minute: 17 * 60,
            time_zone: Some("America/New_York".to_owned()),
        };
        assert_eq!(
            retry_delay(
                Some(&window),
                "+12125550100",
                now,
                hour,
                Some(ms("2026-06-02T06:00:00Z"))
            ),
            None
        );
    }
}
