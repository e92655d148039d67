//! The Chat Completions provider against a local server that speaks the wire format, started
//! by each test: replies, tool calls, streaming, 429 then success, 500, timeout, bad JSON.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use voice_agent_agent::{
    Agent, AgentAction, AgentChannel, AgentError, AgentProfile, AgentRequest, ChatCompletionsAgent,
    Disposition, ModelSettings, Turn, respond,
};

/// What the fake server answers, one entry per request.
#[derive(Clone)]
enum Canned {
    Json(StatusCode, Value),
    Raw(StatusCode, &'static str, String),
    RateLimited(u64),
    Hang,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Canned>>,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
}

async fn completions(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    let value: Value = serde_json::from_str(&body).expect("the client sends JSON");
    fake.requests.lock().unwrap().push((headers, value));
    let next = fake.script.lock().unwrap().pop_front();
    match next.expect("the test scripted enough answers") {
        Canned::Json(status, v) => (status, axum::Json(v)).into_response(),
        Canned::Raw(status, content_type, text) => Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Body::from(text))
            .unwrap(),
        Canned::RateLimited(after) => Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .header("retry-after", after.to_string())
            .body(Body::from(r#"{"error":{"message":"slow down"}}"#))
            .unwrap(),
        Canned::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK.into_response()
        }
    }
}

async fn start(script: Vec<Canned>) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake {
        script: Mutex::new(script.into()),
        ..Fake::default()
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), fake)
}

fn agent(base: &str, stream: bool, max_retries: u32) -> ChatCompletionsAgent {
    // reqwest is built without a TLS provider; binaries install one at start.
    let _ = rustls::crypto::ring::default_provider().install_default();
    ChatCompletionsAgent::new(
        ModelSettings {
            base_url: base.parse().unwrap(),
            api_key: Some("sk-test-key".to_owned().into()),
            model: "test-model".to_owned(),
            stream,
            max_retries,
            initial_backoff: Duration::from_millis(10),
            temperature: None,
        },
        Duration::from_millis(500),
    )
    .unwrap()
}

fn request() -> AgentRequest {
    AgentRequest {
        profile: AgentProfile {
            instructions: "You sell dental check-ups.".to_owned(),
            facts: vec!["Check-ups cost $50.".to_owned()],
            ..AgentProfile::default()
        },
        channel: AgentChannel::Sms,
        history: vec![Turn::person("How much is a check-up?")],
        contact: [("first_name".to_owned(), "Ada".to_owned())].into(),
        memory: Default::default(),
        earlier_person_turns: 0,
    }
}

fn completion(message: Value) -> Canned {
    Canned::Json(
        StatusCode::OK,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}
        }),
    )
}

#[tokio::test]
async fn a_normal_reply_sends_the_conversation_and_records_usage() {
    let (base, fake) = start(vec![completion(
        json!({"role": "assistant", "content": "A check-up is $50."}),
    )])
    .await;
    let reply = agent(&base, false, 0).reply(&request()).await.unwrap();
    assert_eq!(reply.text, "A check-up is $50.");
    assert!(reply.actions.is_empty());
    assert_eq!(
        (reply.usage.prompt_tokens, reply.usage.completion_tokens),
        (40, 9)
    );

    let requests = fake.requests.lock().unwrap();
    let (headers, body) = &requests[0];
    assert_eq!(headers["authorization"], "Bearer sk-test-key");
    assert_eq!(body["model"], "test-model");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.contains("You sell dental check-ups."), "{system}");
    assert!(system.contains("Check-ups cost $50."), "{system}");
    assert!(system.contains("first_name: Ada"), "{system}");
    assert_eq!(
        messages[1],
        json!({"role": "user", "content": "How much is a check-up?"})
    );
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        [
            "end_conversation",
            "opt_out",
            "transfer_to_human",
            "schedule_callback"
        ]
    );
}

#[tokio::test]
async fn tool_calls_become_actions_and_an_empty_text_gets_the_profiles_line() {
    let (base, _fake) = start(vec![completion(json!({
        "role": "assistant", "content": null,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "transfer_to_human", "arguments": "{\"reason\":\"billing\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "schedule_callback", "arguments": "{\"delay_minutes\":15,\"note\":\"after lunch\"}"}}
        ]
    }))])
    .await;
    let req = request();
    let reply = agent(&base, false, 0).reply(&req).await.unwrap();
    assert_eq!(reply.text, req.profile.transfer_message);
    assert_eq!(
        reply.actions,
        vec![
            AgentAction::Transfer {
                reason: Some("billing".to_owned())
            },
            AgentAction::ScheduleCallback {
                delay_seconds: 900,
                note: Some("after lunch".to_owned())
            }
        ]
    );
}

#[tokio::test]
async fn a_streamed_reply_arrives_in_pieces() {
    let chunks = [
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"A check-up "}}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"is $50."}}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_9","type":"function","function":{"name":"end_conversation","arguments":""}}]}}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":41,"completion_tokens":7}}"#,
    ];
    let body: String = chunks
        .iter()
        .map(|c| format!("data: {c}\n\n"))
        .chain(std::iter::once("data: [DONE]\n\n".to_owned()))
        .collect();
    let (base, fake) = start(vec![Canned::Raw(StatusCode::OK, "text/event-stream", body)]).await;
    let mut pieces = Vec::new();
    let reply = agent(&base, true, 0)
        .reply_streaming(&request(), &mut |d| pieces.push(d.to_owned()))
        .await
        .unwrap();
    assert_eq!(pieces, ["A check-up ", "is $50."]);
    assert_eq!(reply.text, "A check-up is $50.");
    assert_eq!(
        reply.actions,
        vec![AgentAction::EndConversation { reason: None }]
    );
    assert_eq!(reply.usage.prompt_tokens, 41);
    assert_eq!(fake.requests.lock().unwrap()[0].1["stream"], true);
}

#[tokio::test]
async fn rate_limited_then_success() {
    let (base, fake) = start(vec![
        Canned::RateLimited(0),
        Canned::RateLimited(0),
        completion(json!({"role": "assistant", "content": "Third time lucky."})),
    ])
    .await;
    let reply = agent(&base, false, 3).reply(&request()).await.unwrap();
    assert_eq!(reply.text, "Third time lucky.");
    assert_eq!(fake.requests.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let (base, fake) = start(vec![
        Canned::Json(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": {"message": "boom"}}),
        ),
        Canned::Json(
            StatusCode::BAD_GATEWAY,
            json!({"error": {"message": "boom"}}),
        ),
    ])
    .await;
    let err = agent(&base, false, 1).reply(&request()).await.unwrap_err();
    assert!(matches!(err, AgentError::Server { status: 502 }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(fake.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_refused_request_is_not_retried() {
    let (base, fake) = start(vec![Canned::Json(
        StatusCode::UNAUTHORIZED,
        json!({"error": {"message": "Incorrect API key provided"}}),
    )])
    .await;
    let err = agent(&base, false, 3).reply(&request()).await.unwrap_err();
    match &err {
        AgentError::Rejected { status, message } => {
            assert_eq!(*status, 401);
            assert_eq!(message, "Incorrect API key provided");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(fake.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_hanging_server_times_out_and_respond_gives_up_within_the_profile_limit() {
    let (base, _fake) = start(vec![Canned::Hang, Canned::Hang, Canned::Hang]).await;
    let err = agent(&base, false, 0).reply(&request()).await.unwrap_err();
    assert!(matches!(err, AgentError::Timeout(_)), "{err:?}");

    let mut req = request();
    req.profile.timeout_secs = 1;
    let err = respond(&agent(&base, false, 5), &req).await.unwrap_err();
    assert!(matches!(err, AgentError::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn malformed_answers_are_errors_not_replies() {
    let (base, _fake) = start(vec![
        Canned::Raw(
            StatusCode::OK,
            "application/json",
            "{\"choices\": [".to_owned(),
        ),
        Canned::Json(StatusCode::OK, json!({"choices": []})),
        Canned::Raw(
            StatusCode::OK,
            "text/event-stream",
            "data: {not json}\n\n".to_owned(),
        ),
    ])
    .await;
    let e1 = agent(&base, false, 0).reply(&request()).await.unwrap_err();
    assert!(matches!(e1, AgentError::Malformed(_)), "{e1:?}");
    let e2 = agent(&base, false, 0).reply(&request()).await.unwrap_err();
    assert!(matches!(e2, AgentError::Malformed(_)), "{e2:?}");
    let e3 = agent(&base, true, 0).reply(&request()).await.unwrap_err();
    assert!(matches!(e3, AgentError::Malformed(_)), "{e3:?}");
}

#[tokio::test]
async fn summaries_use_a_forced_tool_call() {
    let (base, fake) = start(vec![completion(json!({
        "role": "assistant", "content": null,
        "tool_calls": [{"id": "c", "type": "function", "function": {
            "name": "record_summary",
            "arguments": "{\"summary\":\"Asked the price; wants a call tomorrow.\",\"disposition\":\"callback\"}"
        }}]
    }))])
    .await;
    let s = agent(&base, false, 0).summarize(&request()).await.unwrap();
    assert_eq!(s.summary, "Asked the price; wants a call tomorrow.");
    assert_eq!(s.disposition, Disposition::Callback);
    let body = &fake.requests.lock().unwrap()[0].1;
    assert_eq!(body["tool_choice"]["function"]["name"], "record_summary");
}

#[tokio::test]
async fn a_configured_greeting_needs_no_model_call() {
    let (base, fake) = start(vec![]).await;
    let mut req = request();
    req.history.clear();
    req.profile.greeting = Some("Hi, Acme Dental here.".to_owned());
    let reply = agent(&base, false, 0).reply(&req).await.unwrap();
    assert_eq!(reply.text, "Hi, Acme Dental here.");
    assert!(fake.requests.lock().unwrap().is_empty());
}
