//! The AI chat's WebSocket (`/api/live/chat`, the live-session engine with channel `web`)
//! against the real api, worker, Temporal and MongoDB-wire server: replies stream token by
//! token, an interruption keeps only what was heard, and no settled turn is lost when the api
//! or the worker is killed mid-chat.

use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use mongodb::bson::doc;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{Stack, eventually};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one frame may take to come.
const FRAME: Duration = Duration::from_secs(30);

async fn stack() -> anyhow::Result<Stack> {
    let agents = concat!(env!("CARGO_MANIFEST_DIR"), "/../agent/agents.example.toml");
    Stack::start_with_env(&[("AGENTS_FILE", agents)]).await
}

fn chat_url(stack: &Stack, query: &str) -> String {
    format!(
        "{}/api/live/chat?{query}",
        stack.api_http.replacen("http://", "ws://", 1)
    )
}

/// Opens a chat as a program with the stack's API key; `origin` as a browser would send it.
async fn connect(
    stack: &Stack,
    query: &str,
    origin: Option<&str>,
    key: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = chat_url(stack, query).into_client_request()?;
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let (socket, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(socket)
}

async fn next_frame(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        let msg = tokio::time::timeout(FRAME, socket.next())
            .await
            .context("no frame in time")?
            .context("the socket closed")??;
        match msg {
            Message::Text(t) => return Ok(serde_json::from_str(&t)?),
            Message::Close(_) => anyhow::bail!("the server closed the socket"),
            _ => {}
        }
    }
}

async fn send(socket: &mut Socket, frame: Value) -> anyhow::Result<()> {
    socket.send(Message::Text(frame.to_string().into())).await?;
    Ok(())
}

/// The tokens of one reply and its `reply` frame, each carrying the prompt's `seq`.
async fn reply(socket: &mut Socket, seq: u64) -> anyhow::Result<(Vec<String>, Value)> {
    let mut tokens = Vec::new();
    loop {
        let f = next_frame(socket).await?;
        anyhow::ensure!(f["seq"] == json!(seq), "expected seq {seq} on {f}");
        match f["type"].as_str() {
            Some("token") => tokens.push(f["text"].as_str().unwrap_or_default().to_owned()),
            Some("reply") => return Ok((tokens, f)),
            _ => anyhow::bail!("expected a token or the reply, got {f}"),
        }
    }
}

/// Says `text` and reads the whole streamed reply and its settlement.
async fn turn(socket: &mut Socket, text: &str) -> anyhow::Result<(Vec<String>, Value, Value)> {
    // Numbered as the web app numbers its prompts, so the frames can be told apart.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    send(socket, json!({"type": "prompt", "text": text, "seq": seq})).await?;
    let (tokens, reply) = reply(socket, seq).await?;
    let settled = next_frame(socket).await?;
    anyhow::ensure!(
        settled["type"] == "settled",
        "expected settled, got {settled}"
    );
    Ok((tokens, reply, settled))
}

async fn transcript(
    stack: &Stack,
    conversation_id: &str,
) -> anyhow::Result<Vec<(String, String, bool)>> {
    let doc = stack
        .mongo
        .collection::<mongodb::bson::Document>("conversations")
        .find_one(doc! { "_id": conversation_id })
        .await?;
    Ok(doc
        .and_then(|d| d.get_array("transcript").ok().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l.as_document())
        .map(|l| {
            (
                l.get_str("speaker").unwrap_or_default().to_owned(),
                l.get_str("text").unwrap_or_default().to_owned(),
                l.get_bool("interrupted").unwrap_or(false),
            )
        })
        .collect())
}

#[tokio::test]
async fn a_browser_chat_streams_replies_keeps_what_was_heard_and_reconnects_after_the_api_is_killed()
-> anyhow::Result<()> {
    let mut stack = stack().await?;
    let key = stack.api_key.clone();

    // Arrange: a new chat with the example profile.
    let mut socket = connect(&stack, "profile=reception", None, Some(&key)).await?;
    let ready = next_frame(&mut socket).await?;
    assert_eq!(ready["type"], "ready", "{ready}");
    assert_eq!(ready["history"], json!([]));
    assert_eq!(ready["open"], json!(true));
    let chat = ready["chat"].as_str().context("chat id")?.to_owned();
    let conversation_id = ready["conversation_id"].as_str().context("id")?.to_owned();
    assert_eq!(conversation_id, format!("conversation-web-{chat}"));

    // Act: two turns; the second needs what the first remembered.
    let (tokens, reply1, settled1) = turn(&mut socket, "Hi, my name is Grace").await?;
    // Assert: word by word, and the words are the reply.
    assert!(tokens.len() > 3, "streamed in pieces: {tokens:?}");
    assert_eq!(tokens.concat(), "Nice to meet you, Grace! How can I help?");
    assert_eq!(reply1["text"], json!(tokens.concat()));
    assert_eq!(settled1["person"], json!("Hi, my name is Grace"));
    assert_eq!(settled1["agent"], reply1["text"]);
    assert_eq!(settled1["interrupted"], json!(false));
    let (_, reply2, _) = turn(&mut socket, "who am i").await?;
    assert_eq!(reply2["text"], "You told me your name is Grace.");

    // A reply spoken aloud, cut off after its first words: only those count.
    send(
        &mut socket,
        json!({"type": "prompt", "text": "hello", "speaking": true}),
    )
    .await?;
    let (tokens, _) = reply(&mut socket, 0).await?;
    assert!(tokens.len() > 2);
    send(
        &mut socket,
        json!({"type": "interrupt", "heard": "Hello there!"}),
    )
    .await?;
    let settled3 = next_frame(&mut socket).await?;
    assert_eq!(settled3["type"], "settled", "{settled3}");
    assert_eq!(settled3["agent"], "Hello there!");
    assert_eq!(settled3["interrupted"], json!(true));

    // A frame the api does not know gets an error, and the chat goes on.
    send(&mut socket, json!({"type": "shout"})).await?;
    let error = next_frame(&mut socket).await?;
    assert_eq!(error["type"], "error", "{error}");

    // The api dies mid-chat; a new one serves the same chat with its history.
    stack.kill_api().await?;
    stack.start_api().await?;
    let mut socket = connect(
        &stack,
        &format!("profile=reception&chat={chat}"),
        None,
        Some(&key),
    )
    .await?;
    let ready = next_frame(&mut socket).await?;
    let history: Vec<(String, String)> = ready["history"]
        .as_array()
        .context("history")?
        .iter()
        .map(|l| {
            (
                l["speaker"].as_str().unwrap_or_default().to_owned(),
                l["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("person", "Hi, my name is Grace"),
        ("agent", "Nice to meet you, Grace! How can I help?"),
        ("person", "who am i"),
        ("agent", "You told me your name is Grace."),
        ("person", "hello"),
        ("agent", "Hello there!"),
    ];
    assert_eq!(
        history,
        expected
            .iter()
            .map(|(s, t)| ((*s).to_owned(), (*t).to_owned()))
            .collect::<Vec<_>>()
    );
    assert_eq!(ready["history"][5]["interrupted"], json!(true));
    // The next turn still knows the name: memory came back with the history.
    let (_, reply4, _) = turn(&mut socket, "what is my name").await?;
    assert_eq!(reply4["text"], "You told me your name is Grace.");

    // MongoDB has the transcript, once per turn, and the chat is listed with the others.
    let lines = eventually(
        "the transcript in MongoDB",
        Duration::from_secs(60),
        || async {
            let t = transcript(&stack, &conversation_id).await?;
            Ok((t.len() >= 8).then_some(t))
        },
    )
    .await?;
    assert_eq!(lines.len(), 8, "{lines:?}");
    assert_eq!(
        lines[5],
        ("agent".to_owned(), "Hello there!".to_owned(), true)
    );
    let list: Value = stack
        .http
        .get(format!("{}/api/conversations?limit=500", stack.api_http))
        .send()
        .await?
        .json()
        .await?;
    let listed = list
        .as_array()
        .context("a list")?
        .iter()
        .find(|c| c["id"] == json!(conversation_id))
        .context("the chat is listed")?;
    assert_eq!(listed["channel"], "web");
    assert_eq!(listed["profile"], "reception");
    let detail: Value = stack
        .http
        .get(format!(
            "{}/api/conversations/{conversation_id}",
            stack.api_http
        ))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(detail["transcript"].as_array().map(Vec::len), Some(8));
    Ok(())
}

#[tokio::test]
async fn a_chat_websocket_needs_a_credential_and_a_browser_needs_the_apps_origin()
-> anyhow::Result<()> {
    let stack = stack().await?;
    let key = stack.api_key.clone();
    let status = |r: Result<Socket, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
        _ => None,
    };
    assert_eq!(
        status(connect(&stack, "profile=reception", None, None).await),
        Some(401)
    );
    assert_eq!(
        status(
            connect(
                &stack,
                "profile=reception",
                Some("https://evil.example"),
                Some(&key)
            )
            .await
        ),
        Some(403)
    );
    assert_eq!(
        status(connect(&stack, "profile=nobody", None, Some(&key)).await),
        Some(400)
    );
    assert_eq!(
        status(connect(&stack, "profile=reception&chat=..%2Fx", None, Some(&key)).await),
        Some(400)
    );
    // A signed-in browser: the session cookie and the app's own origin.
    let login: reqwest::Response = reqwest::Client::new()
        .post(format!("{}/api/auth/login", stack.api_http))
        .json(&json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .context("a session cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    let browser = |origin: &'static str| {
        let mut request = chat_url(&stack, "profile=reception")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("cookie", cookie.parse().unwrap());
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    let cross_site = tokio_tungstenite::connect_async(browser("https://evil.example")).await;
    assert!(
        matches!(&cross_site, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403),
        "a cookie from another site's page is refused"
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(browser("http://127.0.0.1")).await?;
    assert_eq!(next_frame(&mut socket).await?["type"], "ready");
    Ok(())
}

#[tokio::test]
async fn a_killed_worker_loses_no_settled_chat_turn() -> anyhow::Result<()> {
    let mut stack = stack().await?;
    let key = stack.api_key.clone();
    // The worker is down for the whole chat: the api streams the replies itself and each
    // settled turn waits in the workflow's history.
    stack.kill_worker().await?;
    let mut socket = connect(&stack, "profile=reception", None, Some(&key)).await?;
    let ready = next_frame(&mut socket).await?;
    let conversation_id = ready["conversation_id"].as_str().context("id")?.to_owned();
    let (_, r1, _) = turn(&mut socket, "my name is Ada").await?;
    assert_eq!(r1["text"], "Nice to meet you, Ada! How can I help?");
    let (_, r2, _) = turn(&mut socket, "who am i").await?;
    assert_eq!(r2["text"], "You told me your name is Ada.");
    drop(socket);
    assert!(transcript(&stack, &conversation_id).await?.is_empty());

    stack.start_worker()?;
    let lines = eventually(
        "the transcript after the worker is back",
        Duration::from_secs(90),
        || async {
            let t = transcript(&stack, &conversation_id).await?;
            Ok((t.len() >= 4).then_some(t))
        },
    )
    .await?;
    let texts: Vec<&str> = lines.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "my name is Ada",
            "Nice to meet you, Ada! How can I help?",
            "who am i",
            "You told me your name is Ada."
        ]
    );
    Ok(())
}
