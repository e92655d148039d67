//! Activity options shared by the workflows: how long a step may take and how it is retried,
//! in one place.

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_sdk::{ActivityOptions, LocalActivityOptions};
use voice_agent_activities::voice::PERMANENT_CALL_FAILURE;
use voice_agent_agent::AgentProfile;

/// Store lookups and writes: quick, retried a few times.
pub(crate) fn quick_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(10))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_attempts(5)
                .build(),
        )
        .build()
}

/// The task queue of the model calls of workflows running on `workflow_queue`.
///
/// Model calls are slow (seconds each) and come in bursts (every reply after a campaign), so
/// they get a queue and slots of their own: on the workflows' queue they would hold the slots
/// that sends, dials and store writes need. Workflows derive the name from their own task queue
/// (deterministic, no configuration read in workflow code); the worker derives it the same way.
pub fn agent_task_queue(workflow_queue: &str) -> String {
    format!("{workflow_queue}-agent")
}

/// Runs the activity on the model queue of the workflow's task queue.
pub(crate) fn on_agent_queue(
    mut options: ActivityOptions,
    workflow_queue: &str,
) -> ActivityOptions {
    options.task_queue = Some(agent_task_queue(workflow_queue));
    options
}

/// A person is waiting: one retry at most (the provider retries 429 / 5xx itself within the
/// profile's time limit), then the fallback reply. Runs on the model queue.
pub(crate) fn agent_options(profile: &AgentProfile, workflow_queue: &str) -> ActivityOptions {
    let mut options = on_agent_queue(
        ActivityOptions::with_start_to_close_timeout(profile.timeout() + Duration::from_secs(5))
            .retry_policy(
                RetryPolicy::builder()
                    .initial_interval(Duration::from_secs(1))
                    .maximum_attempts(2)
                    .non_retryable_error_types([voice_agent_activities::agent::AGENT_FAILURE])
                    .build(),
            )
            .build(),
        workflow_queue,
    );
    // When every model slot is busy (a burst of replies, or no worker polling the model queue),
    // a reply that waited as long as the profile gives the model to answer is better replaced
    // by the fallback now than sent minutes late. The timeout is not retried: it ends the turn.
    options.schedule_to_start_timeout = Some(profile.timeout());
    options
}

/// A summary: nobody is waiting for it, but the conversation answers no new message while it
/// runs, and a model queue nobody polls must not hold a conversation (or a call's log) for ever.
/// After this long in the queue it is skipped; the next turn asks for another.
pub(crate) const SUMMARY_QUEUE_WAIT: Duration = Duration::from_secs(300);

/// The conversation's summary: as a reply (one retry), on the model queue, skipped after
/// [`SUMMARY_QUEUE_WAIT`] in the queue.
pub(crate) fn summary_options(profile: &AgentProfile, workflow_queue: &str) -> ActivityOptions {
    let mut options = agent_options(profile, workflow_queue);
    options.schedule_to_start_timeout = Some(SUMMARY_QUEUE_WAIT);
    options
}

/// A call to Twilio (a send or a dial): a short start-to-close timeout bounds how long a
/// crashed worker delays the retry (Twilio answers in well under a second, and the HTTP client's
/// own timeout is shorter); transient failures retry with backoff until `give_up_after`; errors
/// of type `permanent` (a refusal) do not retry.
pub(crate) fn provider_call_options(
    give_up_after: Duration,
    permanent: &'static str,
) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(
        temporalio_common::ActivityCloseTimeouts::ScheduleAndStartToClose {
            schedule_to_close: give_up_after,
            // Room for the reconciliation lookups of a retry (one request timeout) and then
            // the send itself (another), which starts only with its whole timeout left
            // (`voice_agent_activities::deadline`); TWILIO_TIMEOUT_MS is at most 12 s.
            start_to_close: Duration::from_secs(30),
        },
    )
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(Duration::from_secs(1))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(60))
            .non_retryable_error_types([permanent])
            .build(),
    )
    .build()
}

/// A reply is only worth sending while the conversation is current: transient failures retry
/// for up to ten minutes; permanent ones (opted out, outside the WhatsApp window) do not.
pub(crate) fn reply_send_options() -> ActivityOptions {
    provider_call_options(
        Duration::from_secs(600),
        voice_agent_activities::messaging::PERMANENT_SEND_FAILURE,
    )
}

/// A step of a call's turn, run while Twilio waits for the webhook's answer (15 s): at most
/// two attempts, both within `budget`, so the turn's steps add up to a known worst case.
pub(crate) fn local_options(budget: Duration) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(budget)
        .schedule_to_close_timeout(budget)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .maximum_attempts(2)
                .non_retryable_error_types([voice_agent_activities::agent::AGENT_FAILURE])
                .build(),
        )
        .build()
}

/// What Twilio waits for the answer to a voice webhook before the caller hears an application
/// error (and the api's own request timeout).
pub(crate) const VOICE_WEBHOOK_WAIT: Duration = Duration::from_secs(15);
/// The profile lookup when a call's workflow starts (before an inbound call's greeting): an
/// in-memory read.
pub(crate) const VOICE_PROFILE_BUDGET: Duration = Duration::from_secs(1);
/// The agent's reply on a call, both attempts included: its own limit
/// ([`voice_agent_agent::MAX_VOICE_TURN_SECS`]) plus a second for the contact lookup; past it
/// the fallback is said.
pub(crate) const VOICE_REPLY_BUDGET: Duration =
    Duration::from_secs(voice_agent_agent::MAX_VOICE_TURN_SECS + 1);
/// An opt-out the agent decided on a call (one MongoDB write).
pub(crate) const VOICE_OPT_OUT_BUDGET: Duration = Duration::from_secs(2);
/// Left for the update's round trip (api → Temporal → worker → Temporal → api) and the TwiML,
/// in the worst case of every step using its whole budget.
const VOICE_ROUND_TRIP_MARGIN: Duration = Duration::from_secs(3);
const _: () = assert!(
    VOICE_PROFILE_BUDGET.as_millis()
        + VOICE_REPLY_BUDGET.as_millis()
        + VOICE_OPT_OUT_BUDGET.as_millis()
        + VOICE_ROUND_TRIP_MARGIN.as_millis()
        <= VOICE_WEBHOOK_WAIT.as_millis(),
    "a call's turn must fit in what Twilio waits for the webhook's answer"
);

/// MongoDB writes that must happen eventually (logs, records): retried for minutes.
pub(crate) fn store_options(start_to_close: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(start_to_close)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_interval(Duration::from_secs(30))
                .maximum_attempts(20)
                .build(),
        )
        .build()
}

/// A call's summary, after the hang-up: retried like a store write (the call log waits for
/// it), on the model queue, skipped after [`SUMMARY_QUEUE_WAIT`] in the queue.
pub(crate) fn call_summary_options(workflow_queue: &str) -> ActivityOptions {
    let mut options = on_agent_queue(store_options(Duration::from_secs(30)), workflow_queue);
    options.schedule_to_start_timeout = Some(SUMMARY_QUEUE_WAIT);
    options
}

/// Transient Twilio failures retry for up to an hour; a refused call does not.
pub(crate) fn dial_options() -> ActivityOptions {
    provider_call_options(Duration::from_secs(3600), PERMANENT_CALL_FAILURE)
}
