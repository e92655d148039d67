//! Typed client for Twilio's REST API (`2010-04-01`): Messages and Calls.
//!
//! One [`TwilioClient`] wraps one shared `reqwest::Client` (connection pool) and is cheap to clone. Requests are
//! form-encoded, authenticated with HTTP Basic (account SID + auth token, or API key SID + secret) and ask for
//! JSON. Non-2xx answers become [`TwilioError::Api`]; [`TwilioError::is_retryable`] says whether to try again.
//!
//! reqwest is built without a rustls crypto provider: the binary must install one (e.g.
//! `rustls::crypto::ring::default_provider().install_default()`) before [`TwilioClient::new`], which reports
//! a missing provider as [`TwilioError::Config`] instead of panicking.

mod calls;
mod error;
mod messages;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use url::Url;

pub use self::calls::{
    Call, CallPage, CallStatus, CreateCall, ListCalls, MachineDetection, UpdateCall,
    UpdateCallStatus,
};
pub use self::error::TwilioError;
pub use self::messages::{CreateMessage, ListMessages, Message, MessagePage, MessageStatus};

/// Result of Twilio client calls.
pub type Result<T, E = TwilioError> = std::result::Result<T, E>;

/// Twilio's production API origin.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Default whole-request timeout: Twilio usually answers in well under a second; this bounds a stuck request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

const API_VERSION: &str = "2010-04-01";

const USER_AGENT: &str = concat!("voice-agent-twilio/", env!("CARGO_PKG_VERSION"));

/// How the client authenticates (HTTP Basic either way; the account SID stays in the path).
#[derive(Debug, Clone)]
pub enum Auth {
    /// Account SID + the account's auth token.
    AuthToken(SecretString),
    /// API key (`SK…`) + its secret: revocable without rotating the auth token.
    ApiKey {
        /// API key SID (`SK…`), the Basic-auth username.
        sid: String,
        /// API key secret, the Basic-auth password.
        secret: SecretString,
    },
}

/// Settings for [`TwilioClient::new`].
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// API origin: [`DEFAULT_BASE_URL`] in production, the simulator's URL in tests. A path prefix is kept.
    pub base_url: Url,
    /// Account SID (`AC…`), used in every resource path.
    pub account_sid: String,
    /// Credentials.
    pub auth: Auth,
    /// Whole-request timeout (connect, send, and read the response).
    pub timeout: Duration,
}

impl TwilioConfig {
    /// Production settings: [`DEFAULT_BASE_URL`] and [`DEFAULT_TIMEOUT`].
    pub fn new(account_sid: impl Into<String>, auth: Auth) -> Self {
        Self {
            base_url: Url::parse(DEFAULT_BASE_URL).expect("DEFAULT_BASE_URL is a valid URL"),
            account_sid: account_sid.into(),
            auth,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Twilio REST client. Clone it freely: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    base_url: Url,
    account_sid: String,
    timeout: Duration,
    username: String,
    password: SecretString,
}

impl TwilioClient {
    /// Validates `config` and builds the HTTP client.
    ///
    /// Fails with [`TwilioError::Config`] if the account SID does not look like `AC…`, the base URL is not
    /// http(s), the timeout is zero, or no rustls crypto provider has been installed.
    pub fn new(config: TwilioConfig) -> Result<Self> {
        let TwilioConfig {
            base_url,
            account_sid,
            auth,
            timeout,
        } = config;
        validate_account_sid(&account_sid)?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(TwilioError::Config(format!(
                "base URL must be an http(s) URL, got {base_url}"
            )));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(TwilioError::Config(
                "base URL must not carry a query or fragment".into(),
            ));
        }
        if timeout.is_zero() {
            return Err(TwilioError::Config(
                "timeout must be greater than zero".into(),
            ));
        }
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // reqwest would panic here; the binary forgot to install a provider at startup.
            return Err(TwilioError::Config(
                "no rustls crypto provider installed; call \
                 rustls::crypto::ring::default_provider().install_default() at startup"
                    .into(),
            ));
        }
        let (username, password) = match auth {
            Auth::AuthToken(token) => (account_sid.clone(), token),
            Auth::ApiKey { sid, secret } => {
                if sid.is_empty() {
                    return Err(TwilioError::Config("API key SID must not be empty".into()));
                }
                (sid, secret)
            }
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(USER_AGENT)
            // Twilio's API does not redirect; following one would send credentials somewhere unexpected.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TwilioError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            http,
            inner: Arc::new(Inner {
                base_url,
                account_sid,
                timeout,
                username,
                password,
            }),
        })
    }

    /// The account SID resources are created under.
    pub fn account_sid(&self) -> &str {
        &self.inner.account_sid
    }

    /// The whole-request timeout: no request of this client lasts longer.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// URL of an account resource: `{base}/2010-04-01/Accounts/{AccountSid}/{segments…}`. Segments are
    /// percent-encoded, so a SID from a webhook cannot escape its path segment.
    fn account_url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base_url.clone();
        url.path_segments_mut()
            .expect("checked in new(): base URL can be a base")
            .pop_if_empty()
            .extend([API_VERSION, "Accounts", self.inner.account_sid.as_str()])
            .extend(segments);
        url
    }

    /// Resolves a `next_page_uri`. Like the official libraries, a relative URI is joined onto the configured
    /// base URL; an absolute one is accepted only on the same origin, so credentials never leave it.
    fn page_url(&self, uri: &str) -> Result<Url> {
        let base = &self.inner.base_url;
        if let Ok(absolute) = Url::parse(uri) {
            return if absolute.origin() == base.origin() {
                Ok(absolute)
            } else {
                Err(TwilioError::UnexpectedResponse(
                    "next_page_uri points at another origin",
                ))
            };
        }
        if !uri.starts_with('/') || uri.starts_with("//") {
            return Err(TwilioError::UnexpectedResponse(
                "next_page_uri is neither absolute nor rooted",
            ));
        }
        let prefix = base.as_str().trim_end_matches('/');
        Url::parse(&format!("{prefix}{uri}"))
            .map_err(|_| TwilioError::UnexpectedResponse("next_page_uri is not a valid URI"))
    }

    /// Sends an authenticated request and decodes a 2xx JSON body into `T`.
    async fn execute<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = request
            .basic_auth(
                &self.inner.username,
                Some(self.inner.password.expose_secret()),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .send()
            .await
            .map_err(TwilioError::from_reqwest)?;
        let status = response.status();
        let body = response.bytes().await.map_err(TwilioError::from_reqwest)?;
        if !status.is_success() {
            let error = TwilioError::from_response(status, &body);
            tracing::debug!(
                status = status.as_u16(),
                code = error.code(),
                retryable = error.is_retryable(),
                "Twilio request failed"
            );
            return Err(error);
        }
        serde_json::from_slice(&body).map_err(|source| TwilioError::Decode {
            status: status.as_u16(),
            source,
        })
    }
}

fn validate_account_sid(sid: &str) -> Result<()> {
    // Twilio's pattern is AC + 32 hex; only the prefix and a URL-safe charset are enforced so simulators may
    // use readable SIDs.
    let well_formed =
        sid.len() > 2 && sid.starts_with("AC") && sid.bytes().all(|b| b.is_ascii_alphanumeric());
    if well_formed {
        Ok(())
    } else {
        Err(TwilioError::Config(
            "account SID must start with AC followed by letters or digits".into(),
        ))
    }
}

/// Form fields as `(name, value)` pairs; repeated names encode Twilio's array parameters.
type Form = Vec<(&'static str, String)>;

fn push_opt(form: &mut Form, name: &'static str, value: Option<impl ToString>) {
    if let Some(value) = value {
        form.push((name, value.to_string()));
    }
}

/// Twilio sends `error_code` as an integer or null; simulators and older payloads sometimes send a string.
fn lenient_code<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Raw::Number(n)) => u32::try_from(n).map(Some).map_err(serde::de::Error::custom),
        Some(Raw::Text(text)) if text.is_empty() => Ok(None),
        Some(Raw::Text(text)) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    fn config(base: &str) -> TwilioConfig {
        TwilioConfig {
            base_url: Url::parse(base).unwrap(),
            ..TwilioConfig::new("AC123", Auth::AuthToken(SecretString::from("token")))
        }
    }

    #[test]
    fn account_urls_keep_a_base_path_prefix_and_encode_segments() {
        provider();
        let client = TwilioClient::new(config("http://127.0.0.1:9/sim/")).unwrap();

        let url = client.account_url(&["Messages", "SM1/../x.json"]);

        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9/sim/2010-04-01/Accounts/AC123/Messages/SM1%2F..%2Fx.json"
        );
    }

    #[test]
    fn page_uris_are_joined_onto_the_base_and_foreign_origins_rejected() {
        provider();
        let client = TwilioClient::new(config("http://127.0.0.1:9/sim")).unwrap();

        let next = client
            .page_url("/2010-04-01/Accounts/AC123/Messages.json?PageSize=2&Page=1&PageToken=PA1")
            .unwrap();

        assert_eq!(
            next.as_str(),
            "http://127.0.0.1:9/sim/2010-04-01/Accounts/AC123/Messages.json?PageSize=2&Page=1&PageToken=PA1"
        );
        assert!(client.page_url("https://evil.example/steal").is_err());
        assert!(client.page_url("//evil.example/steal").is_err());
        assert!(client.page_url("http://127.0.0.1:9/other").is_ok());
    }

    #[test]
    fn invalid_configuration_is_rejected() {
        provider();
        let bad_sid = TwilioConfig {
            account_sid: "XX123".into(),
            ..config("http://127.0.0.1:9")
        };
        let bad_scheme = config("ftp://127.0.0.1:9");
        let zero_timeout = TwilioConfig {
            timeout: Duration::ZERO,
            ..config("http://127.0.0.1:9")
        };

        for config in [bad_sid, bad_scheme, zero_timeout] {
            assert!(matches!(
                TwilioClient::new(config),
                Err(TwilioError::Config(_))
            ));
        }
    }

    #[test]
    fn error_codes_are_read_from_numbers_strings_or_null() {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default, deserialize_with = "lenient_code")]
            error_code: Option<u32>,
        }
        let parse = |json: &str| serde_json::from_str::<Probe>(json).unwrap().error_code;

        assert_eq!(parse(r#"{"error_code": 30003}"#), Some(30003));
        assert_eq!(parse(r#"{"error_code": "30003"}"#), Some(30003));
        assert_eq!(parse(r#"{"error_code": null}"#), None);
        assert_eq!(parse("{}"), None);
    }
}
