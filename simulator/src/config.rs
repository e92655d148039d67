//! Command-line and environment configuration.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::Parser;
use url::Url;

/// Account SID used when none is configured: a syntactically valid, obviously fake test SID.
pub const DEFAULT_ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Auth token used when none is configured.
pub const DEFAULT_AUTH_TOKEN: &str = "simulator-auth-token";

/// A secret string whose `Debug` and `Display` never reveal the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Simulator settings: every flag also reads a `SIMULATOR_*` environment variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "voice-agent-simulator",
    version,
    about = "A local Twilio simulator"
)]
pub struct Config {
    /// Address to bind.
    #[arg(long, env = "SIMULATOR_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to bind; 0 picks a free port (the chosen one is printed at start).
    #[arg(long, env = "SIMULATOR_PORT", default_value_t = 0)]
    pub port: u16,

    /// Account SID that clients must use in the path and as the Basic-auth user name.
    #[arg(long, env = "SIMULATOR_ACCOUNT_SID", default_value = DEFAULT_ACCOUNT_SID)]
    pub account_sid: String,

    /// Auth token: Basic-auth password and the key signing every webhook.
    #[arg(long, env = "SIMULATOR_AUTH_TOKEN", default_value = DEFAULT_AUTH_TOKEN, hide_env_values = true, hide_default_value = true)]
    pub auth_token: Secret,

    /// Optional API key SID (`SK…`) accepted as Basic-auth user name with `--api-key-secret`.
    #[arg(long, env = "SIMULATOR_API_KEY_SID", requires = "api_key_secret")]
    pub api_key_sid: Option<String>,

    /// Secret of the API key given with `--api-key-sid`.
    #[arg(
        long,
        env = "SIMULATOR_API_KEY_SECRET",
        requires = "api_key_sid",
        hide_env_values = true
    )]
    pub api_key_secret: Option<Secret>,

    /// Messages per second accepted per sender (`From`, else `MessagingServiceSid`); beyond it the
    /// API answers 429 / 20429. 0 disables the limit, which is the default because real Twilio
    /// queues excess traffic instead of rejecting it.
    #[arg(long, env = "SIMULATOR_RATE_LIMIT_MPS", default_value_t = 0)]
    pub rate_limit_mps: u32,

    /// Fraction (0..=1) of authenticated REST requests answered 500 / 20500.
    #[arg(long, env = "SIMULATOR_ERROR_RATE", default_value_t = 0.0)]
    pub error_rate: f64,

    /// Fraction (0..=1) of authenticated REST requests answered 429 / 20429.
    #[arg(long, env = "SIMULATOR_TOO_MANY_REQUESTS_RATE", default_value_t = 0.0)]
    pub too_many_requests_rate: f64,

    /// Latency added to every REST request, in milliseconds.
    #[arg(long, env = "SIMULATOR_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,

    /// Delay before each status change of an outbound message (and its callback), in milliseconds.
    #[arg(long, env = "SIMULATOR_CALLBACK_DELAY_MS", default_value_t = 20)]
    pub callback_delay_ms: u64,

    /// Status-callback requests in flight at once; more wait their turn. Keeps a campaign from
    /// opening thousands of connections to the application.
    #[arg(long, env = "SIMULATOR_CALLBACK_CONCURRENCY", default_value_t = 256)]
    pub callback_concurrency: usize,

    /// Twilio's default opt-out handling: after an inbound SMS "STOP" (or STOPALL,
    /// UNSUBSCRIBE, CANCEL, END, QUIT) from a user to a sender, SMS from that sender to that
    /// user fail with 400 / 21610 until the user texts START (or YES, UNSTOP).
    #[arg(
        long,
        env = "SIMULATOR_TWILIO_OPT_OUT",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub twilio_opt_out: bool,

    /// Webhook URL for inbound SMS to numbers without their own `sms_url`.
    #[arg(long, env = "SIMULATOR_DEFAULT_SMS_URL")]
    pub default_sms_url: Option<Url>,

    /// Webhook URL for inbound calls to numbers without their own `voice_url`.
    #[arg(long, env = "SIMULATOR_DEFAULT_VOICE_URL")]
    pub default_voice_url: Option<Url>,

    /// Status callback of inbound calls to numbers without their own `voice_status_callback`.
    #[arg(long, env = "SIMULATOR_DEFAULT_VOICE_STATUS_CALLBACK")]
    pub default_voice_status_callback: Option<Url>,

    /// Outbound calls dialled per second for the account, as Twilio's CPS limit; calls over it
    /// wait `queued` and go out in order. 0 disables the limit.
    #[arg(long, env = "SIMULATOR_CALLS_PER_SECOND", default_value_t = 1)]
    pub calls_per_second: u32,

    /// How long a call rings before the callee answers (or gives up), in milliseconds.
    #[arg(long, env = "SIMULATOR_CALL_RING_MS", default_value_t = 100)]
    pub call_ring_ms: u64,

    /// A callee's default time to think before each answer to a `<Gather>`, in milliseconds.
    #[arg(long, env = "SIMULATOR_CALL_THINK_MS", default_value_t = 0)]
    pub call_think_ms: u64,

    /// Real milliseconds one simulated second of a call takes: `<Pause>`, Gather and Record
    /// timeouts, a dialled party's talk, and the reported call durations all use this scale.
    #[arg(long, env = "SIMULATOR_CALL_SECOND_MS", default_value_t = 10)]
    pub call_second_ms: u64,

    /// Serve the admin API to any client, not only loopback ones (e.g. inside a container).
    #[arg(long, env = "SIMULATOR_ADMIN_ALLOW_REMOTE", default_value_t = false)]
    pub admin_allow_remote: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            account_sid: DEFAULT_ACCOUNT_SID.to_owned(),
            auth_token: Secret::new(DEFAULT_AUTH_TOKEN),
            api_key_sid: None,
            api_key_secret: None,
            rate_limit_mps: 0,
            error_rate: 0.0,
            too_many_requests_rate: 0.0,
            latency_ms: 0,
            callback_delay_ms: 20,
            callback_concurrency: 256,
            twilio_opt_out: true,
            default_sms_url: None,
            default_voice_url: None,
            default_voice_status_callback: None,
            calls_per_second: 1,
            call_ring_ms: 100,
            call_think_ms: 0,
            call_second_ms: 10,
            admin_allow_remote: false,
        }
    }
}

/// A configuration value the simulator cannot run with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The account SID is not `AC` + 32 hex digits; official clients reject such SIDs.
    #[error("account SID must be `AC` followed by 32 hex digits")]
    AccountSid,
    /// The API key SID is not `SK` + 32 hex digits.
    #[error("API key SID must be `SK` followed by 32 hex digits")]
    ApiKeySid,
    /// The auth token is empty; webhooks could not be signed meaningfully.
    #[error("auth token must not be empty")]
    EmptyAuthToken,
    /// A fault rate lies outside 0..=1.
    #[error("{0} must be between 0 and 1")]
    Rate(&'static str),
    /// The callback concurrency is 0, which would stop every status callback.
    #[error("callback concurrency must be at least 1")]
    CallbackConcurrency,
    /// The default SMS webhook URL is not http(s).
    #[error("default SMS URL must be http or https")]
    DefaultSmsUrl,
    /// The default voice webhook URL is not http(s).
    #[error("default voice URL must be http or https")]
    DefaultVoiceUrl,
    /// A simulated call second of 0 ms would make durations meaningless.
    #[error("call second must be at least 1 ms")]
    CallSecond,
    /// The simulator would listen beyond this machine with the auth token everyone knows (it
    /// is in the source), so anyone reaching it could sign webhooks our api accepts. Set
    /// `--auth-token` / `SIMULATOR_AUTH_TOKEN` to a secret of your own, or bind a loopback
    /// address.
    #[error(
        "refusing to listen on {0} with the default auth token; set SIMULATOR_AUTH_TOKEN \
         (--auth-token) or bind a loopback address"
    )]
    DefaultTokenOnPublicAddress(IpAddr),
}

impl Config {
    /// Checks values clap cannot check on its own.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !crate::util::is_sid(&self.account_sid, "AC") {
            return Err(ConfigError::AccountSid);
        }
        if let Some(sid) = &self.api_key_sid
            && !crate::util::is_sid(sid, "SK")
        {
            return Err(ConfigError::ApiKeySid);
        }
        if self.auth_token.expose().is_empty() {
            return Err(ConfigError::EmptyAuthToken);
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(ConfigError::Rate("error rate"));
        }
        if !(0.0..=1.0).contains(&self.too_many_requests_rate) {
            return Err(ConfigError::Rate("too-many-requests rate"));
        }
        if self.callback_concurrency == 0 {
            return Err(ConfigError::CallbackConcurrency);
        }
        if let Some(url) = &self.default_sms_url
            && !matches!(url.scheme(), "http" | "https")
        {
            return Err(ConfigError::DefaultSmsUrl);
        }
        for url in [&self.default_voice_url, &self.default_voice_status_callback]
            .into_iter()
            .flatten()
        {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ConfigError::DefaultVoiceUrl);
            }
        }
        if self.call_second_ms == 0 {
            return Err(ConfigError::CallSecond);
        }
        if !self.host.is_loopback() && self.auth_token.expose() == DEFAULT_AUTH_TOKEN {
            return Err(ConfigError::DefaultTokenOnPublicAddress(self.host));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_hides_the_value() {
        let config = Config::default();
        let printed = format!("{config:?}");
        assert!(!printed.contains(DEFAULT_AUTH_TOKEN));
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn the_default_token_is_refused_beyond_loopback() {
        for host in ["0.0.0.0", "::", "192.168.1.20"] {
            let config = Config::try_parse_from(["voice-agent-simulator", "--host", host]).unwrap();
            let err = config.validate().unwrap_err();
            assert!(
                matches!(err, ConfigError::DefaultTokenOnPublicAddress(_)),
                "{host}: {err:?}"
            );
            assert!(err.to_string().contains("SIMULATOR_AUTH_TOKEN"), "{err}");
        }
        for host in ["127.0.0.1", "127.0.0.2", "::1"] {
            let config = Config::try_parse_from(["voice-agent-simulator", "--host", host]).unwrap();
            config.validate().unwrap();
        }
        let own_token = Config::try_parse_from([
            "voice-agent-simulator",
            "--host",
            "0.0.0.0",
            "--auth-token",
            "a-secret-of-our-own",
        ])
        .unwrap();
        own_token.validate().unwrap();
    }

    #[test]
    fn clap_defaults_match_default_impl() {
        let parsed = Config::try_parse_from(["voice-agent-simulator"]).unwrap();
        let default = Config::default();
        assert_eq!(parsed.account_sid, default.account_sid);
        assert_eq!(parsed.auth_token, default.auth_token);
        assert_eq!(parsed.callback_delay_ms, default.callback_delay_ms);
        assert_eq!(parsed.host, default.host);
        assert_eq!(parsed.callback_concurrency, default.callback_concurrency);
        assert_eq!(parsed.twilio_opt_out, default.twilio_opt_out);
        assert_eq!(parsed.calls_per_second, default.calls_per_second);
        assert_eq!(parsed.call_ring_ms, default.call_ring_ms);
        assert_eq!(parsed.call_think_ms, default.call_think_ms);
        assert_eq!(parsed.call_second_ms, default.call_second_ms);
    }

    #[test]
    fn opt_out_handling_can_be_switched_off() {
        let parsed =
            Config::try_parse_from(["voice-agent-simulator", "--twilio-opt-out", "false"]).unwrap();
        assert!(!parsed.twilio_opt_out);
    }

    #[test]
    fn out_of_range_rates_are_rejected() {
        let config = Config {
            error_rate: 1.5,
            ..Config::default()
        };
        assert!(matches!(config.validate(), Err(ConfigError::Rate(_))));
    }
}
