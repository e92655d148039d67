//! How late in an activity attempt a provider request may still start.
//!
//! Temporal starts an activity's retry once the attempt before it has timed out on the server,
//! whether or not that attempt is still running (a worker that paused, a host cut off from the
//! server). An attempt that then sent a message or dialled a call would do so alongside its
//! retry, which has already found nothing to reconcile. So a request that creates something
//! starts only while the attempt has time left for the whole request, with a margin: whatever
//! the attempt started is over before its retry can begin.

use std::time::Duration;

use temporalio_sdk::activities::ActivityContext;
use tokio::time::Instant;

/// Room left for the delay between the server starting an attempt and the worker running it,
/// and for clocks that do not run at quite the same rate.
const MARGIN: Duration = Duration::from_secs(2);

/// The end of an activity attempt, on this process's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct AttemptDeadline(Option<Instant>);

impl AttemptDeadline {
    /// The attempt's deadline as the server set it (start-to-close or schedule-to-close, the
    /// sooner), measured from now: the attempt has just started running here.
    pub fn of(ctx: &ActivityContext) -> Self {
        let info = ctx.info();
        let budget = match (info.started_time, info.deadline) {
            (Some(started), Some(deadline)) => deadline.duration_since(started).ok(),
            _ => None,
        };
        Self(budget.and_then(|b| Instant::now().checked_add(b)))
    }

    /// How long the attempt may still wait before a request that may take `request_timeout`
    /// (`Duration::MAX` without a deadline).
    pub fn spare(&self, request_timeout: Duration) -> Duration {
        self.0.map_or(Duration::MAX, |end| {
            end.saturating_duration_since(Instant::now() + request_timeout + MARGIN)
        })
    }

    /// Whether a request that may take `request_timeout` can start now and be over before the
    /// attempt's deadline.
    pub fn allows(&self, request_timeout: Duration) -> bool {
        self.0
            .is_none_or(|end| Instant::now() + request_timeout + MARGIN <= end)
    }
}

/// The error of an attempt that stopped short of a request it had no time left for: retryable,
/// and the retry reconciles first.
pub fn too_late() -> temporalio_sdk::activities::ActivityError {
    anyhow::anyhow!(
        "no time left in this attempt for the provider request; the retry reconciles and sends"
    )
    .into()
}
