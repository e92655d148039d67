//! Voice activities: dial an outbound call exactly once per attempt, look up and end calls
//! (reconciliation after a crash), and write call logs.

// `#[activities]` generates an undocumented public constant per activity.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::{info, warn};
use voice_agent_domain::{mask_phone, mask_workflow_id};

use crate::deadline::{AttemptDeadline, too_late};
use crate::sender::{SenderLimits, take_slot};
use voice_agent_store::{CallLogDoc, MongoStore, NewCallAttempt, TranscriptEntry, item_status};
use voice_agent_twilio::client::{
    CallStatus, CreateCall, ListCalls, MachineDetection, TwilioClient, TwilioError, UpdateCall,
    UpdateCallStatus,
};

/// Failure type of a call Twilio refused for good (invalid number, unverified caller id, …).
pub const PERMANENT_CALL_FAILURE: &str = "PermanentCallFailure";

/// How far before the first dial request a reconciliation looks, for clock skew.
const RECONCILE_SKEW: Duration = Duration::from_secs(120);

/// Input of [`VoiceActivities::place_call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceCallInput {
    /// The attempt, recorded before dialling.
    pub attempt: NewCallAttempt,
    /// Ask Twilio for answering-machine detection (`DetectMessageEnd`).
    pub machine_detection: bool,
    /// Seconds to let it ring.
    pub ring_timeout_secs: u32,
    /// Record the call.
    pub record: bool,
    /// Twilio's `TimeLimit`, seconds.
    #[serde(default)]
    pub time_limit_secs: Option<u64>,
}

/// Output of [`VoiceActivities::place_call`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceCallOutput {
    /// Twilio's `CA…`; empty when the call was not placed.
    pub call_sid: String,
    /// The call was found already placed (a retry after a crash), not placed by this attempt.
    pub reconciled: bool,
    /// Not dialled on purpose, and why (the person opted out).
    #[serde(default)]
    pub not_dialled: Option<String>,
}

/// What Twilio says about a call now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSnapshot {
    /// Twilio's status (`in-progress`, `completed`, …).
    pub status: String,
    /// Seconds, once ended.
    pub duration_secs: Option<u64>,
    /// `AnsweredBy`, when detection ran.
    pub answered_by: Option<String>,
}

/// A finished call, as the workflow knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallLogRecord {
    /// `<call id>/<attempt>`.
    pub id: String,
    /// Call workflow id.
    pub call_id: String,
    /// Attempt.
    pub attempt: u32,
    /// Twilio's SID.
    pub call_sid: Option<String>,
    /// `inbound` / `outbound`.
    pub direction: String,
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Final Twilio status.
    pub status: String,
    /// Outcome.
    pub outcome: Option<String>,
    /// `AnsweredBy`.
    pub answered_by: Option<String>,
    /// RFC 3339 times.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub answered_at: Option<String>,
    /// RFC 3339.
    pub ended_at: Option<String>,
    /// Seconds.
    pub duration_secs: Option<u64>,
    /// Turns.
    pub transcript: Vec<TranscriptEntry>,
    /// Agent's disposition.
    pub disposition: Option<String>,
    /// Agent's summary.
    pub summary: Option<String>,
    /// Recording URL.
    pub recording_url: Option<String>,
    /// Campaign.
    pub campaign_id: Option<String>,
    /// Campaign item.
    pub item_id: Option<String>,
}

impl From<voice_agent_twilio::client::Call> for CallSnapshot {
    fn from(call: voice_agent_twilio::client::Call) -> Self {
        Self {
            status: status_name(call.status),
            duration_secs: call.duration.as_deref().and_then(|d| d.parse().ok()),
            answered_by: call.answered_by,
        }
    }
}

/// Dialling and call records. Register one instance per worker.
pub struct VoiceActivities {
    store: MongoStore,
    twilio: TwilioClient,
    public_base_url: url::Url,
    limits: SenderLimits,
}

impl VoiceActivities {
    /// Activities over the store, a Twilio client and the API's public base URL (where Twilio
    /// fetches TwiML and posts call status).
    pub fn new(store: MongoStore, twilio: TwilioClient, public_base_url: url::Url) -> Self {
        Self {
            store,
            twilio,
            public_base_url,
            limits: SenderLimits::unlimited(),
        }
    }

    /// Dials within the account's calls-per-second limit, shared with every other dialler.
    pub fn with_sender_limits(mut self, limits: SenderLimits) -> Self {
        self.limits = limits;
        self
    }

    async fn snapshot(&self, call_sid: &str) -> Result<CallSnapshot, ActivityError> {
        let call = self
            .twilio
            .fetch_call(call_sid)
            .await
            .map_err(|e| anyhow::Error::new(e).context("Twilio fetch call failed"))?;
        Ok(CallSnapshot::from(call))
    }

    fn url(&self, path: &str, pairs: &[(&str, &str)]) -> String {
        let mut url = self.public_base_url.clone();
        url.set_path(path);
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url.to_string()
    }
}

fn permanent(e: &TwilioError) -> ActivityError {
    let message = match e.code() {
        Some(code) => format!("Twilio error {code}: {e}"),
        None => e.to_string(),
    };
    ActivityError::application(
        ApplicationFailure::builder(anyhow::anyhow!(message))
            .type_name(PERMANENT_CALL_FAILURE.to_owned())
            .non_retryable(true)
            .build(),
    )
}

fn status_name(status: CallStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[activities]
impl VoiceActivities {
    /// Dials one attempt exactly once, however often it runs: the attempt is recorded first;
    /// a stored SID means it was placed; if an earlier request may have reached Twilio, the
    /// call list is searched for it before dialling again.
    #[activity]
    pub async fn place_call(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: PlaceCallInput,
    ) -> Result<PlaceCallOutput, ActivityError> {
        let deadline = AttemptDeadline::of(&ctx);
        let a = &input.attempt;
        let before = self.store.begin_dial(a).await?;
        if let Some(sid) = before.as_ref().and_then(|d| d.call_sid.clone()) {
            return Ok(PlaceCallOutput {
                call_sid: sid,
                reconciled: true,
                not_dialled: None,
            });
        }
        if let Some(started) = before.as_ref().and_then(|d| d.dial_started_at) {
            let since =
                chrono::DateTime::<chrono::Utc>::from(started.to_system_time()) - RECONCILE_SKEW;
            let page = self
                .twilio
                .list_calls(&ListCalls {
                    to: Some(a.to.clone()),
                    from: Some(a.from.clone()),
                    started_after: Some(
                        (since - chrono::Duration::days(1))
                            .format("%Y-%m-%d")
                            .to_string(),
                    ),
                    page_size: Some(100),
                })
                .await
                .map_err(|e| anyhow::anyhow!("reconciliation lookup failed: {e}"))?;
            for call in page.calls {
                let created = call
                    .date_created
                    .as_deref()
                    .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok());
                if created.is_none_or(|c| c < since) {
                    continue;
                }
                // A call another attempt already owns is not this one.
                if self.store.call_log_by_sid(&call.sid).await?.is_some() {
                    continue;
                }
                info!(call_id = %mask_workflow_id(&a.call_id), attempt = a.attempt, "dial reconciled: Twilio had already placed this call");
                self.store.record_call_sid(&a.id, &call.sid).await?;
                return Ok(PlaceCallOutput {
                    call_sid: call.sid,
                    reconciled: true,
                    not_dialled: None,
                });
            }
        }
        // Checked at the moment of dialling, on every path (campaigns, single calls,
        // callbacks): an opt-out on any channel wins.
        if self.store.is_suppressed(&a.to).await? {
            info!(call_id = %mask_workflow_id(&a.call_id), to = %mask_phone(&a.to), "not dialled: the person opted out");
            return Ok(PlaceCallOutput {
                call_sid: String::new(),
                reconciled: false,
                not_dialled: Some("opted out".to_owned()),
            });
        }
        let wf = a.call_id.as_str();
        let attempt = a.attempt.to_string();
        let params = CreateCall {
            to: a.to.clone(),
            from: a.from.clone(),
            url: Some(self.url("/twilio/voice/answer", &[("wf", wf)])),
            status_callback: Some(
                self.url("/twilio/voice/status", &[("wf", wf), ("attempt", &attempt)]),
            ),
            // Not `initiated` (this answer says as much) nor `answered` (the answer webhook
            // does): each callback is an inbox write and a workflow task, and those two cost a
            // fifth of a short call's Temporal work while telling the workflow nothing.
            status_callback_event: ["ringing", "completed"].map(str::to_owned).to_vec(),
            machine_detection: input
                .machine_detection
                .then_some(MachineDetection::DetectMessageEnd),
            timeout: Some(input.ring_timeout_secs),
            record: input.record.then_some(true),
            time_limit: input
                .time_limit_secs
                .map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
            ..CreateCall::default()
        };
        if let Some(sender) = self.limits.call_sender() {
            take_slot(&self.store, &sender, &deadline, self.twilio.timeout()).await?;
        }
        if !deadline.allows(self.twilio.timeout()) {
            return Err(too_late());
        }
        match self.twilio.create_call(&params).await {
            Ok(call) => {
                info!(call_id = %mask_workflow_id(&a.call_id), attempt = a.attempt, to = %mask_phone(&a.to), "call placed");
                self.store.record_call_sid(&a.id, &call.sid).await?;
                Ok(PlaceCallOutput {
                    call_sid: call.sid,
                    reconciled: false,
                    not_dialled: None,
                })
            }
            Err(e) if e.is_retryable() => {
                warn!(call_id = %mask_workflow_id(&a.call_id), error = %e, "dial failed, will retry");
                Err(anyhow::Error::new(e)
                    .context("Twilio create call failed")
                    .into())
            }
            Err(e) => Err(permanent(&e)),
        }
    }

    /// What Twilio says about a call now (reconciliation of a call we lost track of).
    #[activity]
    pub async fn fetch_call(
        self: Arc<Self>,
        _ctx: ActivityContext,
        call_sid: String,
    ) -> Result<CallSnapshot, ActivityError> {
        self.snapshot(&call_sid).await
    }

    /// Ends a call that should not be going on any more; a call already over is fine.
    #[activity]
    pub async fn end_call(
        self: Arc<Self>,
        _ctx: ActivityContext,
        call_sid: String,
    ) -> Result<CallSnapshot, ActivityError> {
        let update = UpdateCall {
            status: Some(UpdateCallStatus::Completed),
            ..UpdateCall::default()
        };
        match self.twilio.update_call(&call_sid, &update).await {
            Ok(call) => Ok(CallSnapshot::from(call)),
            Err(e) if e.is_retryable() => Err(anyhow::Error::new(e)
                .context("Twilio end call failed")
                .into()),
            // 21220 and friends: not in progress any more. Report what it is now.
            Err(_) => self.snapshot(&call_sid).await,
        }
    }

    /// Cancels a call that is still queued or ringing (its campaign was cancelled). Twilio's
    /// `canceled` leaves a call that was answered meanwhile alone, so nobody is cut off.
    #[activity]
    pub async fn cancel_ringing_call(
        self: Arc<Self>,
        _ctx: ActivityContext,
        call_sid: String,
    ) -> Result<(), ActivityError> {
        let update = UpdateCall {
            status: Some(UpdateCallStatus::Canceled),
            ..UpdateCall::default()
        };
        match self.twilio.update_call(&call_sid, &update).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_retryable() => Err(anyhow::Error::new(e)
                .context("Twilio cancel call failed")
                .into()),
            // Answered or over already: nothing to cancel.
            Err(_) => Ok(()),
        }
    }

    /// Sets a voice campaign item's final status from its call's outcome.
    #[activity]
    pub async fn finish_call_item(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: (String, String),
    ) -> Result<(), ActivityError> {
        let (item_id, outcome) = input;
        let status = match outcome.as_str() {
            "human" | "completed" => item_status::ANSWERED,
            "voicemail_left" => item_status::VOICEMAIL_LEFT,
            "machine" => item_status::MACHINE,
            "busy" => item_status::BUSY,
            "no_answer" => item_status::NO_ANSWER,
            "canceled" => item_status::CANCELLED,
            "opted_out" => item_status::SKIPPED,
            _ => item_status::FAILED,
        };
        self.store
            .finish_item(&item_id, status, None, &format!("call outcome: {outcome}"))
            .await?;
        Ok(())
    }

    /// Writes the call's log.
    #[activity]
    pub async fn save_call_log(
        self: Arc<Self>,
        _ctx: ActivityContext,
        r: CallLogRecord,
    ) -> Result<(), ActivityError> {
        let now = DateTime::now();
        self.store
            .save_call_log(&CallLogDoc {
                id: r.id,
                call_id: r.call_id,
                attempt: r.attempt,
                call_sid: r.call_sid,
                direction: r.direction,
                from: r.from,
                to: r.to,
                status: r.status,
                outcome: r.outcome,
                answered_by: r.answered_by,
                started_at: r.started_at,
                answered_at: r.answered_at,
                ended_at: r.ended_at,
                duration_secs: r
                    .duration_secs
                    .map(|d| i64::try_from(d).unwrap_or(i64::MAX)),
                transcript: r.transcript,
                disposition: r.disposition,
                summary: r.summary,
                recording_url: r.recording_url,
                campaign_id: r.campaign_id,
                profile: None,
                profile_version: None,
                item_id: r.item_id,
                dial_started_at: None,
                created_at: now,
                updated_at: now,
            })
            .await?;
        Ok(())
    }
}
