//! The API process. It never does a workflow's work itself: it validates input, starts,
//! signals and queries workflows, and reads MongoDB.
//!
//! | module | surface |
//! |---|---|
//! | [`grpc`] | `voiceagent.v1.MessagingService` for campaign managers and `vactl`, with server reflection |
//! | [`campaigns`] | `voiceagent.v1.CampaignService` and `/api/campaigns` (create, start, pause, resume, cancel, rate, progress) |
//! | [`campaign_items`] | a campaign's items by status and search, one item's attempts |
//! | [`contact_history`] | one contact's opt-out state, messages, calls and campaigns |
//! | [`webhooks`] | Twilio's signed webhooks: inbound SMS/WhatsApp and message status callbacks |
//! | [`inbox`] | the durable inbox: webhook work stored first, handed to workflows behind the answer |
//! | [`ops`] | `/healthz` and Prometheus `/metrics` |
//! | [`session`] | the live-session engine: replies streamed from the api, settled turns signalled to the conversation's workflow |
//! | [`chat`] | the web app's AI chat over a WebSocket (`/api/live/chat`), channel `web` |
//! | [`live`] | Server-Sent Events for the web app (`/api/events`, a campaign's progress stream) |
//! | [`profiles`] | agent profiles, versioned (`/api/agent-profiles`), and the read-only settings (`/api/settings`) |
//! | [`stats`] | the dashboard's figures (`/api/stats`) |
//! | [`openapi`] | the JSON API's OpenAPI document (`/api/openapi.json`, `/api/docs`) |
//! | [`web`] | the web app's static files, with client routes answered by `index.html` |
//! | [`auth`] | users, API keys, sessions, the auth layers and the audit log |
//!
//! HTTP and gRPC listen on separate ports (`API_HTTP_ADDR`, `API_GRPC_ADDR`) and stop together
//! on the shutdown token.
#![warn(missing_docs)]

pub mod auth;
pub mod campaign_items;
pub mod campaign_runs;
pub mod campaigns;
pub mod chat;
pub mod contact_history;
pub mod contacts;
pub mod conversations;
pub mod grpc;
pub mod inbox;
pub mod live;
pub mod openapi;
pub mod ops;
pub mod profiles;
pub mod relay;
pub mod session;
pub mod stats;
pub mod voice;
pub mod web;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use voice_agent_config::{ConfigError, Env, Settings};
use voice_agent_store::MongoStore;

/// Settings of the API process: the shared ones plus its listeners.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Shared settings (MongoDB, Twilio, task queue, public URL, region).
    pub common: Settings,
    /// `API_HTTP_ADDR`: webhooks, health, metrics.
    pub http_addr: SocketAddr,
    /// `API_GRPC_ADDR`: the gRPC API.
    pub grpc_addr: SocketAddr,
    /// `API_MAX_BODY_BYTES`: larger HTTP request bodies get 413.
    pub max_body_bytes: usize,
    /// `HELP_REPLY`: the answer to an inbound HELP.
    pub help_reply: String,
    /// `CONTACTS_MAX_UPLOAD_BYTES`: larger contact files are refused (HTTP 413).
    pub contacts_max_upload_bytes: usize,
    /// `CONTACTS_MAX_ROWS`: contact files with more data rows are refused.
    pub contacts_max_rows: usize,
    /// `WEB_DIR`: the built web app (`web/dist` by default).
    pub web_dir: PathBuf,
    /// Access control (`API_BOOTSTRAP_*`, `API_SESSION_TTL_SECS`, `API_ALLOWED_HOSTS`, ...).
    pub auth: auth::AuthSettings,
    /// `TEMPORAL_UI_URL`: the Temporal Web UI, for links to workflows; none when unset.
    pub temporal_ui_url: Option<url::Url>,
}

impl ApiSettings {
    /// Reads and validates the settings.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let addr = |var: &'static str, default: &str| {
            env.get_or(var, default)
                .parse::<SocketAddr>()
                .map_err(|e| ConfigError::Invalid {
                    var,
                    reason: e.to_string(),
                })
        };
        let common = Settings::from_env(env)?;
        Ok(Self {
            auth: auth::AuthSettings::from_env(env, &common.public_base_url)?,
            common,
            http_addr: addr("API_HTTP_ADDR", "127.0.0.1:8080")?,
            grpc_addr: addr("API_GRPC_ADDR", "127.0.0.1:50051")?,
            max_body_bytes: env.number("API_MAX_BODY_BYTES", 64 * 1024)?,
            help_reply: env.get_or(
                "HELP_REPLY",
                "Voice Agent: reply STOP to unsubscribe, START to resubscribe. Msg & data rates may apply.",
            ),
            contacts_max_upload_bytes: env.number("CONTACTS_MAX_UPLOAD_BYTES", 20 * 1024 * 1024)?,
            contacts_max_rows: env.number("CONTACTS_MAX_ROWS", 1_000_000)?,
            temporal_ui_url: env
                .get("TEMPORAL_UI_URL")
                .filter(|u| !u.trim().is_empty())
                .map(|u| {
                    url::Url::parse(u.trim())
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https"))
                        .ok_or(ConfigError::Invalid {
                            var: "TEMPORAL_UI_URL",
                            reason: "expected an http(s) URL, e.g. http://localhost:8233".to_owned(),
                        })
                })
                .transpose()?,
            web_dir: env
                .get("WEB_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(web::default_dir),
        })
    }
}

/// What handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// MongoDB.
    pub store: MongoStore,
    /// Temporal.
    pub temporal: temporalio_client::Client,
    /// Settings.
    pub settings: Arc<ApiSettings>,
    /// The agents file (`AGENTS_FILE`) as loaded at start-up, imported into the store then;
    /// profiles are looked up in the store.
    pub agents: Arc<voice_agent_agent::AgentDirectory>,
    /// Campaign items' status callbacks, written in groups.
    pub item_callbacks: webhooks::ItemCallbackWriter,
    /// Webhook work stored for the workflows (inbound messages, call progress).
    pub inbox: inbox::Inbox,
    /// Access control: settings and the sign-in rate limiter.
    pub auth: auth::AuthState,
    /// The web app's live streams.
    pub live: live::Live,
    /// Running campaigns' workflow state as last queried, shared by every progress read.
    pub campaign_runs: campaign_runs::RunCache<campaigns::RunState>,
    /// Live sessions (the browser chat): the streaming agent and the sessions' bounds.
    pub live_engine: session::LiveEngine,
}

/// The bound, ready-to-run API.
pub struct Application {
    http: TcpListener,
    grpc: TcpListener,
    state: AppState,
}

impl AppState {
    /// `name` when it names a stored agent profile; empty means none.
    pub(crate) async fn agent_profile(
        &self,
        field: &'static str,
        name: &str,
    ) -> Result<Option<String>, grpc::ApiError> {
        let name = name.trim();
        if name.is_empty() {
            return Ok(None);
        }
        let found = self
            .store
            .get_profile(name)
            .await
            .map_err(|e| grpc::ApiError::Unavailable(e.into()))?;
        if found.is_none() {
            return Err(grpc::ApiError::InvalidArgument {
                field,
                reason: format!("no agent profile named {name:?} (see Settings, or AGENTS_FILE)"),
            });
        }
        Ok(Some(name.to_owned()))
    }
}

impl Application {
    /// Connects to MongoDB (creating collections and indexes) and Temporal, and binds both
    /// listeners (port 0 picks a free port).
    pub async fn build(settings: ApiSettings) -> anyhow::Result<Self> {
        ops::install_metrics_recorder();
        let store = MongoStore::connect(
            settings.common.mongo.uri.expose_secret(),
            &settings.common.mongo.database,
        )
        .await
        .context("Failed to configure MongoDB")?;
        store
            .ensure_schema()
            .await
            .context("Failed to create MongoDB collections and indexes")?;
        auth::bootstrap(&store, &settings.auth)
            .await
            .context("Failed to set up the bootstrap admin")?;
        let agents = settings
            .common
            .agent
            .directory()
            .context("Failed to load the agents file")?;
        voice_agent_activities::profiles::import_directory(&store, &agents)
            .await
            .context("Failed to import the agents file's profiles")?;
        // Live sessions stream the reply from here, with the agent the worker uses.
        let agent = settings
            .common
            .agent
            .agent(&agents)
            .context("Failed to configure the agent")?;
        let temporal = voice_agent_config::connect_temporal("voice-agent-api").await?;
        let http = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("Failed to bind the HTTP port {}", settings.http_addr))?;
        let grpc = TcpListener::bind(settings.grpc_addr)
            .await
            .with_context(|| format!("Failed to bind the gRPC port {}", settings.grpc_addr))?;
        Ok(Self {
            http,
            grpc,
            state: AppState {
                item_callbacks: webhooks::ItemCallbackWriter::start(store.clone()),
                inbox: inbox::Inbox::new(store.clone()),
                auth: auth::AuthState::new(settings.auth.clone()),
                live: live::Live::default(),
                campaign_runs: campaign_runs::RunCache::default(),
                live_engine: session::LiveEngine::new(agent),
                store,
                temporal,
                settings: Arc::new(settings),
                agents: Arc::new(agents),
            },
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish. The inbox
    /// drainer runs beside the servers and stops with them.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let drain = tokio::spawn(self.state.inbox.clone().drain(
            self.state.temporal.clone(),
            self.state.settings.common.task_queue.clone(),
            shutdown.clone(),
        ));
        let live = tokio::spawn(
            self.state
                .live
                .clone()
                .run(self.state.store.clone(), shutdown.clone()),
        );
        let counters = tokio::spawn(stats::keep_counters(
            self.state.store.clone(),
            shutdown.clone(),
        ));
        let http_app = router(self.state.clone());
        let http_shutdown = shutdown.clone();
        // Upgraded sockets are not the server's to wait for: they close on the same token.
        let engine = self.state.live_engine.clone();
        let sessions_shutdown = shutdown.clone();
        tokio::spawn(async move {
            sessions_shutdown.cancelled().await;
            engine.close();
        });
        // Either server ending (an error, or shutdown) stops the other and the drainer.
        let http = async {
            let r = axum::serve(
                self.http,
                http_app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await
            .context("HTTP server failed");
            shutdown.cancel();
            r
        };
        let grpc = async {
            let r = grpc::serve(self.state, self.grpc, shutdown.clone()).await;
            shutdown.cancel();
            r
        };
        let (h, g) = tokio::join!(http, grpc);
        let _ = drain.await;
        let _ = live.await;
        let _ = counters.await;
        h.and(g)
    }
}

/// The HTTP routes: webhooks, health, metrics, the REST API, all behind the auth layer.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let max_upload = state.settings.contacts_max_upload_bytes;
    let web_dir = state.settings.web_dir.clone();
    Router::new()
        .merge(webhooks::routes())
        .merge(contacts::routes())
        .merge(campaigns::routes())
        .merge(conversations::routes())
        .merge(chat::routes())
        .merge(voice::webhook_routes())
        .merge(relay::routes())
        .merge(voice::api_routes())
        .merge(ops::routes())
        .merge(openapi::routes())
        .merge(auth::handlers::routes())
        .merge(live::routes())
        .merge(stats::routes())
        .merge(profiles::routes())
        .merge(campaign_items::routes())
        .merge(contact_history::routes())
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(15),
        ))
        // Contact uploads are far larger and slower than other requests: merged after the
        // global body limit and timeout, with their own.
        .merge(contacts::upload_routes(max_upload))
        .merge(web::routes(&web_dir))
        // Outside every route's own layers, so nothing (an upload's body) is read before the
        // caller is known; inside the trace layer, so refusals are traced.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ))
        // Paths carry phone numbers (conversation ids, `?to=`): masked like workflow ids, and
        // the query left out.
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                tracing::debug_span!(
                    "request",
                    method = %req.method(),
                    path = %voice_agent_domain::mask_workflow_id(req.uri().path()),
                )
            }),
        )
        .with_state(state)
}
