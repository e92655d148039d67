//! [`TwilioError`] and its retry classification.

use std::fmt;

use serde::Deserialize;

use crate::mask::mask_numbers_in;

/// Twilio error codes that are permanent whatever HTTP status carries them: retrying cannot succeed.
const PERMANENT_CODES: [u32; 5] = [
    21211, // invalid 'To' number
    21408, // region not enabled (geo permissions)
    21610, // recipient unsubscribed (texted STOP)
    21612, // 'To' not reachable via SMS
    21614, // 'To' is not a valid mobile number
];

/// Twilio's "too many concurrent requests" code (sent with HTTP 429).
const TOO_MANY_REQUESTS_CODE: u32 = 20429;

/// Everything that can go wrong talking to Twilio.
///
/// Use [`TwilioError::is_retryable`] to decide between retrying and failing permanently; `Display` and `Debug`
/// mask phone numbers so the error can be logged as is.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TwilioError {
    /// Twilio answered with a non-2xx status. Retry if [`TwilioError::is_retryable`] (429/20429, 5xx);
    /// otherwise the request itself is wrong (invalid or opted-out number, bad credentials, ...): fail
    /// permanently and surface `code` (see <https://www.twilio.com/docs/errors>).
    #[error("{}", api_summary(.status, .code, .message))]
    Api {
        /// HTTP status.
        status: u16,
        /// Twilio error code (e.g. 21211), when the body carried one.
        code: Option<u32>,
        /// Twilio's message as received (may contain phone numbers: use `Display` for logs).
        message: String,
        /// Link to Twilio's documentation of `code`.
        more_info: Option<String>,
    },
    /// The request did not complete within the configured timeout. Retry; for creates, beware that Twilio
    /// may have acted on the request (check by listing before re-sending if duplicates matter).
    #[error("request to Twilio timed out")]
    Timeout(#[source] reqwest::Error),
    /// No connection could be established. Retry: Twilio never saw the request.
    #[error("could not connect to Twilio")]
    Connect(#[source] reqwest::Error),
    /// The connection failed mid-request. Retry, with the same duplicate caveat as [`TwilioError::Timeout`].
    #[error("transport error talking to Twilio")]
    Transport(#[source] reqwest::Error),
    /// A 2xx response body did not have the expected shape. Do not retry (the request probably succeeded);
    /// report it: Twilio or the simulator changed its wire format.
    #[error("could not decode Twilio response (HTTP {status})")]
    Decode {
        /// HTTP status of the response.
        status: u16,
        /// Parse error (no body excerpt: bodies carry personal data).
        #[source]
        source: serde_json::Error,
    },
    /// Twilio sent something unusable that is not a body-shape problem (e.g. a `next_page_uri` pointing at
    /// another host). Do not retry; report it.
    #[error("unexpected Twilio response: {0}")]
    UnexpectedResponse(&'static str),
    /// The client configuration is invalid (bad account SID or base URL, no rustls provider installed).
    /// Fix the configuration; retrying cannot help.
    #[error("invalid Twilio client configuration: {0}")]
    Config(String),
}

impl TwilioError {
    /// Whether retrying the same request may succeed: HTTP 429 or code 20429, any 5xx, timeouts and connection
    /// failures. Everything else, including every other 4xx, is permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, code, .. } => {
                if code.is_some_and(|code| PERMANENT_CODES.contains(&code)) {
                    return false;
                }
                *status == 429
                    || *code == Some(TOO_MANY_REQUESTS_CODE)
                    || (500..600).contains(status)
            }
            Self::Timeout(_) | Self::Connect(_) | Self::Transport(_) => true,
            Self::Decode { .. } | Self::UnexpectedResponse(_) | Self::Config(_) => false,
        }
    }

    /// Twilio's error code, for API errors that carried one.
    pub fn code(&self) -> Option<u32> {
        match self {
            Self::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn from_reqwest(error: reqwest::Error) -> Self {
        // The URL may carry phone numbers (list filters), so it never travels with the error.
        let error = error.without_url();
        if error.is_timeout() {
            Self::Timeout(error)
        } else if error.is_connect() {
            Self::Connect(error)
        } else if error.is_builder() {
            Self::Config(error.to_string())
        } else {
            Self::Transport(error)
        }
    }

    /// Builds an [`TwilioError::Api`] from a non-2xx response, tolerating bodies that are not Twilio's JSON
    /// (proxies' HTML pages, RFC 9457 problem documents, empty bodies).
    pub(crate) fn from_response(status: reqwest::StatusCode, body: &[u8]) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (code, message, more_info) = match parsed {
            Some(body) => {
                let message = body.message.or(body.detail).or(body.title);
                (
                    body.code.as_ref().and_then(code_from_json),
                    message,
                    body.more_info,
                )
            }
            None => (None, None, None),
        };
        let message = message.unwrap_or_else(|| match status.canonical_reason() {
            Some(reason) => format!(
                "HTTP {} {reason} without a Twilio error body",
                status.as_u16()
            ),
            None => format!("HTTP {} without a Twilio error body", status.as_u16()),
        });
        Self::Api {
            status: status.as_u16(),
            code,
            message,
            more_info,
        }
    }
}

impl fmt::Debug for TwilioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api {
                status,
                code,
                message,
                more_info,
            } => f
                .debug_struct("Api")
                .field("status", status)
                .field("code", code)
                .field("message", &mask_numbers_in(message))
                .field("more_info", more_info)
                .finish(),
            Self::Timeout(source) => f.debug_tuple("Timeout").field(source).finish(),
            Self::Connect(source) => f.debug_tuple("Connect").field(source).finish(),
            Self::Transport(source) => f.debug_tuple("Transport").field(source).finish(),
            Self::Decode { status, source } => f
                .debug_struct("Decode")
                .field("status", status)
                .field("source", source)
                .finish(),
            Self::UnexpectedResponse(reason) => {
                f.debug_tuple("UnexpectedResponse").field(reason).finish()
            }
            Self::Config(reason) => f.debug_tuple("Config").field(reason).finish(),
        }
    }
}

fn api_summary(status: &u16, code: &Option<u32>, message: &str) -> String {
    let message = mask_numbers_in(message);
    match code {
        Some(code) => format!("Twilio API error {code} (HTTP {status}): {message}"),
        None => format!("Twilio API error (HTTP {status}): {message}"),
    }
}

/// Twilio's error body `{"code", "message", "more_info", "status"}`, plus the RFC 9457 fields some mocks send.
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<serde_json::Value>,
    message: Option<String>,
    more_info: Option<String>,
    detail: Option<String>,
    title: Option<String>,
}

fn code_from_json(code: &serde_json::Value) -> Option<u32> {
    match code {
        serde_json::Value::Number(number) => number.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    fn api(status: u16, code: Option<u32>) -> TwilioError {
        TwilioError::Api {
            status,
            code,
            message: String::new(),
            more_info: None,
        }
    }

    #[test]
    fn rate_limits_and_server_errors_are_retryable() {
        assert!(api(429, None).is_retryable());
        assert!(api(429, Some(20429)).is_retryable());
        assert!(api(400, Some(20429)).is_retryable());
        assert!(api(500, None).is_retryable());
        assert!(api(503, Some(20500)).is_retryable());
    }

    #[test]
    fn invalid_and_opted_out_numbers_and_other_client_errors_are_permanent() {
        for code in PERMANENT_CODES {
            assert!(!api(400, Some(code)).is_retryable(), "{code}");
        }
        assert!(!api(401, Some(20003)).is_retryable());
        assert!(!api(404, Some(20404)).is_retryable());
        assert!(!api(400, None).is_retryable());
        assert!(!TwilioError::Config("x".into()).is_retryable());
        assert!(!TwilioError::UnexpectedResponse("x").is_retryable());
    }

    #[test]
    fn twilio_error_json_is_parsed() {
        let body =
            br#"{"code": 21211, "message": "The 'To' number +1asd is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#;

        let error = TwilioError::from_response(StatusCode::BAD_REQUEST, body);

        assert_eq!(error.code(), Some(21211));
        assert_eq!(error.status(), Some(400));
        let TwilioError::Api {
            message, more_info, ..
        } = &error
        else {
            panic!("expected an API error, got {error:?}");
        };
        assert_eq!(
            message,
            "The 'To' number +1asd is not a valid phone number."
        );
        assert_eq!(
            more_info.as_deref(),
            Some("https://www.twilio.com/docs/errors/21211")
        );
    }

    #[test]
    fn non_json_and_problem_json_bodies_are_tolerated() {
        let html = TwilioError::from_response(StatusCode::BAD_GATEWAY, b"<html>oops</html>");
        let problem = TwilioError::from_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"type":"x","title":"Invalid request","status":422,"detail":"To is required"}"#,
        );
        let empty = TwilioError::from_response(StatusCode::INTERNAL_SERVER_ERROR, b"");

        assert_eq!(html.code(), None);
        assert_eq!(
            html.to_string(),
            "Twilio API error (HTTP 502): HTTP 502 Bad Gateway without a Twilio error body"
        );
        assert!(html.is_retryable());
        assert_eq!(
            problem.to_string(),
            "Twilio API error (HTTP 422): To is required"
        );
        assert!(!problem.is_retryable());
        assert!(empty.is_retryable());
    }

    #[test]
    fn display_and_debug_mask_phone_numbers() {
        let error = TwilioError::Api {
            status: 400,
            code: Some(21606),
            message:
                "The From phone number +6594497191 is not a valid, SMS-capable inbound phone number"
                    .into(),
            more_info: None,
        };

        assert_eq!(
            error.to_string(),
            "Twilio API error 21606 (HTTP 400): The From phone number +******7191 is not a valid, \
             SMS-capable inbound phone number"
        );
        assert!(!format!("{error:?}").contains("6594497191"));
    }
}
