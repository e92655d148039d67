//! Agent profiles over HTTP (`/api/agent-profiles`): list, read with their versions, create,
//! and change (each change a new version), and the read-only settings the web app's Settings
//! page shows (`/api/settings`). Profiles live in MongoDB (see
//! `voice_agent_activities::profiles`); the agents file seeds them.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use temporalio_client::NamespacedClient;
use voice_agent_activities::profiles::{self, ProfileInvalid};
use voice_agent_agent::AgentProfile;
use voice_agent_store::{ProfileVersionDoc, SaveOutcome};

use crate::AppState;
use crate::auth::{Actor, Principal};
use crate::campaigns::{HttpError, rfc3339};
use crate::grpc::ApiError;

/// Versions returned with a profile; older ones page with `?before=`.
const VERSIONS_PER_PAGE: i64 = 20;

/// HTTP routes of agent profiles and settings.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/settings", get(get_settings))
        .route(
            "/api/agent-profiles",
            get(list_profiles).post(create_profile),
        )
        .route(
            "/api/agent-profiles/{name}",
            get(get_profile).put(update_profile),
        )
        .route("/api/agent-profiles/{name}/versions", get(profile_versions))
}

/// Everything a profile sets. Omitted fields take the defaults of the agents file
/// (`docs/agents.md`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileSettings {
    /// The model's system prompt (at most 20,000 characters).
    pub instructions: String,
    /// First line of a call.
    pub greeting: Option<String>,
    /// BCP 47 language.
    pub language: String,
    /// `<Say voice>` on calls, e.g. `Polly.Joanna`.
    pub voice: Option<String>,
    /// Facts the model may use (at most 100, each at most 1,000 characters).
    pub facts: Vec<String>,
    /// Person turns before `closing` (1-1000).
    pub max_turns: u32,
    /// Longest reply (20-4000).
    pub max_reply_chars: usize,
    /// Longest wait for a reply, seconds (1-120; at most 8 on calls).
    pub timeout_secs: u64,
    /// Sent when the agent fails.
    pub fallback_reply: String,
    /// Sent at `max_turns`.
    pub closing: String,
    /// Where a transfer on a call dials (E.164).
    pub transfer_number: Option<String>,
    /// Said before a transfer.
    pub transfer_message: String,
    /// Said after a silence on a call.
    pub reprompt: String,
    /// Silences before a call ends (0-10).
    pub max_silences: u32,
    /// Sent when a callback comes due.
    pub callback_message: String,
    /// Quiet time before a summary, seconds (10-604800).
    pub summary_after_idle_secs: u64,
    /// Agent turns per workflow run (10-1000).
    pub turns_per_run: u32,
    /// Silence before a conversation's run completes, seconds (60-2592000).
    pub idle_close_secs: u64,
    /// The scripted agent's rules (a rules file's text, at most 32 KiB); the built-in rules
    /// when empty.
    pub rules_toml: Option<String>,
    /// How calls speak: `gather` (turn by turn) or `relay` (Twilio ConversationRelay, streamed).
    pub voice_mode: ProfileVoiceMode,
    /// ConversationRelay's settings (used in `relay` mode).
    pub relay: RelayProfileSettings,
}

/// How a profile's calls speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileVoiceMode {
    /// Turn by turn: `<Gather>` in, `<Say>` out.
    #[default]
    Gather,
    /// Twilio ConversationRelay: streamed replies the caller can cut off.
    Relay,
}

impl From<voice_agent_agent::VoiceMode> for ProfileVoiceMode {
    fn from(m: voice_agent_agent::VoiceMode) -> Self {
        match m {
            voice_agent_agent::VoiceMode::Gather => Self::Gather,
            voice_agent_agent::VoiceMode::Relay => Self::Relay,
        }
    }
}

impl From<ProfileVoiceMode> for voice_agent_agent::VoiceMode {
    fn from(m: ProfileVoiceMode) -> Self {
        match m {
            ProfileVoiceMode::Gather => Self::Gather,
            ProfileVoiceMode::Relay => Self::Relay,
        }
    }
}

/// What `<ConversationRelay>` is told in `relay` mode.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RelayProfileSettings {
    /// `ttsProvider` (`ElevenLabs`, `Google`, `Amazon`); Twilio's default when empty.
    pub tts_provider: Option<String>,
    /// `transcriptionProvider` (`Deepgram`, `Google`).
    pub transcription_provider: Option<String>,
    /// `speechModel` of the transcription provider.
    pub speech_model: Option<String>,
    /// What may cut the agent off: `none`, `dtmf`, `speech` or `any`.
    pub interruptible: String,
    /// Likewise for the greeting.
    pub welcome_greeting_interruptible: String,
    /// Key presses reach the agent.
    pub dtmf_detection: bool,
}

impl Default for RelayProfileSettings {
    fn default() -> Self {
        Self::from(&voice_agent_agent::RelaySettings::default())
    }
}

impl From<&voice_agent_agent::RelaySettings> for RelayProfileSettings {
    fn from(r: &voice_agent_agent::RelaySettings) -> Self {
        Self {
            tts_provider: r.tts_provider.clone(),
            transcription_provider: r.transcription_provider.clone(),
            speech_model: r.speech_model.clone(),
            interruptible: r.interruptible.clone(),
            welcome_greeting_interruptible: r.welcome_greeting_interruptible.clone(),
            dtmf_detection: r.dtmf_detection,
        }
    }
}

impl RelayProfileSettings {
    fn into_settings(self) -> voice_agent_agent::RelaySettings {
        let some = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        voice_agent_agent::RelaySettings {
            tts_provider: some(self.tts_provider),
            transcription_provider: some(self.transcription_provider),
            speech_model: some(self.speech_model),
            interruptible: self.interruptible,
            welcome_greeting_interruptible: self.welcome_greeting_interruptible,
            dtmf_detection: self.dtmf_detection,
        }
    }
}

impl Default for ProfileSettings {
    fn default() -> Self {
        Self::from(&AgentProfile::default())
    }
}

impl From<&AgentProfile> for ProfileSettings {
    fn from(p: &AgentProfile) -> Self {
        Self {
            instructions: p.instructions.clone(),
            greeting: p.greeting.clone(),
            language: p.language.clone(),
            voice: p.voice.clone(),
            facts: p.facts.clone(),
            max_turns: p.max_turns,
            max_reply_chars: p.max_reply_chars,
            timeout_secs: p.timeout_secs,
            fallback_reply: p.fallback_reply.clone(),
            closing: p.closing.clone(),
            transfer_number: p.transfer_number.clone(),
            transfer_message: p.transfer_message.clone(),
            reprompt: p.reprompt.clone(),
            max_silences: p.max_silences,
            callback_message: p.callback_message.clone(),
            summary_after_idle_secs: p.summary_after_idle_secs,
            turns_per_run: p.turns_per_run,
            idle_close_secs: p.idle_close_secs,
            rules_toml: p.rules_toml.clone(),
            voice_mode: p.voice_mode.into(),
            relay: RelayProfileSettings::from(&p.relay),
        }
    }
}

impl ProfileSettings {
    fn into_profile(self, name: &str) -> AgentProfile {
        AgentProfile {
            name: name.to_owned(),
            instructions: self.instructions,
            greeting: self.greeting.filter(|g| !g.trim().is_empty()),
            language: self.language,
            voice: self.voice.filter(|v| !v.trim().is_empty()),
            facts: self.facts,
            max_turns: self.max_turns,
            max_reply_chars: self.max_reply_chars,
            timeout_secs: self.timeout_secs,
            fallback_reply: self.fallback_reply,
            closing: self.closing,
            transfer_number: self.transfer_number,
            transfer_message: self.transfer_message,
            reprompt: self.reprompt,
            max_silences: self.max_silences,
            callback_message: self.callback_message,
            summary_after_idle_secs: self.summary_after_idle_secs,
            turns_per_run: self.turns_per_run,
            idle_close_secs: self.idle_close_secs,
            rules: None,
            rules_toml: self.rules_toml,
            version: None,
            voice_mode: self.voice_mode.into(),
            relay: self.relay.into_settings(),
        }
    }
}

/// One version of a profile.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileView {
    name: String,
    /// From 1; each change adds one.
    version: i64,
    /// Our numbers (E.164) this profile answers: texts and calls to them get this agent.
    numbers: Vec<String>,
    settings: ProfileSettings,
    /// `file` (from the agents file) or `api` (edited here).
    source: String,
    /// Who made this version.
    created_by: String,
    created_at: String,
}

fn view(doc: &ProfileVersionDoc) -> Result<ProfileView, ApiError> {
    let profile = profiles::from_stored(doc).map_err(ApiError::Unavailable)?;
    Ok(ProfileView {
        name: doc.name.clone(),
        version: doc.version,
        numbers: doc.numbers.clone(),
        settings: ProfileSettings::from(&profile),
        source: doc.source.clone(),
        created_by: doc.created_by.clone(),
        created_at: rfc3339(doc.created_at),
    })
}

/// A profile with its latest versions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileDetail {
    profile: ProfileView,
    /// Newest first, at most 20; `GET .../versions?before=<oldest version here>` for more.
    versions: Vec<ProfileView>,
}

/// `POST /api/agent-profiles`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProfile {
    /// 1-64 lower-case letters, digits, `-` or `_`.
    name: String,
    /// Our numbers this profile answers (at most 50; each only on one profile).
    #[serde(default)]
    numbers: Vec<String>,
    #[serde(default)]
    settings: ProfileSettings,
}

/// `PUT /api/agent-profiles/{name}`: the whole profile as it should be.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChange {
    /// The version this change was made from: refused (409) if someone saved since.
    expected_version: i64,
    #[serde(default)]
    numbers: Vec<String>,
    settings: ProfileSettings,
}

/// `GET /api/agent-profiles/{name}/versions`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionsQuery {
    /// Only versions older than this one.
    before: Option<i64>,
    /// Page size, 1-100 (default 20).
    limit: Option<i64>,
}

fn invalid_profile(e: ProfileInvalid) -> ApiError {
    ApiError::InvalidArgument {
        field: e.field,
        reason: e.reason,
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Unavailable(e.into())
}

fn author(principal: &Principal) -> String {
    match &principal.actor {
        Actor::User { email, .. } => email.clone(),
        Actor::Key { name, prefix } => format!("API key {name} ({prefix})"),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidArgument {
        field: "body",
        reason: format!("not {what}: {e}"),
    })
}

/// Refuses numbers another profile answers already.
async fn check_numbers_free(
    state: &AppState,
    name: &str,
    numbers: &[String],
) -> Result<(), ApiError> {
    for n in numbers {
        if let Some(other) = state
            .store
            .profile_for_number(n)
            .await
            .map_err(unavailable)?
            .filter(|p| p.name != name)
        {
            return Err(ApiError::InvalidArgument {
                field: "numbers",
                reason: format!("{n} is answered by the profile {:?}", other.name),
            });
        }
    }
    Ok(())
}

async fn save(
    state: &AppState,
    principal: &Principal,
    mut profile: AgentProfile,
    mut numbers: Vec<String>,
    expected: Option<i64>,
) -> Result<ProfileView, ApiError> {
    profiles::validate(&mut profile, &mut numbers).map_err(invalid_profile)?;
    numbers.sort();
    numbers.dedup();
    check_numbers_free(state, &profile.name, &numbers).await?;
    let next = ProfileVersionDoc {
        id: String::new(),
        name: profile.name.clone(),
        version: 0,
        profile: profiles::to_stored(&profile).map_err(ApiError::Unavailable)?,
        numbers,
        source: "api".to_owned(),
        file_hash: None,
        created_by: author(principal),
        created_at: mongodb::bson::DateTime::now(),
    };
    match state
        .store
        .save_profile(next, expected)
        .await
        .map_err(unavailable)?
    {
        SaveOutcome::Saved(head) => view(&head),
        SaveOutcome::Conflict { current: None } => Err(ApiError::NotFound(format!(
            "agent profile {}",
            profile.name
        ))),
        SaveOutcome::Conflict {
            current: Some(v), ..
        } => Err(ApiError::FailedPrecondition(match expected {
            None => format!("an agent profile named {:?} exists already", profile.name),
            Some(_) => format!(
                "the profile was changed meanwhile (it is at version {v}): reload it and make your change again"
            ),
        })),
    }
}

#[utoipa::path(
    get,
    path = "/api/agent-profiles",
    tag = "settings",
    responses((status = 200, description = "Every profile's current version, by name (at most 200)", body = Vec<ProfileView>))
)]
async fn list_profiles(State(state): State<AppState>) -> Result<Json<Vec<ProfileView>>, HttpError> {
    let heads = state.store.list_profiles().await.map_err(unavailable)?;
    Ok(Json(heads.iter().map(view).collect::<Result<_, _>>()?))
}

#[utoipa::path(
    post,
    path = "/api/agent-profiles",
    tag = "settings",
    request_body = NewProfile,
    responses(
        (status = 201, description = "Created at version 1", body = ProfileView),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 409, description = "A profile with this name exists", body = crate::openapi::ErrorBody)
    )
)]
async fn create_profile(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ProfileView>), HttpError> {
    let req: NewProfile = parse(&body, "a profile")?;
    profiles::check_name(&req.name).map_err(invalid_profile)?;
    if state.store.count_profiles().await.map_err(unavailable)?
        >= u64::try_from(voice_agent_store::profiles::MAX_PROFILES).unwrap_or(u64::MAX)
    {
        return Err(ApiError::FailedPrecondition(format!(
            "at most {} profiles",
            voice_agent_store::profiles::MAX_PROFILES
        ))
        .into());
    }
    let profile = req.settings.into_profile(&req.name);
    let saved = save(&state, &principal, profile, req.numbers, None).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

#[utoipa::path(
    get,
    path = "/api/agent-profiles/{name}",
    tag = "settings",
    params(("name" = String, Path, description = "The profile's name")),
    responses(
        (status = 200, description = "The profile and its latest versions", body = ProfileDetail),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such profile", body = crate::openapi::ErrorBody)
    )
)]
async fn get_profile(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ProfileDetail>, HttpError> {
    profiles::check_name(&name).map_err(invalid_profile)?;
    let head = state
        .store
        .get_profile(&name)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("agent profile {name}")))?;
    let versions = state
        .store
        .profile_versions(&name, None, VERSIONS_PER_PAGE)
        .await
        .map_err(unavailable)?;
    Ok(Json(ProfileDetail {
        profile: view(&head)?,
        versions: versions.iter().map(view).collect::<Result<_, _>>()?,
    }))
}

#[utoipa::path(
    get,
    path = "/api/agent-profiles/{name}/versions",
    tag = "settings",
    params(("name" = String, Path, description = "The profile's name"), VersionsQuery),
    responses(
        (status = 200, description = "Versions, newest first", body = Vec<ProfileView>),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody)
    )
)]
async fn profile_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionsQuery>,
) -> Result<Json<Vec<ProfileView>>, HttpError> {
    profiles::check_name(&name).map_err(invalid_profile)?;
    let list = state
        .store
        .profile_versions(&name, q.before, q.limit.unwrap_or(VERSIONS_PER_PAGE))
        .await
        .map_err(unavailable)?;
    Ok(Json(list.iter().map(view).collect::<Result<_, _>>()?))
}

#[utoipa::path(
    put,
    path = "/api/agent-profiles/{name}",
    tag = "settings",
    params(("name" = String, Path, description = "The profile's name")),
    request_body = ProfileChange,
    responses(
        (status = 200, description = "Saved as a new version", body = ProfileView),
        (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such profile", body = crate::openapi::ErrorBody),
        (status = 409, description = "Changed by someone else since `expected_version`", body = crate::openapi::ErrorBody)
    )
)]
async fn update_profile(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ProfileView>, HttpError> {
    profiles::check_name(&name).map_err(invalid_profile)?;
    let req: ProfileChange = parse(&body, "a profile change")?;
    let profile = req.settings.into_profile(&name);
    Ok(Json(
        save(
            &state,
            &principal,
            profile,
            req.numbers,
            Some(req.expected_version),
        )
        .await?,
    ))
}

/// What the deployment is set to, read-only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    /// `simulator` when Twilio requests go anywhere but api.twilio.com, else `twilio`.
    twilio_mode: String,
    /// Where Twilio requests go.
    twilio_base_url: String,
    /// `TWILIO_FROM_NUMBER`: the default sender, if set.
    default_from: Option<String>,
    /// `TWILIO_MESSAGING_SERVICE_SID`, if set.
    messaging_service_sid: Option<String>,
    /// The Temporal namespace the api works in.
    temporal_namespace: String,
    /// `TEMPORAL_UI_URL`: where links to workflows go; absent when not set.
    temporal_ui_url: Option<String>,
    /// `PUBLIC_BASE_URL`: where Twilio reaches the webhooks.
    public_base_url: String,
    /// `TEMPORAL_TASK_QUEUE`.
    task_queue: String,
}

#[utoipa::path(
    get,
    path = "/api/settings",
    tag = "settings",
    responses((status = 200, description = "The deployment's settings (no secrets)", body = SettingsView))
)]
async fn get_settings(State(state): State<AppState>) -> Json<SettingsView> {
    let common = &state.settings.common;
    let base = &common.twilio.base_url;
    Json(SettingsView {
        twilio_mode: if base.host_str() == Some("api.twilio.com") {
            "twilio".to_owned()
        } else {
            "simulator".to_owned()
        },
        twilio_base_url: base.to_string(),
        default_from: common
            .twilio
            .from_number
            .as_ref()
            .map(|n| n.as_str().to_owned()),
        messaging_service_sid: common.twilio.messaging_service_sid.clone(),
        temporal_namespace: state.temporal.namespace(),
        temporal_ui_url: state
            .settings
            .temporal_ui_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned()),
        public_base_url: common.public_base_url.to_string(),
        task_queue: common.task_queue.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_a_profile_without_losing_a_field() {
        let profile = AgentProfile {
            name: "support".to_owned(),
            greeting: Some("Hi".to_owned()),
            voice: Some("Polly.Joanna".to_owned()),
            facts: vec!["open 9-5".to_owned()],
            transfer_number: Some("+15005550010".to_owned()),
            rules_toml: Some("fallback = \"x\"".to_owned()),
            max_turns: 7,
            voice_mode: voice_agent_agent::VoiceMode::Relay,
            relay: voice_agent_agent::RelaySettings {
                tts_provider: Some("ElevenLabs".to_owned()),
                interruptible: "speech".to_owned(),
                ..voice_agent_agent::RelaySettings::default()
            },
            ..AgentProfile::default()
        };
        let back = ProfileSettings::from(&profile).into_profile("support");
        assert_eq!(back, profile);
    }
}
