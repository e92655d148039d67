//! A throwaway fake of Twilio's REST API: records each request and answers with a canned response. It only
//! checks request shape; behaviour tests belong against the project's simulator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::SecretString;
use tokio::net::TcpListener;
use url::Url;
use voice_agent_twilio::client::{Auth, TwilioClient, TwilioConfig};

pub(crate) const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub(crate) const AUTH_TOKEN: &str = "test-auth-token";

/// What the fake saw.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) authorization: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) accept: Option<String>,
    pub(crate) body: String,
}

impl Recorded {
    /// The form body as ordered pairs (repeated keys preserved).
    pub(crate) fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body).expect("form body")
    }
}

/// How the fake answers.
#[derive(Clone)]
pub(crate) enum Reply {
    Json(StatusCode, &'static str),
    Text(StatusCode, &'static str),
    /// Never answers, to exercise the client timeout.
    Hang,
    /// Answers each successive request with the next JSON body.
    Sequence(Vec<&'static str>),
}

#[derive(Clone)]
struct FakeState {
    reply: Reply,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

pub(crate) struct FakeTwilio {
    pub(crate) base_url: Url,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeTwilio {
    pub(crate) async fn start(reply: Reply) -> Self {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let state = FakeState {
            reply,
            recorded: Arc::clone(&recorded),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        // Dropped with the test's runtime; nothing to shut down explicitly.
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: Url::parse(&format!("http://{addr}")).expect("url"),
            recorded,
        }
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("lock").clone()
    }

    pub(crate) fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(
            requests.len(),
            1,
            "expected exactly one request: {requests:?}"
        );
        requests.into_iter().next().expect("one request")
    }

    pub(crate) fn client(&self) -> TwilioClient {
        self.client_with(
            Auth::AuthToken(SecretString::from(AUTH_TOKEN)),
            Duration::from_secs(5),
        )
    }

    pub(crate) fn client_with(&self, auth: Auth, timeout: Duration) -> TwilioClient {
        client_for(self.base_url.clone(), auth, timeout)
    }
}

pub(crate) fn client_for(base_url: Url, auth: Auth, timeout: Duration) -> TwilioClient {
    // Tests share a process; whichever installs first wins, the rest are no-ops.
    let _ = rustls::crypto::ring::default_provider().install_default();
    TwilioClient::new(TwilioConfig {
        base_url,
        timeout,
        ..TwilioConfig::new(ACCOUNT_SID, auth)
    })
    .expect("client")
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    let encoded = BASE64.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

async fn handle(
    State(state): State<FakeState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let index = {
        let mut recorded = state.recorded.lock().expect("lock");
        recorded.push(Recorded {
            method,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            authorization: header("authorization"),
            content_type: header("content-type"),
            accept: header("accept"),
            body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
        });
        recorded.len() - 1
    };
    match state.reply {
        Reply::Json(status, body) => json(status, body),
        Reply::Text(status, body) => (status, body).into_response(),
        Reply::Hang => std::future::pending().await,
        Reply::Sequence(bodies) => json(StatusCode::OK, bodies[index.min(bodies.len() - 1)]),
    }
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}
