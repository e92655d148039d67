//! Campaigns over gRPC (`voiceagent.v1.CampaignService`) and HTTP JSON (`/api/campaigns`).
//! Both surfaces call the same operations; the API only validates, stores the campaign and
//! starts, signals or queries its workflow.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};
use temporalio_client::errors::WorkflowStartError;
use temporalio_client::{
    WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::search_attributes::SearchAttributes;
use tonic::{Request, Response as GrpcResponse, Status};
use voice_agent_activities::campaign::MIN_RATE_PER_SECOND;
use voice_agent_activities::template;
use voice_agent_domain::PhoneNumber;
use voice_agent_protos::v1 as pb;
use voice_agent_protos::v1::campaign_service_server::{CampaignService, CampaignServiceServer};
use voice_agent_store::{CampaignDoc, campaign_status};
use voice_agent_workflows::{
    CAMPAIGN_CHANNEL_ATTR, CAMPAIGN_ID_ATTR, CAMPAIGN_STATUS_ATTR, CampaignRun, CampaignWorkflow,
    VoiceCampaign,
};

use crate::AppState;
use crate::grpc::ApiError;

/// Workflow id of a campaign.
pub fn workflow_id(campaign_id: &str) -> String {
    format!("campaign-{campaign_id}")
}

/// What a manager sends to create a campaign (HTTP JSON; the gRPC message maps onto it).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewCampaign {
    /// Display name.
    pub name: String,
    /// `sms` (default) or `whatsapp`.
    pub channel: String,
    /// Sender number.
    pub from: String,
    /// Messaging Service SID.
    pub messaging_service_sid: String,
    /// Template with `{{variable}}` placeholders.
    pub template: String,
    /// Contact list.
    pub list_id: String,
    /// Earliest start, RFC 3339.
    pub start_at: Option<String>,
    /// Messages per second; 0 = unlimited, otherwise 0.001 to 10000 (voice: calls per second,
    /// at most 100).
    #[schema(minimum = 0, maximum = 10000)]
    pub rate_per_second: f64,
    /// Attempts on transient failures, 1-20; 0 = 5. Voice: dial attempts, 1-10; 0 = 3.
    #[schema(minimum = 0, maximum = 20)]
    pub max_attempts: i32,
    /// WhatsApp content template.
    pub content_sid: String,
    /// The content template's variables: placeholder number → text with `{{variable}}`s.
    pub content_variables: std::collections::BTreeMap<String, String>,
    /// Sending window opening, `HH:MM` in the recipient's local time.
    pub window_start: String,
    /// Sending window closing, `HH:MM`.
    pub window_end: String,
    /// End of the campaign, RFC 3339.
    pub end_at: Option<String>,
    /// Voice: agent profile on the calls.
    pub agent_profile: String,
    /// Voice: seconds between dial attempts, 1-604800 (0 = 3600).
    #[schema(minimum = 0, maximum = 604800)]
    pub retry_after_secs: i64,
    /// Voice: most calls in flight, 1-100 (0 = 5).
    #[schema(minimum = 0, maximum = 100)]
    pub max_in_flight: i32,
}

/// A campaign as the HTTP API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    id: String,
    name: String,
    channel: String,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    template: String,
    content_sid: Option<String>,
    content_variables: std::collections::BTreeMap<String, String>,
    window_start: Option<String>,
    window_end: Option<String>,
    end_at: Option<String>,
    list_id: String,
    start_at: Option<String>,
    rate_per_second: f64,
    max_attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_secs: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_in_flight: Option<i32>,
    status: String,
    total_items: i64,
    workflow_id: String,
    created_at: String,
}

impl From<&CampaignDoc> for CampaignView {
    fn from(c: &CampaignDoc) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            channel: c.channel.clone(),
            from: c.from.clone(),
            messaging_service_sid: c.messaging_service_sid.clone(),
            template: c.template.clone(),
            content_sid: c.content_sid.clone(),
            content_variables: c.content_variables.clone(),
            window_start: c.window_start_minute.map(hhmm),
            window_end: c.window_end_minute.map(hhmm),
            end_at: c.end_at.map(rfc3339),
            list_id: c.list_id.clone(),
            start_at: c.start_at.map(rfc3339),
            rate_per_second: c.rate_per_second,
            max_attempts: c.max_attempts,
            agent_profile: c.agent_profile.clone(),
            retry_after_secs: c.retry_after_secs,
            max_in_flight: c.max_in_flight,
            status: c.status.clone(),
            total_items: c.total_items,
            workflow_id: workflow_id(&c.id),
            created_at: rfc3339(c.created_at),
        }
    }
}

/// Progress as the HTTP API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProgressView {
    campaign_id: String,
    status: String,
    total: i64,
    counts: HashMap<String, i64>,
    rate_per_second: f64,
    rate_limit: f64,
    expected_finish: Option<String>,
    paused: bool,
    pass: u32,
}

impl ProgressView {
    /// The campaign has ended: its counts change no more (but for late delivery receipts).
    pub fn ended(&self) -> bool {
        matches!(
            self.status.as_str(),
            campaign_status::COMPLETED | campaign_status::CANCELLED
        )
    }
}

fn hhmm(minute: i32) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// Minutes after midnight of an `HH:MM` time.
fn parse_hhmm(field: &'static str, raw: &str) -> Result<i32, ApiError> {
    let bad = || invalid(field, format!("{raw:?} is not a time of day as HH:MM"));
    let (h, m) = raw.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..24).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

pub(crate) fn rfc3339(d: DateTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(d.to_system_time()).to_rfc3339()
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Unavailable(e.into())
}

/// The operations behind both surfaces.
#[derive(Clone)]
pub struct Campaigns {
    state: AppState,
}

impl Campaigns {
    /// Over the shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Validates and stores a new campaign in `draft`.
    pub async fn create(&self, req: NewCampaign) -> Result<CampaignDoc, ApiError> {
        let common = &self.state.settings.common;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(invalid("name", "1 to 200 characters"));
        }
        let channel = match req.channel.trim() {
            "" | "sms" => "sms",
            "whatsapp" => "whatsapp",
            "voice" => "voice",
            other => {
                return Err(invalid(
                    "channel",
                    format!("{other:?} is not sms, whatsapp or voice"),
                ));
            }
        };
        let voice = channel == "voice";
        // A voice campaign's template is its voicemail, which is optional.
        if req.template.trim().is_empty() && !voice {
            return Err(invalid("template", "must not be empty"));
        }
        if req.template.chars().count() > 1_600 {
            return Err(invalid("template", "at most 1600 characters"));
        }
        check_rate(req.rate_per_second)?;
        let max_attempts = match (voice, req.max_attempts) {
            (true, 0) => 3,
            (true, n @ 1..=10) => n,
            (true, _) => {
                return Err(invalid(
                    "max_attempts",
                    "between 1 and 10 dial attempts (0 = 3)",
                ));
            }
            (false, 0) => 5,
            (false, n @ 1..=20) => n,
            (false, _) => return Err(invalid("max_attempts", "between 1 and 20 (0 = 5)")),
        };
        let (agent_profile, retry_after_secs, max_in_flight) = if voice {
            let retry = match req.retry_after_secs {
                0 => 3_600,
                n @ 1..=604_800 => n,
                _ => {
                    return Err(invalid(
                        "retry_after_secs",
                        "between 1 and 604800 (0 = 3600)",
                    ));
                }
            };
            let in_flight = match req.max_in_flight {
                0 => 5,
                n @ 1..=100 => n,
                _ => return Err(invalid("max_in_flight", "between 1 and 100 (0 = 5)")),
            };
            if req.rate_per_second > 100.0 {
                return Err(invalid("rate_per_second", "at most 100 calls per second"));
            }
            let profile = self
                .state
                .agent_profile("agent_profile", &req.agent_profile)
                .await?;
            (profile, Some(retry), Some(in_flight))
        } else {
            (None, None, None)
        };
        let content_sid = match req.content_sid.trim() {
            "" => None,
            s if s.len() == 34
                && s.starts_with("HX")
                && s[2..].bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Some(s.to_owned())
            }
            _ => {
                return Err(invalid(
                    "content_sid",
                    "expected HX followed by 32 hex digits",
                ));
            }
        };
        let messaging_service_sid = match req.messaging_service_sid.trim() {
            "" => None,
            s if s.len() == 34 && s.starts_with("MG") => Some(s.to_owned()),
            _ => {
                return Err(invalid(
                    "messaging_service_sid",
                    "expected MG followed by 32 hex digits",
                ));
            }
        };
        let from = match req.from.trim() {
            "" if messaging_service_sid.is_some() => None,
            "" => match (
                &common.twilio.from_number,
                &common.twilio.messaging_service_sid,
            ) {
                (Some(f), _) => Some(f.as_str().to_owned()),
                (None, Some(_)) => None,
                (None, None) => {
                    return Err(ApiError::FailedPrecondition(
                        "no sender: pass `from` or `messaging_service_sid`, or configure TWILIO_FROM_NUMBER".to_owned(),
                    ));
                }
            },
            raw => Some(
                PhoneNumber::parse(raw, &common.default_region)
                    .map_err(|e| invalid("from", e.to_string()))?
                    .as_str()
                    .to_owned(),
            ),
        };
        if voice && from.is_none() {
            return Err(invalid("from", "a voice campaign needs a caller number"));
        }
        if voice && content_sid.is_some() {
            return Err(invalid("content_sid", "only for WhatsApp campaigns"));
        }
        if channel == "whatsapp" && from.is_none() {
            return Err(invalid(
                "from",
                "a WhatsApp campaign needs a WhatsApp sender number",
            ));
        }
        if req.content_variables.len() > 100
            || req
                .content_variables
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 50 || v.chars().count() > 1_000)
        {
            return Err(invalid(
                "content_variables",
                "at most 100 entries, keys 1-50 characters, values up to 1000",
            ));
        }
        let messaging_service_sid = messaging_service_sid.or_else(|| {
            from.is_none()
                .then(|| common.twilio.messaging_service_sid.clone())
                .flatten()
        });
        let start_at = match req.start_at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => {
                let t = chrono::DateTime::parse_from_rfc3339(raw)
                    .map_err(|e| invalid("start_at", format!("not an RFC 3339 time: {e}")))?;
                Some(DateTime::from_millis(t.timestamp_millis()))
            }
        };
        let (window_start_minute, window_end_minute) =
            match (req.window_start.trim(), req.window_end.trim()) {
                ("", "") => (None, None),
                ("", _) | (_, "") => {
                    return Err(invalid(
                        "window_start",
                        "give both window_start and window_end, or neither",
                    ));
                }
                (start, end) => {
                    let (start, end) = (
                        parse_hhmm("window_start", start)?,
                        parse_hhmm("window_end", end)?,
                    );
                    if start == end {
                        return Err(invalid("window_end", "the window must not be empty"));
                    }
                    (Some(start), Some(end))
                }
            };
        let end_at = match req.end_at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => {
                let t = chrono::DateTime::parse_from_rfc3339(raw)
                    .map_err(|e| invalid("end_at", format!("not an RFC 3339 time: {e}")))?;
                if t.timestamp_millis() <= chrono::Utc::now().timestamp_millis() {
                    return Err(invalid("end_at", "must be in the future"));
                }
                if start_at.is_some_and(|s| s.timestamp_millis() >= t.timestamp_millis()) {
                    return Err(invalid("end_at", "must be after start_at"));
                }
                Some(DateTime::from_millis(t.timestamp_millis()))
            }
        };
        let list_id = req.list_id.trim();
        if list_id.is_empty() {
            return Err(invalid("list_id", "required"));
        }
        if !self
            .state
            .store
            .contact_list_exists(list_id)
            .await
            .map_err(unavailable)?
        {
            return Err(ApiError::NotFound(format!("contact list {list_id}")));
        }
        // Template variables are checked at send time per contact; an unknown one renders empty.
        let _ = template::variables(&req.template);
        let now = DateTime::now();
        let doc = CampaignDoc {
            id: format!("cmp_{}", uuid::Uuid::new_v4().simple()),
            name: name.to_owned(),
            channel: channel.to_owned(),
            from,
            messaging_service_sid,
            template: req.template,
            content_sid,
            content_variables: req.content_variables,
            list_id: list_id.to_owned(),
            start_at,
            window_start_minute,
            window_end_minute,
            end_at,
            rate_per_second: req.rate_per_second,
            max_attempts,
            agent_profile,
            retry_after_secs,
            max_in_flight,
            status: campaign_status::DRAFT.to_owned(),
            total_items: 0,
            indexed_items: false,
            paged_items: false,
            items_seq: 0,
            status_counts: Default::default(),
            counts_at: None,
            counts_checked_at: None,
            signalled_at: None,
            created_at: now,
            updated_at: now,
        };
        self.state
            .store
            .insert_campaign(&doc)
            .await
            .map_err(unavailable)?;
        Ok(doc)
    }

    /// One campaign, or NotFound.
    pub async fn get(&self, id: &str) -> Result<CampaignDoc, ApiError> {
        if !(id.starts_with("cmp_") && id.len() == 36) {
            return Err(invalid(
                "campaign_id",
                "expected cmp_ followed by 32 hex digits",
            ));
        }
        self.state
            .store
            .get_campaign(id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ApiError::NotFound(format!("campaign {id}")))
    }

    /// Starts the workflow; a second start is a no-op.
    pub async fn start(&self, id: &str) -> Result<CampaignDoc, ApiError> {
        let c = self.get(id).await?;
        if c.status == campaign_status::CANCELLED {
            return Err(ApiError::FailedPrecondition(
                "the campaign was cancelled".to_owned(),
            ));
        }
        let mut run = CampaignRun::new(
            c.id.clone(),
            c.rate_per_second,
            c.start_at.map(|d| d.timestamp_millis()),
        );
        if c.channel == "voice" {
            run.voice = Some(VoiceCampaign {
                from: c.from.clone().unwrap_or_default(),
                profile: c.agent_profile.clone(),
                max_attempts: u32::try_from(c.max_attempts).unwrap_or(1).max(1),
                retry_after_secs: u64::try_from(c.retry_after_secs.unwrap_or(3_600))
                    .unwrap_or(3_600),
                max_in_flight: u32::try_from(c.max_in_flight.unwrap_or(5))
                    .unwrap_or(5)
                    .max(1),
                window_start_minute: c.window_start_minute.and_then(|m| u32::try_from(m).ok()),
                window_end_minute: c.window_end_minute.and_then(|m| u32::try_from(m).ok()),
                end_at_ms: c.end_at.map(|d| d.timestamp_millis()),
            });
        }
        let attributes = SearchAttributes::new([
            CAMPAIGN_ID_ATTR.value_set(c.id.clone()),
            CAMPAIGN_CHANNEL_ATTR.value_set(c.channel.clone()),
            CAMPAIGN_STATUS_ATTR.value_set(campaign_status::STARTING.to_owned()),
        ]);
        let options = |with_attributes: bool| {
            let builder = WorkflowStartOptions::new(
                self.state.settings.common.task_queue.clone(),
                workflow_id(&c.id),
            )
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate);
            if with_attributes {
                builder.search_attributes(attributes.clone()).build()
            } else {
                builder.build()
            }
        };
        let mut started = self
            .state
            .temporal
            .start_workflow(CampaignWorkflow::run, run.clone(), options(true))
            .await;
        // A server without the custom search attributes registered refuses them: start anyway,
        // and say how to register them.
        if let Err(WorkflowStartError::Rpc(status)) = &started
            && status.code() == tonic::Code::InvalidArgument
            && status
                .message()
                .to_ascii_lowercase()
                .contains("search attribute")
        {
            tracing::warn!(
                "Temporal has no CampaignId/CampaignChannel/CampaignStatus search attributes; starting without them (see README: temporal operator search-attribute create)"
            );
            started = self
                .state
                .temporal
                .start_workflow(CampaignWorkflow::run, run, options(false))
                .await;
        }
        match started {
            Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => {}
            Err(e) => return Err(unavailable(e)),
        }
        self.state
            .store
            .set_campaign_status(&c.id, campaign_status::STARTING, &[campaign_status::DRAFT])
            .await
            .map_err(unavailable)?;
        self.get(id).await
    }

    async fn signal(&self, id: &str, what: Signal) -> Result<CampaignDoc, ApiError> {
        let c = self.get(id).await?;
        if c.status == campaign_status::DRAFT {
            return Err(ApiError::FailedPrecondition(
                "the campaign has not been started".to_owned(),
            ));
        }
        let handle = self
            .state
            .temporal
            .get_workflow_handle::<CampaignWorkflow>(workflow_id(&c.id));
        let opts = WorkflowSignalOptions::default();
        let sent = match what {
            Signal::Pause => handle.signal(CampaignWorkflow::pause, (), opts).await,
            Signal::Resume => handle.signal(CampaignWorkflow::resume, (), opts).await,
            Signal::Cancel => handle.signal(CampaignWorkflow::cancel, (), opts).await,
            Signal::Rate(r) => {
                self.state
                    .store
                    .set_campaign_rate(&c.id, r)
                    .await
                    .map_err(unavailable)?;
                handle.signal(CampaignWorkflow::set_rate, r, opts).await
            }
        };
        if sent.is_ok() {
            // Progress reads, on every replica, see the signal from the next one on.
            self.state.campaign_runs.forget(&c.id);
            if let Err(e) = self.state.store.set_campaign_signalled(&c.id).await {
                tracing::warn!(error = %e, "could not record a campaign's signal: other replicas may show its state from before it for a second");
            }
        }
        if let Err(e) = sent {
            // A finished workflow cannot be signalled: report the campaign as it is.
            let c = self.get(id).await?;
            if matches!(
                c.status.as_str(),
                campaign_status::COMPLETED | campaign_status::CANCELLED
            ) {
                return Err(ApiError::FailedPrecondition(format!(
                    "the campaign is {}",
                    c.status
                )));
            }
            return Err(unavailable(e));
        }
        self.get(id).await
    }

    /// Counts from the campaign's counters in MongoDB (one document read, whatever the
    /// campaign's size), the rest from the workflow's state while it runs, as last queried
    /// (refreshed in the background once it is a second old: see [`crate::campaign_runs`]).
    pub async fn progress(&self, id: &str) -> Result<ProgressView, ApiError> {
        let c = self.get(id).await?;
        let counts = self
            .state
            .store
            .progress_counts(&c)
            .await
            .map_err(unavailable)?;
        // A finished campaign's workflow is out of the worker's cache: a query would replay its
        // whole run on a worker (thousands of events) for a rate, a pass and a pause that no
        // longer mean anything, every second a page shows it.
        let finished = matches!(
            c.status.as_str(),
            campaign_status::COMPLETED | campaign_status::CANCELLED
        );
        let run = if c.status == campaign_status::DRAFT || finished {
            self.state.campaign_runs.forget(&c.id);
            None
        } else {
            let handle = self
                .state
                .temporal
                .get_workflow_handle::<CampaignWorkflow>(workflow_id(&c.id));
            let query = || async move {
                handle
                    .query(
                        CampaignWorkflow::progress,
                        (),
                        WorkflowQueryOptions::default(),
                    )
                    .await
                    .inspect_err(|e| tracing::debug!(error = %e, "campaign progress query failed"))
                    .ok()
                    .map(|r| RunState::from(&r))
            };
            let signalled_at = c.signalled_at.map(|t| t.timestamp_millis());
            self.state
                .campaign_runs
                .read(&c.id, signalled_at, query)
                .await
        };
        let done: i64 = counts
            .iter()
            .filter(|(s, _)| !matches!(s.as_str(), "pending" | "sending"))
            .map(|(_, n)| n)
            .sum();
        let now_ms = chrono::Utc::now().timestamp_millis();
        let measured = run
            .as_ref()
            .and_then(|r| r.sending_started_ms)
            .map(|start| (now_ms - start).max(1) as f64 / 1000.0)
            .map(|secs| done as f64 / secs)
            .unwrap_or_default();
        let remaining = c.total_items - done;
        let expected_finish = (measured > 0.0 && remaining > 0).then(|| {
            let ms = (remaining as f64 / measured * 1000.0) as i64;
            chrono::DateTime::from_timestamp_millis(now_ms + ms)
                .unwrap_or_default()
                .to_rfc3339()
        });
        Ok(ProgressView {
            campaign_id: c.id.clone(),
            status: c.status.clone(),
            total: c.total_items,
            counts: counts.into_iter().collect(),
            rate_per_second: measured,
            rate_limit: run
                .as_ref()
                .map_or(c.rate_per_second, |r| r.rate_per_second),
            expected_finish,
            paused: run.as_ref().is_some_and(|r| r.paused),
            pass: run.as_ref().map_or(0, |r| r.pass),
        })
    }
}

/// What a progress view shows from a running campaign's workflow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunState {
    rate_per_second: f64,
    paused: bool,
    pass: u32,
    sending_started_ms: Option<i64>,
}

impl From<&CampaignRun> for RunState {
    fn from(r: &CampaignRun) -> Self {
        Self {
            rate_per_second: r.rate_per_second,
            paused: r.paused,
            pass: r.pass,
            sending_started_ms: r.sending_started_ms,
        }
    }
}

enum Signal {
    Pause,
    Resume,
    Cancel,
    Rate(f64),
}

// ---- HTTP ----------------------------------------------------------------------------------

/// HTTP routes of campaigns.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/campaigns", post(http_create).get(http_list))
        .route("/api/campaigns/{id}", get(http_get))
        .route("/api/campaigns/{id}/start", post(http_start))
        .route("/api/campaigns/{id}/pause", post(http_pause))
        .route("/api/campaigns/{id}/resume", post(http_resume))
        .route("/api/campaigns/{id}/cancel", post(http_cancel))
        .route("/api/campaigns/{id}/rate", put(http_rate))
        .route("/api/campaigns/{id}/progress", get(http_progress))
}

/// [`ApiError`] as an HTTP JSON answer.
pub struct HttpError(ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ApiError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::FailedPrecondition(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(e) => {
                tracing::warn!(error = %format!("{e:#}"), "request failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let message = match &self.0 {
            ApiError::Unavailable(_) => "a dependency is unavailable; try again".to_owned(),
            other => other.to_string(),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

type HttpResult<T> = Result<Json<T>, HttpError>;

#[utoipa::path(
    post,
    path = "/api/campaigns",
    tag = "campaigns",
    request_body = NewCampaign,
    responses(
        (status = 201, description = "Created as a draft", body = CampaignView),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody)
    )
)]
async fn http_create(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CampaignView>), HttpError> {
    let req: NewCampaign = serde_json::from_slice(&body)
        .map_err(|e| invalid("body", format!("not a campaign: {e}")))?;
    let c = Campaigns::new(state).create(req).await?;
    Ok((StatusCode::CREATED, Json(CampaignView::from(&c))))
}

/// `GET /api/campaigns`: a page, newest first.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CampaignListQuery {
    /// Page size, 1-200 (default 100).
    limit: Option<i64>,
    /// Cursor: the `created_at` of the last campaign of the previous page (with `before_id`).
    before_created_at: Option<String>,
    /// Cursor: the `id` of the last campaign of the previous page.
    before_id: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/campaigns",
    tag = "campaigns",
    params(CampaignListQuery),
    responses(
        (status = 200, description = "Campaigns newest first; a full page may have more after its last one", body = Vec<CampaignView>),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody)
    )
)]
async fn http_list(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<CampaignListQuery>,
) -> HttpResult<Vec<CampaignView>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit", "between 1 and 200").into());
    }
    let before = match (q.before_created_at.as_deref(), q.before_id) {
        (None, None) => None,
        (Some(at), Some(id)) => Some((
            DateTime::parse_rfc3339_str(at).map_err(|_| {
                invalid(
                    "before_created_at",
                    "an RFC 3339 time (a campaign's created_at)",
                )
            })?,
            id,
        )),
        _ => {
            return Err(
                invalid("before_id", "give before_created_at and before_id together").into(),
            );
        }
    };
    let list = state
        .store
        .page_campaigns(before, limit)
        .await
        .map_err(unavailable)?;
    Ok(Json(list.iter().map(CampaignView::from).collect()))
}

#[utoipa::path(
    get,
    path = "/api/campaigns/{id}",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign id")),
    responses((status = 200, description = "The campaign", body = CampaignView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody))
)]
async fn http_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> HttpResult<CampaignView> {
    Ok(Json(CampaignView::from(
        &Campaigns::new(state).get(&id).await?,
    )))
}

#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/start",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign id")),
    responses((status = 200, description = "Started (or already running)", body = CampaignView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody), (status = 409, description = "Not in a state that can start", body = crate::openapi::ErrorBody))
)]
async fn http_start(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> HttpResult<CampaignView> {
    Ok(Json(CampaignView::from(
        &Campaigns::new(state).start(&id).await?,
    )))
}

#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/pause",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign id")),
    responses((status = 200, description = "Paused", body = CampaignView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody), (status = 409, description = "Not running", body = crate::openapi::ErrorBody))
)]
async fn http_pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> HttpResult<CampaignView> {
    Ok(Json(CampaignView::from(
        &Campaigns::new(state).signal(&id, Signal::Pause).await?,
    )))
}

#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/resume",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign id")),
    responses((status = 200, description = "Resumed", body = CampaignView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody), (status = 409, description = "Not running", body = crate::openapi::ErrorBody))
)]
async fn http_resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> HttpResult<CampaignView> {
    Ok(Json(CampaignView::from(
        &Campaigns::new(state).signal(&id, Signal::Resume).await?,
    )))
}

#[utoipa::path(
    post,
    path = "/api/campaigns/{id}/cancel",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign id")),
    responses((status = 200, description = "Cancelled: nothing more is sent", body = CampaignView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody), (status = 409, description = "Not running", body = crate::openapi::ErrorBody))
)]
async fn http_cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> HttpResult<CampaignView> {
    Ok(Json(CampaignView::from(
        &Campaigns::new(state).signal(&id, Signal::Cancel).await?,
    )))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateBody {
    /// 0 = as fast as Twilio allows, otherwise 0.001 to 10000 per second.
    #[schema(minimum = 0, maximum = 10000)]
    rate_per_second: f64,
}

#[utoipa::path(
    put,
    path = "/api/campaigns/{id}/rate",
    tag = "campaigns",
    request_body = RateBody,
    params(("id" = String, Path, description = "The campaign id")),
    responses((status = 200, description = "The new rate applies from the next send", body = CampaignView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody), (status = 409, description = "Not running", body = crate::openapi::ErrorBody))
)]
async fn http_rate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> HttpResult<CampaignView> {
    let req: RateBody = serde_json::from_slice(&body).map_err(|e| {
        invalid(
            "body",
            format!("expected {{\"rate_per_second\": number}}: {e}"),
        )
    })?;
    check_rate(req.rate_per_second)?;
    Ok(Json(CampaignView::from(
        &Campaigns::new(state)
            .signal(&id, Signal::Rate(req.rate_per_second))
            .await?,
    )))
}

#[utoipa::path(
    get,
    path = "/api/campaigns/{id}/progress",
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign id")),
    responses((status = 200, description = "Counts by item status, rate and expected finish; one document read whatever the campaign size", body = ProgressView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such campaign", body = crate::openapi::ErrorBody))
)]
async fn http_progress(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> HttpResult<ProgressView> {
    Ok(Json(Campaigns::new(state).progress(&id).await?))
}

/// 0 (as fast as allowed) or between one message in 1,000 s and 10,000 a second: a slower
/// rate would pace sends further apart than a campaign's timers are meant to wait.
fn check_rate(r: f64) -> Result<(), ApiError> {
    if r == 0.0 || (r.is_finite() && (MIN_RATE_PER_SECOND..=10_000.0).contains(&r)) {
        Ok(())
    } else {
        Err(invalid(
            "rate_per_second",
            "0 (unlimited) or between 0.001 and 10000",
        ))
    }
}

// ---- gRPC ----------------------------------------------------------------------------------

/// The gRPC service.
pub fn grpc_service(state: AppState) -> CampaignServiceServer<Campaigns> {
    CampaignServiceServer::new(Campaigns::new(state))
}

fn ts(d: DateTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(d.to_system_time())
}

fn to_proto(c: &CampaignDoc) -> pb::Campaign {
    pb::Campaign {
        id: c.id.clone(),
        name: c.name.clone(),
        channel: c.channel.clone(),
        from: c.from.clone().unwrap_or_default(),
        messaging_service_sid: c.messaging_service_sid.clone().unwrap_or_default(),
        template: c.template.clone(),
        list_id: c.list_id.clone(),
        start_at: c.start_at.map(ts),
        rate_per_second: c.rate_per_second,
        max_attempts: c.max_attempts,
        status: c.status.clone(),
        total_items: c.total_items,
        workflow_id: workflow_id(&c.id),
        created_at: Some(ts(c.created_at)),
        content_sid: c.content_sid.clone().unwrap_or_default(),
        content_variables: c.content_variables.clone().into_iter().collect(),
        window_start: c.window_start_minute.map(hhmm).unwrap_or_default(),
        window_end: c.window_end_minute.map(hhmm).unwrap_or_default(),
        end_at: c.end_at.map(ts),
    }
}

#[tonic::async_trait]
impl CampaignService for Campaigns {
    async fn create_campaign(
        &self,
        request: Request<pb::CreateCampaignRequest>,
    ) -> Result<GrpcResponse<pb::Campaign>, Status> {
        let r = request.into_inner();
        let start_at = r.start_at.map(|t| {
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .unwrap_or_default()
                .to_rfc3339()
        });
        let c = self
            .create(NewCampaign {
                name: r.name,
                channel: r.channel,
                from: r.from,
                messaging_service_sid: r.messaging_service_sid,
                template: r.template,
                list_id: r.list_id,
                start_at,
                rate_per_second: r.rate_per_second,
                max_attempts: r.max_attempts,
                content_sid: r.content_sid,
                content_variables: r.content_variables.into_iter().collect(),
                window_start: r.window_start,
                window_end: r.window_end,
                end_at: r.end_at.map(|t| {
                    chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                        .unwrap_or_default()
                        .to_rfc3339()
                }),
                agent_profile: r.agent_profile,
                retry_after_secs: r.retry_after_secs,
                max_in_flight: r.max_in_flight,
            })
            .await?;
        Ok(GrpcResponse::new(to_proto(&c)))
    }

    async fn get_campaign(
        &self,
        request: Request<pb::CampaignRef>,
    ) -> Result<GrpcResponse<pb::Campaign>, Status> {
        Ok(GrpcResponse::new(to_proto(
            &self.get(&request.into_inner().campaign_id).await?,
        )))
    }

    async fn list_campaigns(
        &self,
        request: Request<pb::ListCampaignsRequest>,
    ) -> Result<GrpcResponse<pb::ListCampaignsResponse>, Status> {
        let size = match request.into_inner().page_size {
            0 => 50,
            n @ 1..=500 => i64::from(n),
            _ => return Err(invalid("page_size", "between 1 and 500").into()),
        };
        let list = self
            .state
            .store
            .list_campaigns(size)
            .await
            .map_err(unavailable)?;
        Ok(GrpcResponse::new(pb::ListCampaignsResponse {
            campaigns: list.iter().map(to_proto).collect(),
        }))
    }

    async fn start_campaign(
        &self,
        request: Request<pb::CampaignRef>,
    ) -> Result<GrpcResponse<pb::Campaign>, Status> {
        Ok(GrpcResponse::new(to_proto(
            &self.start(&request.into_inner().campaign_id).await?,
        )))
    }

    async fn pause_campaign(
        &self,
        request: Request<pb::CampaignRef>,
    ) -> Result<GrpcResponse<pb::Campaign>, Status> {
        let c = self
            .signal(&request.into_inner().campaign_id, Signal::Pause)
            .await?;
        Ok(GrpcResponse::new(to_proto(&c)))
    }

    async fn resume_campaign(
        &self,
        request: Request<pb::CampaignRef>,
    ) -> Result<GrpcResponse<pb::Campaign>, Status> {
        let c = self
            .signal(&request.into_inner().campaign_id, Signal::Resume)
            .await?;
        Ok(GrpcResponse::new(to_proto(&c)))
    }

    async fn cancel_campaign(
        &self,
        request: Request<pb::CampaignRef>,
    ) -> Result<GrpcResponse<pb::Campaign>, Status> {
        let c = self
            .signal(&request.into_inner().campaign_id, Signal::Cancel)
            .await?;
        Ok(GrpcResponse::new(to_proto(&c)))
    }

    async fn set_campaign_rate(
        &self,
        request: Request<pb::SetCampaignRateRequest>,
    ) -> Result<GrpcResponse<pb::Campaign>, Status> {
        let r = request.into_inner();
        check_rate(r.rate_per_second)?;
        let c = self
            .signal(&r.campaign_id, Signal::Rate(r.rate_per_second))
            .await?;
        Ok(GrpcResponse::new(to_proto(&c)))
    }

    async fn get_campaign_progress(
        &self,
        request: Request<pb::CampaignRef>,
    ) -> Result<GrpcResponse<pb::CampaignProgress>, Status> {
        let p = self.progress(&request.into_inner().campaign_id).await?;
        Ok(GrpcResponse::new(pb::CampaignProgress {
            campaign_id: p.campaign_id,
            status: p.status,
            total: p.total,
            counts: p.counts,
            rate_per_second: p.rate_per_second,
            rate_limit: p.rate_limit,
            expected_finish: p.expected_finish.and_then(|t| {
                chrono::DateTime::parse_from_rfc3339(&t)
                    .ok()
                    .map(|t| prost_types::Timestamp {
                        seconds: t.timestamp(),
                        nanos: 0,
                    })
            }),
            paused: p.paused,
            pass: p.pass,
        }))
    }
}
