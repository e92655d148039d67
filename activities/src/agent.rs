//! Agent activities: look up a number's profile, ask the agent for a turn, summarise, and
//! record what the agent did. The model call is the activity; the workflow keeps the history
//! and carries out the actions.

// `#[activities]` generates an undocumented public constant per activity.
#![allow(missing_docs)]

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::{info, warn};
use voice_agent_agent::{
    Agent, AgentChannel, AgentError, AgentProfile, AgentReply, AgentRequest, Summary, respond,
};
use voice_agent_domain::{mask_phone, mask_workflow_id};
use voice_agent_store::{AgentTurnRecord, ConversationCarry, MongoStore};

/// Failure type of an agent call that retrying cannot fix (a refused request).
pub const AGENT_FAILURE: &str = "AgentFailure";

/// Input of [`AgentActivities::agent_reply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTurnInput {
    /// Conversation or call id, for logs.
    pub conversation_id: String,
    /// Their number: the contact's variables are looked up by it.
    pub theirs: String,
    /// The request, without the contact's variables (filled in here).
    pub request: AgentRequest,
}

/// Output of [`AgentActivities::agent_reply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTurnOutput {
    /// The turn.
    pub reply: AgentReply,
    /// Which agent produced it.
    pub agent: String,
}

/// Input of [`AgentActivities::agent_summary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryInput {
    /// Conversation id (the `conversations` document).
    pub conversation_id: String,
    /// The conversation.
    pub request: AgentRequest,
}

/// Input of [`AgentActivities::opt_out`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptOutInput {
    /// The person's number.
    pub phone: String,
    /// Channel it was asked on.
    pub channel: String,
}

/// Input of [`AgentActivities::whatsapp_window_open`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowInput {
    /// Our number.
    pub ours: String,
    /// Their number.
    pub theirs: String,
}

/// The agent, with the store (which holds the profiles, see [`crate::profiles`]). Register
/// one instance per worker.
pub struct AgentActivities {
    agent: Arc<dyn Agent>,
    store: MongoStore,
}

impl AgentActivities {
    /// Activities over an agent implementation and the store.
    pub fn new(agent: Arc<dyn Agent>, store: MongoStore) -> Self {
        Self { agent, store }
    }
}

fn agent_failure(e: AgentError) -> ActivityError {
    if e.is_retryable() {
        anyhow::Error::new(e).context("agent call failed").into()
    } else {
        ActivityError::application(
            ApplicationFailure::builder(anyhow::anyhow!(e.to_string()))
                .type_name(AGENT_FAILURE.to_owned())
                .non_retryable(true)
                .build(),
        )
    }
}

#[activities]
impl AgentActivities {
    /// The current version of the profile answering `number`, or `None` when no agent is
    /// configured for it. Read from the store each time: a conversation or call that starts
    /// after an edit gets the edited profile.
    #[activity]
    pub async fn agent_profile(
        self: Arc<Self>,
        _ctx: ActivityContext,
        number: String,
    ) -> Result<Option<AgentProfile>, ActivityError> {
        Ok(crate::profiles::for_number(&self.store, &number).await?)
    }

    /// The current version of a profile by name (campaigns name theirs), or `None`.
    #[activity]
    pub async fn agent_profile_by_name(
        self: Arc<Self>,
        _ctx: ActivityContext,
        name: String,
    ) -> Result<Option<AgentProfile>, ActivityError> {
        Ok(crate::profiles::by_name(&self.store, &name).await?)
    }

    /// The agent's next turn, within the profile's limits. Safe to repeat: it writes nothing.
    #[activity]
    pub async fn agent_reply(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: AgentTurnInput,
    ) -> Result<AgentTurnOutput, ActivityError> {
        let mut request = input.request;
        // The contact's details make replies personal; without them the agent still answers.
        request.contact = match self.store.contact_variables(&input.theirs).await {
            Ok(vars) => vars,
            Err(e) => {
                warn!(conversation_id = %mask_workflow_id(&input.conversation_id), error = %e, "contact details unavailable for the agent");
                Default::default()
            }
        };
        let reply = respond(self.agent.as_ref(), &request).await.map_err(|e| {
            warn!(conversation_id = %mask_workflow_id(&input.conversation_id), error = %e, "agent turn failed");
            agent_failure(e)
        })?;
        // A call records the profile version it used here (a conversation does with its
        // turns); the log exists once the call rang or was answered.
        if request.channel == AgentChannel::Voice
            && let Err(e) = self
                .store
                .set_call_profile(
                    &input.conversation_id,
                    &request.profile.name,
                    request.profile.version,
                )
                .await
        {
            warn!(conversation_id = %mask_workflow_id(&input.conversation_id), error = %e, "the call's profile version was not recorded");
        }
        Ok(AgentTurnOutput {
            reply,
            agent: self.agent.name(),
        })
    }

    /// Summarises a conversation and stores the summary and disposition on it.
    #[activity]
    pub async fn agent_summary(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: SummaryInput,
    ) -> Result<Summary, ActivityError> {
        let summary = self
            .agent
            .summarize(&input.request)
            .await
            .map_err(agent_failure)?;
        self.store
            .set_conversation_summary(
                &input.conversation_id,
                &summary.summary,
                summary.disposition.as_str(),
                summary.usage.prompt_tokens,
                summary.usage.completion_tokens,
            )
            .await?;
        Ok(summary)
    }

    /// Stores what the conversation's next run starts from, when this one completes idle.
    #[activity]
    pub async fn save_conversation_carry(
        self: Arc<Self>,
        _ctx: ActivityContext,
        carry: ConversationCarry,
    ) -> Result<(), ActivityError> {
        self.store.set_conversation_carry(&carry).await?;
        Ok(())
    }

    /// What the conversation's previous run left for this one, if anything.
    #[activity]
    pub async fn load_conversation_carry(
        self: Arc<Self>,
        _ctx: ActivityContext,
        conversation_id: String,
    ) -> Result<Option<ConversationCarry>, ActivityError> {
        Ok(self.store.conversation_carry(&conversation_id).await?)
    }

    /// Records one agent turn on the conversation (once per turn id).
    #[activity]
    pub async fn record_agent_turn(
        self: Arc<Self>,
        _ctx: ActivityContext,
        turn: AgentTurnRecord,
    ) -> Result<(), ActivityError> {
        self.store.record_agent_turn(&turn).await?;
        Ok(())
    }

    /// Suppresses the person on every channel, as a STOP would.
    #[activity]
    pub async fn opt_out(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: OptOutInput,
    ) -> Result<(), ActivityError> {
        self.store
            .suppress(
                &input.phone,
                "AGENT",
                &input.channel,
                mongodb::bson::DateTime::now(),
            )
            .await?;
        info!(phone = %mask_phone(&input.phone), "opted out at the agent's request");
        Ok(())
    }

    /// Whether the person's WhatsApp session window with our number is open now.
    #[activity]
    pub async fn whatsapp_window_open(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: WindowInput,
    ) -> Result<bool, ActivityError> {
        let open = self
            .store
            .open_whatsapp_sessions(&input.ours, std::slice::from_ref(&input.theirs))
            .await?;
        Ok(open.contains(&input.theirs))
    }
}
