//! One outbound message, sent exactly once.

use std::time::Duration;

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};
use voice_agent_activities::messaging::{
    MessagingActivities, PERMANENT_SEND_FAILURE, SendMessageInput, SendMessageOutput,
};

/// Sends one message through [`MessagingActivities::send_message`], retrying transient provider
/// failures with backoff for up to a day; the activity's own idempotency makes every retry
/// safe. A permanent rejection ends the workflow as failed, with the provider's code in the
/// failure message (the message document records it as well).
#[workflow]
#[derive(Default)]
pub struct SendMessageWorkflow;

#[workflow_methods]
impl SendMessageWorkflow {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: SendMessageInput,
    ) -> WorkflowResult<SendMessageOutput> {
        let output = ctx
            .execute_activity(MessagingActivities::send_message, input, send_options())
            .await?;
        Ok(output)
    }
}

/// Options of a send attempt: a Twilio call whose transient failures retry with backoff for up
/// to a day.
pub fn send_options() -> ActivityOptions {
    crate::options::provider_call_options(Duration::from_secs(24 * 3600), PERMANENT_SEND_FAILURE)
}
