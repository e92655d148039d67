//! A callback the agent promised: wait, then contact the person again.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ChildWorkflowOptions, ParentClosePolicy, WorkflowContext, WorkflowResult};
use voice_agent_activities::agent::{AgentActivities, WindowInput};
use voice_agent_activities::messaging::{MessagingActivities, SendMessageInput};
use voice_agent_domain::{Channel, MessageId};

use crate::call::{CallInput, CallWorkflow};
use crate::options::reply_send_options;

/// Input of [`FollowUpWorkflow`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpInput {
    /// The conversation that asked for it.
    pub conversation_id: String,
    /// Channel to follow up on.
    pub channel: Channel,
    /// Our number.
    pub ours: String,
    /// Their number.
    pub theirs: String,
    /// How long to wait.
    pub delay_seconds: u64,
    /// What to send.
    pub message: String,
    /// Why, for the record.
    pub note: Option<String>,
    /// Call back (an outbound call with the agent) instead of sending `message`.
    #[serde(default)]
    pub call: bool,
}

/// How a follow-up ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FollowUpOutcome {
    /// Sent; our message id.
    Sent {
        /// Our message id.
        message_id: String,
    },
    /// Called back; the call workflow's id.
    Called {
        /// The call workflow id.
        call_id: String,
    },
    /// Not sent, and why.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// Waits on a durable timer (days if need be, surviving any restart), then calls back (an
/// outbound [`CallWorkflow`]) or sends the follow-up through the idempotent send path: an opted-out person is not contacted, and on
/// WhatsApp a closed session window skips the free-form message (it would fail with 63016).
#[workflow]
#[derive(Default)]
pub struct FollowUpWorkflow;

#[workflow_methods]
impl FollowUpWorkflow {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: FollowUpInput,
    ) -> WorkflowResult<FollowUpOutcome> {
        ctx.timer(Duration::from_secs(input.delay_seconds)).await;
        if input.call {
            let call_id = format!("call-{}", ctx.workflow_id());
            let options = ChildWorkflowOptions::builder()
                .workflow_id(call_id.clone())
                .parent_close_policy(ParentClosePolicy::Abandon)
                .build();
            let started = ctx
                .start_child_workflow(
                    CallWorkflow::run,
                    CallInput {
                        call_id: call_id.clone(),
                        direction: "outbound".to_owned(),
                        ours: input.ours,
                        theirs: input.theirs,
                        max_attempts: 1,
                        ..CallInput::default()
                    },
                    options,
                )
                .await;
            return Ok(match started {
                Ok(_) => FollowUpOutcome::Called { call_id },
                Err(e) => FollowUpOutcome::Skipped {
                    reason: format!("could not start the call: {e:?}"),
                },
            });
        }
        if input.channel == Channel::Whatsapp {
            let open = ctx
                .execute_activity(
                    AgentActivities::whatsapp_window_open,
                    WindowInput {
                        ours: input.ours.clone(),
                        theirs: input.theirs.clone(),
                    },
                    reply_send_options(),
                )
                .await?;
            if !open {
                return Ok(FollowUpOutcome::Skipped {
                    reason: "the WhatsApp session window is closed; a template message is needed"
                        .to_owned(),
                });
            }
        }
        let message_id =
            MessageId::from_idempotency_key(&format!("{}/followup", ctx.workflow_id())).to_string();
        let send = SendMessageInput {
            message_id: message_id.clone(),
            channel: input.channel,
            to: input.theirs,
            from: Some(input.ours),
            messaging_service_sid: None,
            body: input.message,
            conversation_id: Some(input.conversation_id),
        };
        match ctx
            .execute_activity(
                MessagingActivities::send_message,
                send,
                reply_send_options(),
            )
            .await
        {
            Ok(_) => Ok(FollowUpOutcome::Sent { message_id }),
            Err(e) => Ok(FollowUpOutcome::Skipped {
                reason: e.to_string(),
            }),
        }
    }
}
