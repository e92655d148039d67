//! Credentials: every gRPC call carries `authorization: Bearer <key>` from `--api-key` /
//! `VOICE_AGENT_API_KEY`, and the access-control commands (`users`, `keys`, `audit`) use the
//! REST API at `--http` with the same key.

use std::sync::OnceLock;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The key for this run, set once from the command line.
static API_KEY: OnceLock<Option<String>> = OnceLock::new();

/// Where `scripts/run.sh` keeps the local admin key, relative to the repository root.
const LOCAL_KEY_FILE: &str = ".data/local-api-key";

/// Uses `key`, or else the local stack's key file when run from the repository root, so the
/// README's first commands work without setting anything.
pub(crate) fn set_key(key: Option<String>) {
    let key = key
        .filter(|k| !k.trim().is_empty())
        .or_else(|| std::fs::read_to_string(LOCAL_KEY_FILE).ok())
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    let _ = API_KEY.set(key);
}

fn key() -> Option<&'static str> {
    API_KEY.get().and_then(|k| k.as_deref())
}

/// Adds the bearer key to every call.
#[derive(Clone)]
pub(crate) struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel whose calls carry the key.
pub(crate) type Authed = InterceptedService<Channel, Bearer>;

/// Connects to the gRPC API at `api`.
pub(crate) async fn channel(api: &str) -> anyhow::Result<Authed> {
    let value = key()
        .map(|k| format!("Bearer {k}").parse())
        .transpose()
        .context("VOICE_AGENT_API_KEY is not a valid header value")?;
    let channel = Channel::from_shared(api.to_owned())
        .with_context(|| format!("not a URL: {api}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the API at {api}"))?;
    Ok(InterceptedService::new(channel, Bearer(value)))
}

/// Users who sign in to the web app.
#[derive(Subcommand)]
pub(crate) enum UsersCommand {
    /// List users.
    List,
    /// Create a user; the password is read from `--password` or `VACTL_NEW_PASSWORD`.
    Create {
        #[arg(long)]
        email: String,
        /// admin, manager or viewer.
        #[arg(long)]
        role: String,
        #[arg(long, env = "VACTL_NEW_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Change a user's role, disable or enable them, or reset their password.
    Update {
        /// `usr_…`.
        id: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        disabled: Option<bool>,
        #[arg(long, env = "VACTL_NEW_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

/// API keys for programs.
#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// List keys by prefix (the keys themselves are never shown again).
    List,
    /// Create a key and print it once.
    Create {
        /// What it is for.
        #[arg(long)]
        name: String,
        /// admin, manager or viewer.
        #[arg(long)]
        role: String,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a key by its prefix.
    Revoke {
        /// The prefix shown by `keys list`.
        prefix: String,
    },
}

async fn rest(
    http: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{}{path}", http.trim_end_matches('/')));
    if let Some(k) = key() {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach the API at {http}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    Ok(if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}

fn print(v: &Value) -> anyhow::Result<()> {
    if !v.is_null() {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}

pub(crate) async fn users(http: &str, command: UsersCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let v = match command {
        UsersCommand::List => rest(http, Method::GET, "/api/users", None).await?,
        UsersCommand::Create {
            email,
            role,
            password,
        } => {
            let body = json!({ "email": email, "role": role, "password": password });
            rest(http, Method::POST, "/api/users", Some(body)).await?
        }
        UsersCommand::Update {
            id,
            role,
            disabled,
            password,
        } => {
            let body = json!({ "role": role, "disabled": disabled, "password": password });
            rest(http, Method::PATCH, &format!("/api/users/{id}"), Some(body)).await?
        }
    };
    print(&v)
}

pub(crate) async fn keys(http: &str, command: KeysCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let v = match command {
        KeysCommand::List => rest(http, Method::GET, "/api/api-keys", None).await?,
        KeysCommand::Create {
            name,
            role,
            expires_in_days,
        } => {
            let body = json!({ "name": name, "role": role, "expires_in_days": expires_in_days });
            rest(http, Method::POST, "/api/api-keys", Some(body)).await?
        }
        KeysCommand::Revoke { prefix } => {
            rest(
                http,
                Method::DELETE,
                &format!("/api/api-keys/{prefix}"),
                None,
            )
            .await?
        }
    };
    print(&v)
}

pub(crate) async fn audit(http: &str, limit: u32, cursor: Option<String>) -> anyhow::Result<()> {
    let mut path = format!("/api/audit?limit={limit}");
    if let Some(c) = cursor {
        path.push_str(&format!("&cursor={c}"));
    }
    print(&rest(http, reqwest::Method::GET, &path, None).await?)
}
