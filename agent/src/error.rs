//! Why a turn could not be produced.

use std::time::Duration;

/// A failed agent call. [`AgentError::is_retryable`] tells the caller whether trying again can
/// help; either way the person gets the profile's fallback reply, never silence.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The model's server said 429.
    #[error("the model is rate limited (429)")]
    RateLimited {
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The model's server failed (5xx).
    #[error("the model server failed with HTTP {status}")]
    Server {
        /// HTTP status.
        status: u16,
    },
    /// The request was refused (4xx other than 429): wrong key, model or request.
    #[error("the model server refused the request with HTTP {status}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's error message, shortened.
        message: String,
    },
    /// No answer in time.
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    /// Connection or protocol failure.
    #[error("could not reach the model: {0}")]
    Transport(String),
    /// The answer was not what the Chat Completions format promises.
    #[error("the model's answer was malformed: {0}")]
    Malformed(String),
}

impl AgentError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout(_)
                | Self::Transport(_)
                | Self::Malformed(_)
        )
    }
}
