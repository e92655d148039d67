//! Spawns the simulator in-process and a webhook receiver to observe what it sends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voice_agent_simulator::{Config, install_crypto_provider, run};

pub(crate) const ACCOUNT_SID: &str = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
pub(crate) const AUTH_TOKEN: &str = "simulator-auth-token";
pub(crate) const API_KEY_SID: &str = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub(crate) const API_KEY_SECRET: &str = "api-key-secret";

/// Upper bound for anything the tests wait for; polling stops as soon as the condition holds.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) struct TestApp {
    pub(crate) base_url: String,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
    server: Option<JoinHandle<voice_agent_simulator::Result<()>>>,
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub(crate) async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    install_crypto_provider();
    let mut config = Config {
        callback_delay_ms: 5,
        api_key_sid: Some(API_KEY_SID.to_owned()),
        api_key_secret: Some(voice_agent_simulator::Secret::new(API_KEY_SECRET)),
        ..Config::default()
    };
    configure(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run(listener, config, shutdown.clone()));
    TestApp {
        base_url,
        http: reqwest::Client::new(),
        shutdown,
        server: Some(server),
    }
}

impl TestApp {
    pub(crate) fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            self.base_url
        )
    }

    pub(crate) fn message_url(&self, sid: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
            self.base_url
        )
    }

    pub(crate) fn admin_url(&self, path: &str) -> String {
        format!("{}/admin/{path}", self.base_url)
    }

    /// POSTs a message with the account's credentials; returns status and JSON body.
    pub(crate) async fn create_message(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.messages_url())
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
            .form(form)
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    pub(crate) async fn get_json(&self, url: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(url)
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    pub(crate) async fn admin_get(&self, path: &str) -> Value {
        let response = self.http.get(self.admin_url(path)).send().await.unwrap();
        assert!(response.status().is_success(), "GET /admin/{path}");
        response.json().await.unwrap()
    }

    pub(crate) async fn admin_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, self.admin_url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        status_and_json(response).await
    }

    /// Polls a message until `done` holds for its JSON, or panics after [`WAIT`].
    pub(crate) async fn wait_for_message(&self, sid: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, message) = self.get_json(&self.message_url(sid)).await;
            if done(&message) {
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {sid} never reached the expected state: {message}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and waits for `run` to return.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        let server = self.server.take().unwrap();
        tokio::time::timeout(WAIT, server)
            .await
            .expect("run did not return after shutdown")
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) async fn status_and_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, json)
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Full URL as requested, i.e. what Twilio signs.
    pub(crate) url: String,
    pub(crate) headers: HeaderMap,
    pub(crate) params: Vec<(String, String)>,
}

impl Received {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn params_map(&self) -> HashMap<&str, &str> {
        self.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub(crate) fn signature_is_valid(&self) -> bool {
        voice_agent_twilio::signature::validate(
            AUTH_TOKEN,
            &self.url,
            &self.params,
            self.header("X-Twilio-Signature").unwrap_or_default(),
        )
    }
}

/// A webhook endpoint that records every POST and answers with fixed TwiML.
pub(crate) struct Receiver {
    pub(crate) base_url: String,
    requests: mpsc::UnboundedReceiver<Received>,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct ReceiverState {
    base_url: String,
    sender: mpsc::UnboundedSender<Received>,
}

pub(crate) const TWIML_REPLY: &str =
    r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thanks!</Message></Response>"#;

pub(crate) async fn spawn_receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let base_url = format!("http://{address}");
    let (sender, requests) = mpsc::unbounded_channel();
    let state = ReceiverState {
        base_url: base_url.clone(),
        sender,
    };
    let app = Router::new()
        .route("/{*path}", post(record))
        .with_state(state);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .unwrap();
    });
    Receiver {
        base_url,
        requests,
        shutdown,
    }
}

async fn record(
    State(state): State<ReceiverState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
    let _ = state.sender.send(Received {
        url: format!("{}{uri}", state.base_url),
        headers,
        params,
    });
    ([("content-type", "text/xml")], TWIML_REPLY)
}

impl Receiver {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Next recorded request, or panics after [`WAIT`].
    pub(crate) async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("no webhook request arrived in time")
            .expect("receiver closed")
    }

    /// Requests recorded so far, without waiting.
    pub(crate) fn drain(&mut self) -> Vec<Received> {
        let mut received = Vec::new();
        while let Ok(request) = self.requests.try_recv() {
            received.push(request);
        }
        received
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
