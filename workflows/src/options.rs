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

/// A person is waiting: one retry at most (the provider retries 429 / 5xx itself within the
/// profile's time limit), then the fallback reply.
pub(crate) fn agent_options(profile: &AgentProfile) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(profile.timeout() + Duration::from_secs(5))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_attempts(2)
                .non_retryable_error_types([voice_agent_activities::agent::AGENT_FAILURE])
                .build(),
        )
        .build()
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
            start_to_close: Duration::from_secs(20),
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

/// Transient Twilio failures retry for up to an hour; a refused call does not.
pub(crate) fn dial_options() -> ActivityOptions {
    provider_call_options(Duration::from_secs(3600), PERMANENT_CALL_FAILURE)
}
