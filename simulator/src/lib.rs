//! A local Twilio simulator, so campaigns and agents can be exercised end to end before any
//! real message is paid for.
//!
//! It speaks Twilio's wire protocol only: the 2010-04-01 REST Messages resource (HTTP Basic
//! auth, Twilio's JSON shapes, error codes and paging) for SMS and WhatsApp, signed status
//! callbacks and signed inbound SMS / WhatsApp webhooks. Test hooks live under `/admin/…`.
//!
//! # Behaviour
//!
//! - The simulated account owns every number: any `From` is accepted except Twilio's magic
//!   test numbers, which fail with their documented codes (`+15005550001` → 21212,
//!   `+15005550007` → 21606, `+15005550008` → 21611; `To` `+15005550001` → 21211,
//!   `+15005550002` → 21612, `+15005550003` → 21408, `+15005550004` → 21610,
//!   `+15005550009` → 21614).
//! - Created messages start `queued` (`accepted` with a Messaging Service), then move to
//!   `sent` and `delivered` (WhatsApp: then `read`), or a scripted outcome, one step per
//!   `--callback-delay-ms`. Each change after the first is posted to `StatusCallback`, signed
//!   with the auth token, at most `--callback-concurrency` at a time; connection failures are
//!   retried with backoff.
//! - WhatsApp (`whatsapp:+E164` on both sides, else 21910): a free-form message outside the
//!   24-hour window since the user's last inbound message is accepted (201) and then `failed`
//!   with 63016; `ContentSid` templates (21655 / 21656 on bad input) go out regardless and are
//!   rendered if registered. Windows follow a simulated clock that tests can move.
//! - An inbound SMS `STOP` (and Twilio's other opt-out keywords) makes SMS from that sender to
//!   that user fail with 400 / 21610 until `START`, unless `--twilio-opt-out false`.
//! - A path `AccountSid` other than the configured one answers 404 / 20404, the way Twilio
//!   hides resources of other accounts.
//! - Faults (latency, random 429 / 20429 and 500 / 20500, per-sender rate limit) apply to
//!   authenticated REST requests and can be changed at run time.
//! - State is in memory and lost on exit. It is laid out for campaigns: a message costs about
//!   300 bytes, per-number queries are indexed, and no request waits on I/O under the lock
//!   (`examples/load.rs` measures throughput).
//!
//! # Admin API (JSON; loopback clients only unless `--admin-allow-remote`)
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /admin/health` | | `{"status":"ok","account_sid"}` |
//! | `GET /admin/numbers` | | `{"numbers":{NUMBER: config}}` |
//! | `GET`/`PUT`/`DELETE /admin/numbers/{number}` | `{"sms_url"?, "outcome"?: {"status"?: "delivered"\|"read"\|"undelivered"\|"failed"\|"sent", "error_code"?}}` | the config / 204 / 404 |
//! | `POST /admin/inbound` | `{"from","to","body"?,"media_urls"?,"profile_name"?,"bad_signature"?}` | `{"message_sid","url","status","content_type","body","error"}` |
//! | `POST /admin/inbound/{sid}/redeliver` | `{"bad_signature"?}` or empty | same as above |
//! | `GET`/`PUT /admin/faults` | `{"error_rate"?,"too_many_requests_rate"?,"latency_ms"?,"rate_limit_mps"?,"accept_delay_ms"?,"callback_loss_rate"?,"twilio_opt_out"?}` | current faults |
//! | `GET /admin/opt-outs` | | `{"enabled","refused","opt_outs":[{"from":USER,"to":SENDER}]}` |
//! | `GET /admin/ledger[?to=NUMBER]` | | `{"total","messages":[{sid,from,to,body,content_sid,content_variables,status,error_code,…}]}` |
//! | `GET /admin/ledger/counts[?to=NUMBER]` | | `{"total","by_to":{NUMBER:n},"by_status":{STATUS:n}}` |
//! | `GET /admin/ledger/duplicates[?body=TEXT][&content_sid=HX…]` | | `{"total","numbers","duplicates":[{to,count,body,content_sid,content_variables,sids}]}` |
//! | `POST /admin/ledger/missing` | `{"numbers":[…],"body"?,"content_sid"?}` | `{"checked","total","missing":[…]}` |
//! | `GET /admin/content`, `GET`/`PUT`/`DELETE /admin/content/{HXsid}` | `{"body":"Hi {{1}}","variables"?:{"1":"default"}}` | `{"templates":{…}}` / `{"sid","body","variables"}` / 204 / 404 |
//! | `GET`/`PUT /admin/whatsapp/sessions` | `{"from":USER,"to":SENDER,"last_inbound_at"?: RFC 3339 \| null}` | `{"now","sessions":[…]}` / `{"from","to","last_inbound_at","open","expires_at"}` |
//! | `GET`/`PUT /admin/clock` | `{"offset_seconds"}` | `{"offset_seconds","now"}` |
//! | `POST /admin/reset` | | 204 |
//!
//! # Modules
//!
//! - [`config`]: command-line / `SIMULATOR_*` settings.
//! - `rest`: the Twilio REST surface; `admin`: the admin API; `webhook`: signed deliveries;
//!   `state`: shared settings, faults and the lock; `store`: messages and their indexes;
//!   `whatsapp`: windows and templates; `optout`: STOP / START keywords.
//!
//! # Example
//!
//! ```no_run
//! use tokio_util::sync::CancellationToken;
//! use voice_agent_simulator::{Config, run};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! let shutdown = CancellationToken::new();
//! let server = tokio::spawn(run(listener, Config::default(), shutdown.clone()));
//! // … point a Twilio client at `url` …
//! # let _ = url;
//! shutdown.cancel();
//! server.await??;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod admin;
mod calls;
pub mod config;
mod optout;
mod rest;
mod segments;
mod state;
mod store;
mod util;
mod webhook;
mod whatsapp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError, Secret};

use crate::state::{AppState, Shared};

/// How long shutdown waits for in-flight status callbacks to notice cancellation.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the simulator could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid; fix the flag or `SIMULATOR_*` variable named in the cause.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The HTTP client for webhooks could not be built (usually a TLS set-up problem).
    #[error("failed to build the webhook HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The listener failed while serving.
    #[error("failed to serve HTTP")]
    Serve(#[source] std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Installs rustls' ring provider as the process default unless one is installed already.
///
/// reqwest is built without a provider; binaries call this at start, and [`run`] calls it too
/// so embedding tests need not.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: any provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Serves the simulator on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    install_crypto_provider();
    let http = reqwest::Client::builder()
        // Twilio does not follow redirects for webhooks.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(Error::HttpClient)?;
    let state: AppState = Arc::new(Shared::new(&config, http, &shutdown));
    tracing::info!(
        account_sid = %config.account_sid,
        rate_limit_mps = config.rate_limit_mps,
        callback_delay_ms = config.callback_delay_ms,
        "simulator started"
    );

    axum::serve(
        listener,
        app(Arc::clone(&state)).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .map_err(Error::Serve)?;

    // Deliveries run under a child of `shutdown`, so they are already stopping.
    state.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some status callbacks were still running at shutdown");
    }
    tracing::info!("simulator stopped");
    Ok(())
}

fn app(state: AppState) -> Router {
    Router::new()
        .merge(rest::router(Arc::clone(&state)))
        .merge(admin::router(Arc::clone(&state)))
        .fallback(rest::not_found)
        .with_state(state)
}
