//! A small round-robin HTTP load balancer for tests that run several api processes, standing
//! in for the deployment's Caddy (`docker/Caddyfile`): Twilio (the simulator) addresses every
//! webhook and status callback to it, as to a deployment's one public URL, and it spreads them
//! over the apis.
//!
//! Like Caddy with `lb_retries`, a request whose connection to an upstream fails goes to the
//! next one, whatever its method: that upstream never saw it. Like Caddy's `lb_retry_match` on
//! `/twilio/*`, a webhook cut off after it was sent (the api died mid-request) is replayed on
//! the next upstream: Twilio's webhooks are idempotent here (messages and calls are keyed on
//! their SIDs, a call's turns on update ids), so a replay cannot do anything twice. Other
//! requests cut off mid-way get 502, as from a real balancer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Largest request body passed on (webhooks are a few kilobytes; uploads do not come this way).
const MAX_BODY: usize = 4 << 20;

/// Longer than Twilio's 15 s webhook timeout, so the caller gives up first, as with Twilio.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Hop-by-hop headers (RFC 9110 section 7.6.1) and the ones the client recomputes.
const NOT_FORWARDED: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::HOST,
    header::UPGRADE,
];

#[derive(Default)]
struct Shared {
    upstreams: RwLock<Vec<String>>,
    next: AtomicUsize,
    /// Requests that an upstream failed and the next one answered.
    failovers: AtomicU64,
    /// Webhooks replayed after an upstream died holding them.
    replays: AtomicU64,
}

/// The balancer; it stops with the test's runtime.
pub(crate) struct Balancer {
    /// `http://127.0.0.1:<port>`: what `PUBLIC_BASE_URL` is set to.
    pub(crate) url: String,
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Proxy {
    shared: Arc<Shared>,
    client: reqwest::Client,
}

impl Balancer {
    /// Listens on a free loopback port with no upstream yet (502 until [`Self::add_upstream`]),
    /// so its URL can be given to the apis it will front.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        // reqwest is built without a default TLS provider; the stack installs the same one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let proxy = Proxy {
            shared: shared.clone(),
            client: reqwest::Client::builder()
                .timeout(UPSTREAM_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        };
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            url: format!("http://{addr}"),
            shared,
        })
    }

    /// Puts an api (its base URL) into the rotation.
    pub(crate) fn add_upstream(&self, url: &str) {
        self.shared
            .upstreams
            .write()
            .expect("no test panics while holding the upstreams")
            .push(url.to_owned());
    }

    /// Requests an upstream failed and another answered, and how many of those were webhooks
    /// replayed after being cut off.
    pub(crate) fn failovers(&self) -> (u64, u64) {
        (
            self.shared.failovers.load(Ordering::Relaxed),
            self.shared.replays.load(Ordering::Relaxed),
        )
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large for the balancer",
        )
            .into_response();
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let idempotent = parts.uri.path().starts_with("/twilio/");
    let mut headers = std::mem::take(&mut parts.headers);
    for name in NOT_FORWARDED {
        headers.remove(name);
    }
    let upstreams = proxy
        .shared
        .upstreams
        .read()
        .expect("no test panics while holding the upstreams")
        .clone();
    let first = proxy.shared.next.fetch_add(1, Ordering::Relaxed);
    for attempt in 0..upstreams.len() {
        let upstream = &upstreams[(first + attempt) % upstreams.len()];
        let sent = proxy
            .client
            .request(parts.method.clone(), format!("{upstream}{path_and_query}"))
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await;
        let answered = match sent {
            Ok(response) => {
                let status = response.status();
                let response_headers = response.headers().clone();
                response
                    .bytes()
                    .await
                    .map(|bytes| (status, response_headers, bytes))
            }
            Err(e) => Err(e),
        };
        match answered {
            Ok((status, response_headers, bytes)) => {
                if attempt > 0 {
                    proxy.shared.failovers.fetch_add(1, Ordering::Relaxed);
                }
                return reply(status, &response_headers, bytes);
            }
            // Never reached the upstream: any request may go to the next one.
            Err(e) if e.is_connect() => {}
            Err(_) if idempotent => {
                proxy.shared.replays.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => break,
        }
    }
    (StatusCode::BAD_GATEWAY, "no upstream answered").into_response()
}

fn reply(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in headers {
        if !NOT_FORWARDED.contains(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}
