//! Typed settings from environment variables.
//!
//! Each variable is documented in the README's configuration table. Secrets are
//! [`SecretString`]s, so a settings value printed with `{:?}` shows `[REDACTED]`.

use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;
use voice_agent_domain::PhoneNumber;
use voice_agent_twilio::client::{Auth, TwilioClient, TwilioConfig};

/// A setting is missing or unusable. The message names the variable and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{var} is not set: {hint}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A variable is set to something unusable.
    #[error("{var} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Why, without echoing secret values.
        reason: String,
    },
}

/// Where settings are read from: the process environment, or a map in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Option<HashMap<String, String>>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self { vars: None }
    }

    /// A fixed set of variables (tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// The variable's value; empty counts as unset.
    pub fn get(&self, var: &str) -> Option<String> {
        let value = match &self.vars {
            Some(map) => map.get(var).cloned(),
            None => std::env::var(var).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// The variable or a default.
    pub fn get_or(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    /// A URL variable, or a default.
    pub fn url(&self, var: &'static str, default: &str) -> Result<Url, ConfigError> {
        let raw = self.get_or(var, default);
        Url::parse(&raw).map_err(|e| ConfigError::Invalid {
            var,
            reason: e.to_string(),
        })
    }

    /// A number variable, or a default.
    pub fn number<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    var,
                    reason: e.to_string(),
                }),
        }
    }
}

/// MongoDB connection.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// `MONGODB_URI`; secret because it may carry a password.
    pub uri: SecretString,
    /// `MONGODB_DATABASE`.
    pub database: String,
}

/// Twilio (or the simulator, which speaks the same protocol).
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// `TWILIO_BASE_URL`: `https://api.twilio.com`, or the simulator's URL.
    pub base_url: Url,
    /// `TWILIO_ACCOUNT_SID`.
    pub account_sid: String,
    /// `TWILIO_AUTH_TOKEN`: signs webhooks, and authenticates REST calls unless an API key is set.
    pub auth_token: SecretString,
    /// `TWILIO_API_KEY_SID` + `TWILIO_API_KEY_SECRET`: REST credentials preferred over the token.
    pub api_key: Option<(String, SecretString)>,
    /// `TWILIO_FROM_NUMBER`: default sender.
    pub from_number: Option<PhoneNumber>,
    /// `TWILIO_MESSAGING_SERVICE_SID`: default Messaging Service (used when no sender is given).
    pub messaging_service_sid: Option<String>,
    /// `TWILIO_TIMEOUT_MS`: per-request timeout.
    pub timeout: Duration,
}

impl TwilioSettings {
    /// A REST client for these settings.
    pub fn client(&self) -> Result<TwilioClient, ConfigError> {
        let auth = match &self.api_key {
            Some((sid, secret)) => Auth::ApiKey {
                sid: sid.clone(),
                secret: secret.clone(),
            },
            None => Auth::AuthToken(self.auth_token.clone()),
        };
        TwilioClient::new(TwilioConfig {
            base_url: self.base_url.clone(),
            account_sid: self.account_sid.clone(),
            auth,
            timeout: self.timeout,
        })
        .map_err(|e| ConfigError::Invalid {
            var: "TWILIO_BASE_URL",
            reason: e.to_string(),
        })
    }

    /// The token that signs webhooks.
    pub fn webhook_token(&self) -> &str {
        self.auth_token.expose_secret()
    }
}

/// The AI agent: which numbers have one (the agents file) and which model answers.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// `AGENTS_FILE`: TOML file of agent profiles and the numbers they answer; no agent answers
    /// any number when unset.
    pub agents_file: Option<std::path::PathBuf>,
    /// `AGENT_MODEL_BASE_URL` (+ `AGENT_MODEL`, `AGENT_MODEL_API_KEY`, `AGENT_MODEL_STREAM`,
    /// `AGENT_MODEL_MAX_RETRIES`): an OpenAI-compatible Chat Completions endpoint; the scripted
    /// agent answers when unset.
    pub model: Option<voice_agent_agent::ModelSettings>,
    /// `AGENT_MODEL_TIMEOUT_MS`: per HTTP attempt.
    pub request_timeout: Duration,
}

impl AgentSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let model = match env.get("AGENT_MODEL_BASE_URL") {
            None => None,
            Some(_) => {
                let base_url = env.url("AGENT_MODEL_BASE_URL", "")?;
                if base_url.cannot_be_a_base() {
                    return Err(ConfigError::Invalid {
                        var: "AGENT_MODEL_BASE_URL",
                        reason:
                            "expected an absolute http(s) URL such as https://api.openai.com/v1"
                                .to_owned(),
                    });
                }
                let model = env.get("AGENT_MODEL").ok_or(ConfigError::Missing {
                    var: "AGENT_MODEL",
                    hint: "name the model to use with AGENT_MODEL_BASE_URL (for example gpt-4o-mini)",
                })?;
                let stream = match env.get_or("AGENT_MODEL_STREAM", "false").as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ConfigError::Invalid {
                            var: "AGENT_MODEL_STREAM",
                            reason: format!("expected true or false, got {other}"),
                        });
                    }
                };
                Some(voice_agent_agent::ModelSettings {
                    base_url,
                    api_key: env.get("AGENT_MODEL_API_KEY").map(SecretString::from),
                    model,
                    stream,
                    max_retries: env.number("AGENT_MODEL_MAX_RETRIES", 2)?,
                    initial_backoff: Duration::from_millis(500),
                    temperature: None,
                })
            }
        };
        Ok(Self {
            agents_file: env.get("AGENTS_FILE").map(Into::into),
            model,
            request_timeout: Duration::from_millis(env.number("AGENT_MODEL_TIMEOUT_MS", 15_000)?),
        })
    }

    /// Loads the agents file (an empty directory when none is set).
    pub fn directory(&self) -> Result<voice_agent_agent::AgentDirectory, ConfigError> {
        match &self.agents_file {
            None => Ok(voice_agent_agent::AgentDirectory::empty()),
            Some(path) => {
                voice_agent_agent::AgentDirectory::load(path).map_err(|e| ConfigError::Invalid {
                    var: "AGENTS_FILE",
                    reason: e.to_string(),
                })
            }
        }
    }

    /// The agent: the model when one is configured, else the scripted agent with each
    /// profile's rules.
    pub fn agent(
        &self,
        directory: &voice_agent_agent::AgentDirectory,
    ) -> Result<std::sync::Arc<dyn voice_agent_agent::Agent>, ConfigError> {
        match &self.model {
            Some(model) => Ok(std::sync::Arc::new(
                voice_agent_agent::ChatCompletionsAgent::new(model.clone(), self.request_timeout)
                    .map_err(|e| ConfigError::Invalid {
                    var: "AGENT_MODEL_BASE_URL",
                    reason: e.to_string(),
                })?,
            )),
            None => Ok(std::sync::Arc::new(
                voice_agent_agent::ScriptedAgent::from_directory(directory).map_err(|e| {
                    ConfigError::Invalid {
                        var: "AGENTS_FILE",
                        reason: e.to_string(),
                    }
                })?,
            )),
        }
    }
}

/// Which task queues a worker process polls, and how many activities of each it runs at once.
///
/// Model calls (`agent_reply`, `agent_summary`) run on their own queue, `<TEMPORAL_TASK_QUEUE>-agent`,
/// so a burst of slow replies cannot hold the slots that sends, dials and store writes need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// `WORKER_TASK_QUEUES` includes `main`: the workflows and every activity but the model
    /// calls.
    pub poll_main: bool,
    /// `WORKER_TASK_QUEUES` includes `agent`: the model calls.
    pub poll_agent: bool,
    /// `WORKER_MAIN_ACTIVITY_SLOTS`: activities of the main queue run at once by this process.
    pub main_activity_slots: usize,
    /// `WORKER_AGENT_ACTIVITY_SLOTS`: model calls run at once by this process.
    pub agent_activity_slots: usize,
}

/// A slot count above this is taken for a typo: each slot is a task the process may run at once.
const MAX_ACTIVITY_SLOTS: usize = 10_000;

impl WorkerSettings {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut poll_main = false;
        let mut poll_agent = false;
        for queue in env.get_or("WORKER_TASK_QUEUES", "main,agent").split(',') {
            match queue.trim().to_ascii_lowercase().as_str() {
                "main" => poll_main = true,
                "agent" => poll_agent = true,
                "" => {}
                other => {
                    return Err(ConfigError::Invalid {
                        var: "WORKER_TASK_QUEUES",
                        reason: format!(
                            "expected main, agent or main,agent (comma-separated), got {other:?}"
                        ),
                    });
                }
            }
        }
        if !(poll_main || poll_agent) {
            return Err(ConfigError::Invalid {
                var: "WORKER_TASK_QUEUES",
                reason: "name at least one of main, agent".to_owned(),
            });
        }
        Ok(Self {
            poll_main,
            poll_agent,
            // Sends, dials and store writes mostly wait on the network: the SDK's default.
            main_activity_slots: slots(env, "WORKER_MAIN_ACTIVITY_SLOTS", 100)?,
            // Model calls are slow and bounded by the model's own capacity and rate limits more
            // than by this machine; a burst beyond these waits in the queue (and a reply that
            // waits too long gets the fallback).
            agent_activity_slots: slots(env, "WORKER_AGENT_ACTIVITY_SLOTS", 16)?,
        })
    }
}

fn slots(env: &Env, var: &'static str, default: usize) -> Result<usize, ConfigError> {
    let n = env.number(var, default)?;
    if !(1..=MAX_ACTIVITY_SLOTS).contains(&n) {
        return Err(ConfigError::Invalid {
            var,
            reason: format!("expected 1 to {MAX_ACTIVITY_SLOTS}, got {n}"),
        });
    }
    Ok(n)
}

/// Sends per second allowed per sender, across every campaign, single send, reply and dial
/// from it (0: no limit). Twilio queues or refuses what goes over its own per-number limits.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderLimitSettings {
    /// `SENDER_LIMIT_SMS_PER_SECOND`: SMS per second per number (default 1, Twilio's US long
    /// code; raise it for toll-free numbers, short codes or the simulator).
    pub sms_per_second: f64,
    /// `SENDER_LIMIT_WHATSAPP_PER_SECOND`: WhatsApp messages per second per number (default 10).
    pub whatsapp_per_second: f64,
    /// `SENDER_LIMIT_CALLS_PER_SECOND`: calls dialled per second by the account, whichever
    /// number dials (default 1, Twilio's CPS, which is per account).
    pub calls_per_second: f64,
    /// `SENDER_LIMITS`: per-sender overrides, `KEY=RATE` separated by commas, where `KEY` is a
    /// number (its SMS), `whatsapp:NUMBER` or a Messaging Service SID (`MG…`, otherwise
    /// unlimited).
    pub overrides: Vec<(String, f64)>,
}

/// Highest per-sender rate accepted: anything above is a typo.
const MAX_SENDER_RATE: f64 = 100_000.0;
/// Lowest positive per-sender rate: one send in 1,000 s.
const MIN_SENDER_RATE: f64 = 0.001;

fn sender_rate(var: &'static str, raw: &str) -> Result<f64, ConfigError> {
    let rate: f64 = raw.trim().parse().map_err(|e| ConfigError::Invalid {
        var,
        reason: format!("{raw:?}: {e}"),
    })?;
    if rate == 0.0 || (MIN_SENDER_RATE..=MAX_SENDER_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(ConfigError::Invalid {
            var,
            reason: format!(
                "expected 0 (no limit) or {MIN_SENDER_RATE} to {MAX_SENDER_RATE} per second, got {raw}"
            ),
        })
    }
}

impl SenderLimitSettings {
    fn from_env(env: &Env, region: &str) -> Result<Self, ConfigError> {
        let rate = |var: &'static str, default: f64| match env.get(var) {
            None => Ok(default),
            Some(raw) => sender_rate(var, &raw),
        };
        const VAR: &str = "SENDER_LIMITS";
        let mut overrides = Vec::new();
        for pair in env.get(VAR).unwrap_or_default().split(',') {
            let pair = pair.trim();
            if pair.is_empty() {
                continue;
            }
            let Some((key, raw)) = pair.split_once('=') else {
                return Err(ConfigError::Invalid {
                    var: VAR,
                    reason: format!("expected KEY=RATE, got {pair:?}"),
                });
            };
            let key = key.trim();
            let (prefix, number) = match key.split_once(':') {
                Some((p @ "whatsapp", n)) => (Some(p), n),
                _ => (None, key),
            };
            // The number parser ignores letters; a prefix other than `whatsapp:` is a typo.
            if number.contains(':')
                || number.chars().any(|c| c.is_ascii_alphabetic()) && !number.starts_with("MG")
            {
                return Err(ConfigError::Invalid {
                    var: VAR,
                    reason: format!("{key:?}: expected a number, whatsapp:NUMBER or MG…"),
                });
            }
            let key = if prefix.is_none() && number.starts_with("MG") {
                number.to_owned()
            } else {
                let n = PhoneNumber::parse(number, region).map_err(|e| ConfigError::Invalid {
                    var: VAR,
                    reason: format!("{key:?}: {e}"),
                })?;
                match prefix {
                    Some(p) => format!("{p}:{}", n.as_str()),
                    None => n.as_str().to_owned(),
                }
            };
            overrides.push((key, sender_rate(VAR, raw)?));
        }
        Ok(Self {
            sms_per_second: rate("SENDER_LIMIT_SMS_PER_SECOND", 1.0)?,
            whatsapp_per_second: rate("SENDER_LIMIT_WHATSAPP_PER_SECOND", 10.0)?,
            calls_per_second: rate("SENDER_LIMIT_CALLS_PER_SECOND", 1.0)?,
            overrides,
        })
    }
}

/// Settings every process needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// MongoDB.
    pub mongo: MongoSettings,
    /// Twilio.
    pub twilio: TwilioSettings,
    /// `TEMPORAL_TASK_QUEUE`.
    pub task_queue: String,
    /// `PUBLIC_BASE_URL`: where Twilio reaches the API's webhooks. Webhook signatures are
    /// checked against this URL, so it must be exactly what Twilio calls.
    pub public_base_url: Url,
    /// `DEFAULT_REGION`: ISO country code for numbers written without `+`.
    pub default_region: String,
    /// The AI agent.
    pub agent: AgentSettings,
    /// The worker's task queues and slots (the API ignores them).
    pub worker: WorkerSettings,
    /// Send limits per sender (the worker's; the API ignores them).
    pub senders: SenderLimitSettings,
}

impl Settings {
    /// Reads and validates every setting.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let account_sid = env.get("TWILIO_ACCOUNT_SID").ok_or(ConfigError::Missing {
            var: "TWILIO_ACCOUNT_SID",
            hint: "set your Twilio Account SID (AC...), or use scripts/run.sh, which starts the Twilio simulator and sets it",
        })?;
        if !(account_sid.len() == 34
            && account_sid.starts_with("AC")
            && account_sid[2..].bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ConfigError::Invalid {
                var: "TWILIO_ACCOUNT_SID",
                reason: "expected AC followed by 32 hexadecimal digits".to_owned(),
            });
        }
        let auth_token = env.get("TWILIO_AUTH_TOKEN").ok_or(ConfigError::Missing {
            var: "TWILIO_AUTH_TOKEN",
            hint: "set the Twilio auth token; it is needed to check webhook signatures even when an API key is used for REST calls",
        })?;
        let api_key = match (
            env.get("TWILIO_API_KEY_SID"),
            env.get("TWILIO_API_KEY_SECRET"),
        ) {
            (Some(sid), Some(secret)) => Some((sid, SecretString::from(secret))),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    var: "TWILIO_API_KEY_SID",
                    reason: "set both TWILIO_API_KEY_SID and TWILIO_API_KEY_SECRET, or neither"
                        .to_owned(),
                });
            }
        };
        let default_region = env.get_or("DEFAULT_REGION", "US").to_ascii_uppercase();
        // Validate the region once, here, rather than on the first request.
        if let Err(voice_agent_domain::PhoneError::UnknownRegion(_)) =
            PhoneNumber::parse("+14155550100", &default_region)
        {
            return Err(ConfigError::Invalid {
                var: "DEFAULT_REGION",
                reason: format!("{default_region} is not an ISO 3166-1 alpha-2 country code"),
            });
        }
        let from_number = match env.get("TWILIO_FROM_NUMBER") {
            None => None,
            Some(raw) => Some(PhoneNumber::parse(&raw, &default_region).map_err(|e| {
                ConfigError::Invalid {
                    var: "TWILIO_FROM_NUMBER",
                    reason: e.to_string(),
                }
            })?),
        };
        let messaging_service_sid = env.get("TWILIO_MESSAGING_SERVICE_SID");
        if let Some(ms) = &messaging_service_sid
            && !(ms.len() == 34 && ms.starts_with("MG"))
        {
            return Err(ConfigError::Invalid {
                var: "TWILIO_MESSAGING_SERVICE_SID",
                reason: "expected MG followed by 32 hexadecimal digits".to_owned(),
            });
        }
        let timeout_ms: u64 = env.number("TWILIO_TIMEOUT_MS", 10_000)?;
        // A send or dial starts only while its attempt (30 s) has the whole request timeout
        // and a margin left, after any reconciliation lookups: a longer timeout would leave
        // no time to send at all.
        if !(1..=12_000).contains(&timeout_ms) {
            return Err(ConfigError::Invalid {
                var: "TWILIO_TIMEOUT_MS",
                reason: "must be between 1 and 12000 ms".to_owned(),
            });
        }
        let senders = SenderLimitSettings::from_env(env, &default_region)?;
        let public_base_url = env.url("PUBLIC_BASE_URL", "http://127.0.0.1:8080")?;
        if public_base_url.cannot_be_a_base() || public_base_url.host().is_none() {
            return Err(ConfigError::Invalid {
                var: "PUBLIC_BASE_URL",
                reason: "expected an absolute http(s) URL".to_owned(),
            });
        }
        Ok(Self {
            mongo: MongoSettings {
                uri: SecretString::from(env.get_or(
                    "MONGODB_URI",
                    "mongodb://127.0.0.1:27017/?directConnection=true",
                )),
                database: env.get_or("MONGODB_DATABASE", "voice_agent"),
            },
            twilio: TwilioSettings {
                base_url: env.url("TWILIO_BASE_URL", "https://api.twilio.com")?,
                account_sid,
                auth_token: SecretString::from(auth_token),
                api_key,
                from_number,
                messaging_service_sid,
                timeout: Duration::from_millis(timeout_ms),
            },
            task_queue: env.get_or("TEMPORAL_TASK_QUEUE", "voice-agent"),
            public_base_url,
            default_region,
            agent: AgentSettings::from_env(env)?,
            worker: WorkerSettings::from_env(env)?,
            senders,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("TWILIO_ACCOUNT_SID", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("TWILIO_AUTH_TOKEN", "very-secret-token"),
        ]
    }

    #[test]
    fn defaults_fill_everything_but_credentials() {
        let s = Settings::from_env(&Env::from_pairs(base())).unwrap();
        assert_eq!(s.mongo.database, "voice_agent");
        assert_eq!(s.task_queue, "voice-agent");
        assert_eq!(s.default_region, "US");
        assert_eq!(s.twilio.base_url.as_str(), "https://api.twilio.com/");
        assert_eq!(s.twilio.timeout, Duration::from_secs(10));
        assert_eq!(
            s.worker,
            WorkerSettings {
                poll_main: true,
                poll_agent: true,
                main_activity_slots: 100,
                agent_activity_slots: 16,
            }
        );
    }

    #[test]
    fn a_worker_may_poll_only_one_queue() {
        for (value, main, agent) in [
            ("agent", false, true),
            ("main", true, false),
            (" Agent , main ", true, true),
        ] {
            let mut vars = base();
            vars.push(("WORKER_TASK_QUEUES", value));
            let s = Settings::from_env(&Env::from_pairs(vars)).unwrap();
            assert_eq!(
                (s.worker.poll_main, s.worker.poll_agent),
                (main, agent),
                "{value}"
            );
        }
    }

    #[test]
    fn sender_limits_default_to_twilios_and_take_overrides_per_sender() {
        let s = Settings::from_env(&Env::from_pairs(base())).unwrap();
        assert_eq!(
            s.senders,
            SenderLimitSettings {
                sms_per_second: 1.0,
                whatsapp_per_second: 10.0,
                calls_per_second: 1.0,
                overrides: vec![],
            }
        );
        let mut vars = base();
        vars.push(("SENDER_LIMIT_SMS_PER_SECOND", "0"));
        vars.push((
            "SENDER_LIMITS",
            "4155550100=5, whatsapp:+1 415 555 0100=0.5,MG00000000000000000000000000000000=30",
        ));
        let s = Settings::from_env(&Env::from_pairs(vars)).unwrap();
        assert_eq!(s.senders.sms_per_second, 0.0);
        assert_eq!(
            s.senders.overrides,
            vec![
                ("+14155550100".to_owned(), 5.0),
                ("whatsapp:+14155550100".to_owned(), 0.5),
                ("MG00000000000000000000000000000000".to_owned(), 30.0),
            ]
        );
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let err = Settings::from_env(&Env::from_pairs(Vec::<(String, String)>::new())).unwrap_err();
        assert!(err.to_string().contains("TWILIO_ACCOUNT_SID"), "{err}");
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Settings::from_env(&Env::from_pairs(base())).unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("very-secret-token"), "{printed}");
    }

    #[test]
    fn a_model_needs_a_name_and_keeps_its_key_secret() {
        let mut vars = base();
        vars.push(("AGENT_MODEL_BASE_URL", "http://127.0.0.1:11434/v1"));
        let err = Settings::from_env(&Env::from_pairs(vars.clone())).unwrap_err();
        assert!(err.to_string().contains("AGENT_MODEL"), "{err}");
        vars.push(("AGENT_MODEL", "llama3"));
        let mut streaming = vars.clone();
        streaming.push(("AGENT_MODEL_STREAM", "maybe"));
        let err = Settings::from_env(&Env::from_pairs(streaming)).unwrap_err();
        assert!(err.to_string().contains("AGENT_MODEL_STREAM"), "{err}");
        vars.push(("AGENT_MODEL_API_KEY", "sk-very-secret"));
        let s = Settings::from_env(&Env::from_pairs(vars)).unwrap();
        assert_eq!(s.agent.model.as_ref().unwrap().model, "llama3");
        assert!(!format!("{s:?}").contains("sk-very-secret"));
    }

    #[test]
    fn bad_values_are_rejected_at_start_up() {
        for (var, value) in [
            ("TWILIO_ACCOUNT_SID", "nope"),
            ("DEFAULT_REGION", "XX"),
            ("TWILIO_FROM_NUMBER", "12"),
            ("TWILIO_TIMEOUT_MS", "soon"),
            ("PUBLIC_BASE_URL", "not a url"),
            ("TWILIO_API_KEY_SID", "SK123"),
            ("AGENT_MODEL_BASE_URL", "nope"),
            ("AGENT_MODEL_TIMEOUT_MS", "soon"),
            ("WORKER_TASK_QUEUES", "sms"),
            ("WORKER_TASK_QUEUES", ","),
            ("WORKER_MAIN_ACTIVITY_SLOTS", "0"),
            ("WORKER_MAIN_ACTIVITY_SLOTS", "many"),
            ("WORKER_AGENT_ACTIVITY_SLOTS", "0"),
            ("WORKER_AGENT_ACTIVITY_SLOTS", "1000000"),
            ("SENDER_LIMIT_SMS_PER_SECOND", "-1"),
            ("SENDER_LIMIT_CALLS_PER_SECOND", "fast"),
            ("SENDER_LIMITS", "+14155550100"),
            ("SENDER_LIMITS", "+14155550100=1e9"),
            ("SENDER_LIMITS", "sms:12=1"),
            ("SENDER_LIMITS", "call:+14155550100=1"),
        ] {
            let mut vars = base();
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            let err = Settings::from_env(&Env::from_pairs(vars)).unwrap_err();
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
    }
}
