//! Calls in voice mode `relay` (Twilio ConversationRelay) over the real api, worker, Temporal,
//! MongoDB-wire server and the simulator playing ConversationRelay: the transcript in
//! `call_logs` and the simulator's ledger agree, an interruption keeps only what was spoken
//! and the next reply's context knows it, keys, a transfer by `end` with handoff data, a forged
//! handshake refused, a worker killed mid-call, outbound calls and a voice campaign.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use voice_agent_twilio::signature::compute_signature;
use voice_agent_workflows::CallWorkflow;

use crate::campaigns::start_campaign;
use crate::helpers::{AUTH_TOKEN, Stack, eventually};
use crate::voice::{
    OURS, call_logs, expected_conversation, person, ring_in, route_our_number, script_callee,
    simulator_call, transcript, voice_list,
};

const WAIT: Duration = Duration::from_secs(90);
const TRANSFER_TO: &str = "+15005550010";

/// An agents file whose profile on our number speaks through ConversationRelay.
fn relay_agents(extra: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("va-relay-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("agents.toml");
    std::fs::write(
        &file,
        format!(
            "[profiles.streamed]\ninstructions = \"Help people.\"\nvoice_mode = \"relay\"\n\
             transfer_number = \"{TRANSFER_TO}\"\n{extra}\n\
             [profiles.streamed.relay]\ntts_provider = \"ElevenLabs\"\ninterruptible = \"any\"\n\n\
             [numbers]\n\"{OURS}\" = \"streamed\"\n"
        ),
    )?;
    Ok(file)
}

async fn relay_stack(extra_env: &[(&str, &str)]) -> anyhow::Result<Stack> {
    let agents = relay_agents("")?;
    let mut env = vec![("AGENTS_FILE", agents.to_str().unwrap())];
    env.extend_from_slice(extra_env);
    let stack = Stack::start_with_env(&env).await?;
    route_our_number(&stack).await?;
    Ok(stack)
}

fn events<'a>(call: &'a Value, kind: &str) -> Vec<&'a Value> {
    call["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == json!(kind)).collect())
        .unwrap_or_default()
}

fn texts(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn interrupted_flags(log: &Document) -> Vec<bool> {
    log.get_array("transcript")
        .map(|t| {
            t.iter()
                .filter_map(|e| e.as_document())
                .map(|e| e.get_bool("interrupted").unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

async fn ended_call(stack: &Stack, sid: &str) -> anyhow::Result<Value> {
    eventually("the simulated call to end", WAIT, || async {
        let c = simulator_call(stack, sid).await?;
        Ok((c["status"] == json!("completed")).then_some(c))
    })
    .await
}

#[tokio::test]
async fn an_inbound_relay_call_of_several_turns_has_the_same_transcript_in_call_logs_and_the_ledger()
-> anyhow::Result<()> {
    let stack = relay_stack(&[]).await?;
    let caller = person();
    let sid = ring_in(
        &stack,
        &caller,
        &["Hello", "my name is Grace", "what's my name?", "bye"],
        0,
    )
    .await?;

    let logs = call_logs(&stack, &format!("call-{sid}"), 1).await?;
    stack
        .save_history::<CallWorkflow>(&format!("call-{sid}"), "call-relay-inbound-turns")
        .await?;
    let log = &logs[0];
    assert_eq!(transcript(log), expected_conversation());
    assert!(interrupted_flags(log).iter().all(|i| !i), "{log}");
    assert_eq!(log.get_str("outcome")?, "completed");

    let call = ended_call(&stack, &sid).await?;
    // The session was a ConversationRelay one, opened once, and ended by our `end` ("bye").
    assert_eq!(events(&call, "connect").len(), 1, "{call}");
    let ended = events(&call, "end");
    assert_eq!(ended.len(), 1, "{call}");
    let handoff: Value = serde_json::from_str(ended[0]["text"].as_str().unwrap())?;
    assert_eq!(handoff["reason"], json!("end"));
    assert!(events(&call, "error").is_empty(), "{call}");
    // What the callee heard, reply by reply, is what the log says the agent said.
    let agent_lines: Vec<String> = expected_conversation()
        .into_iter()
        .filter(|(s, _)| s == "agent")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(texts(&events(&call, "say")), agent_lines);
    // Token by token, with times, the replies (not the welcome greeting) as heard.
    let tokens = events(&call, "token");
    assert!(tokens.len() > agent_lines.len(), "{call}");
    assert_eq!(
        texts(&tokens).concat(),
        agent_lines[1..].concat(),
        "the tokens make up the replies"
    );
    assert!(tokens.iter().all(|t| t["at"].is_string()));
    Ok(())
}

#[tokio::test]
async fn a_relay_handshake_without_a_valid_signature_is_refused() -> anyhow::Result<()> {
    let stack = relay_stack(&[]).await?;
    let url = format!(
        "{}/twilio/voice/relay?wf=call-CA00000000000000000000000000000000",
        stack.api_http.replacen("http://", "ws://", 1)
    );
    for signature in [
        None,
        Some(compute_signature("not-the-token", &url, &[])),
        // Signed for another call.
        Some(compute_signature(
            AUTH_TOKEN,
            &url.replace("CA000", "CA111"),
            &[],
        )),
    ] {
        let mut request = url.as_str().into_client_request()?;
        if let Some(s) = signature {
            request
                .headers_mut()
                .insert("X-Twilio-Signature", s.parse()?);
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403);
            }
            other => panic!("a forged handshake was not refused: {other:?}"),
        }
    }
    // Signed as Twilio signs it: the upgrade goes through (no call: the session closes).
    let signed = || -> anyhow::Result<_> {
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "X-Twilio-Signature",
            compute_signature(AUTH_TOKEN, &url, &[]).parse()?,
        );
        Ok(request)
    };
    let first = tokio_tungstenite::connect_async(signed()?).await?;
    // The same handshake again, as a copy of it would be: the signature covers only the URL,
    // so a call takes at most two sessions at once (Twilio's and the next one's).
    let second = tokio_tungstenite::connect_async(signed()?).await?;
    match tokio_tungstenite::connect_async(signed()?).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 409);
        }
        other => panic!("a third session of one call was not refused: {other:?}"),
    }
    drop((first, second));
    // Their sessions end with their sockets, and the call's places are free again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_tungstenite::connect_async(signed()?).await {
            Ok(_) => break,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the call's places were not given back: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test]
async fn keys_reach_the_agent_and_a_transfer_ends_the_session_with_its_handoff_data()
-> anyhow::Result<()> {
    let stack = relay_stack(&[]).await?;
    let caller = person();
    let r = stack
        .admin(
            reqwest::Method::POST,
            "/admin/calls/inbound",
            Some(json!({"from": caller, "to": OURS, "lines": [{"digits": "1"}, "I want a human"]})),
        )
        .await?;
    let sid = r["call_sid"].as_str().unwrap().to_owned();

    let log = &call_logs(&stack, &format!("call-{sid}"), 1).await?[0];
    stack
        .save_history::<CallWorkflow>(&format!("call-{sid}"), "call-relay-keys-transfer")
        .await?;
    let t = transcript(log);
    assert_eq!(
        t[1],
        ("caller".to_owned(), "(pressed 1)".to_owned()),
        "{t:?}"
    );
    assert_eq!(
        t[3],
        ("caller".to_owned(), "I want a human".to_owned()),
        "{t:?}"
    );
    assert_eq!(log.get_str("disposition")?, "transferred");

    let call = ended_call(&stack, &sid).await?;
    assert_eq!(texts(&events(&call, "digits")), ["1"], "{call}");
    let ended = events(&call, "end");
    assert_eq!(ended.len(), 1, "{call}");
    let handoff: Value = serde_json::from_str(ended[0]["text"].as_str().unwrap())?;
    assert_eq!(handoff["reason"], json!("transfer"));
    // The action URL answered with a <Dial> to the profile's number.
    assert_eq!(call["transfers"], json!([TRANSFER_TO]), "{call}");
    Ok(())
}

/// An OpenAI-compatible model that streams a fixed reply word by word and keeps every request.
async fn streaming_model(requests: Arc<Mutex<Vec<Value>>>) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: String| {
            let requests = requests.clone();
            async move {
                let request: Value = serde_json::from_str(&body).unwrap_or_default();
                if body.contains("record_summary") {
                    return axum::Json(json!({
                        "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [{
                            "id": "call_1", "type": "function",
                            "function": {"name": "record_summary", "arguments": "{\"summary\":\"A short call.\",\"disposition\":\"other\"}"},
                        }]}}],
                    }))
                    .into_response();
                }
                requests.lock().unwrap().push(request);
                let mut sse = String::new();
                for word in ["Our", " opening", " hours", " are", " nine", " to", " five."] {
                    let chunk = json!({"choices": [{"index": 0, "delta": {"content": word}}]});
                    sse.push_str(&format!("data: {chunk}\n\n"));
                }
                sse.push_str("data: [DONE]\n\n");
                ([("content-type", "text/event-stream")], sse).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[tokio::test]
async fn a_caller_who_cuts_in_leaves_only_what_was_spoken_and_the_next_reply_knows_it()
-> anyhow::Result<()> {
    let requests = Arc::new(Mutex::new(Vec::new()));
    let model = streaming_model(requests.clone()).await?;
    let agents = relay_agents("greeting = \"Hi, this is Acme.\"")?;
    let stack = Stack::start_with_env(&[
        ("AGENTS_FILE", agents.to_str().unwrap()),
        ("AGENT_MODEL_BASE_URL", &model),
        ("AGENT_MODEL", "fake"),
        ("AGENT_MODEL_STREAM", "true"),
    ])
    .await?;
    route_our_number(&stack).await?;
    let caller = person();
    let r = stack
        .admin(
            reqwest::Method::POST,
            "/admin/calls/inbound",
            Some(json!({"from": caller, "to": OURS, "lines": [
                "when are you open?",
                {"speech": "sorry, what?", "interrupt_after_tokens": 3},
            ]})),
        )
        .await?;
    let sid = r["call_sid"].as_str().unwrap().to_owned();

    let log = &call_logs(&stack, &format!("call-{sid}"), 1).await?[0];
    stack
        .save_history::<CallWorkflow>(&format!("call-{sid}"), "call-relay-interrupted")
        .await?;
    let full = "Our opening hours are nine to five.";
    let cut = "Our opening hours";
    assert_eq!(
        transcript(log),
        [
            ("agent", "Hi, this is Acme."),
            ("caller", "when are you open?"),
            ("agent", cut),
            ("caller", "sorry, what?"),
            ("agent", full),
        ]
        .map(|(s, t)| (s.to_owned(), t.to_owned()))
    );
    assert_eq!(
        interrupted_flags(log),
        [false, false, true, false, false],
        "{log}"
    );

    // The callee heard the same: the cut reply as far as it went.
    let call = ended_call(&stack, &sid).await?;
    assert_eq!(texts(&events(&call, "interrupt")), [cut], "{call}");
    assert_eq!(
        texts(&events(&call, "say")),
        ["Hi, this is Acme.", cut, full],
        "{call}"
    );

    // The model's context for the next reply held what was spoken, not the whole reply.
    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let context = requests[1]["messages"].to_string();
    assert!(context.contains(&format!("\"{cut}\"")), "{context}");
    assert!(!context.contains(full), "{context}");
    Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_relay_call_loses_no_completed_turn() -> anyhow::Result<()> {
    let mut stack = relay_stack(&[]).await?;
    let caller = person();
    // Two seconds between the caller's lines leave room to kill and restart the worker.
    let sid = ring_in(
        &stack,
        &caller,
        &["Hello", "my name is Grace", "what's my name?", "bye"],
        2_000,
    )
    .await?;
    eventually("the first reply", WAIT, || async {
        let call = simulator_call(&stack, &sid).await?;
        Ok((events(&call, "say").len() >= 2).then_some(()))
    })
    .await?;
    stack.kill_worker().await?;
    // Replies go on streaming from the api while no worker runs; turns wait in history.
    eventually("a reply while the worker is down", WAIT, || async {
        let call = simulator_call(&stack, &sid).await?;
        Ok((events(&call, "say").len() >= 3).then_some(()))
    })
    .await?;
    stack.start_worker()?;

    let logs = call_logs(&stack, &format!("call-{sid}"), 1).await?;
    assert_eq!(transcript(&logs[0]), expected_conversation());
    let call = ended_call(&stack, &sid).await?;
    assert!(events(&call, "error").is_empty(), "{call}");
    Ok(())
}

#[tokio::test]
async fn outbound_relay_calls_and_a_relay_voice_campaign_talk_through_conversation_relay()
-> anyhow::Result<()> {
    let stack = relay_stack(&[]).await?;
    let (single, first, second) = (person(), person(), person());
    for number in [&single, &first, &second] {
        script_callee(
            &stack,
            number,
            json!({"behaviour": "human", "lines": ["tell me more", "bye"]}),
        )
        .await?;
    }
    let resp = stack
        .http
        .post(format!("{}/api/calls", stack.api_http))
        .json(&json!({"to": single, "machine_detection": false}))
        .send()
        .await?;
    assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
    let call_id = resp.json::<Value>().await?["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = &call_logs(&stack, &call_id, 1).await?[0];
    assert_eq!(log.get_str("outcome")?, "human");
    let t = transcript(log);
    assert_eq!(
        t[1],
        ("caller".to_owned(), "tell me more".to_owned()),
        "{t:?}"
    );
    assert_eq!(t[3], ("caller".to_owned(), "bye".to_owned()), "{t:?}");
    let sid = log.get_str("call_sid")?.to_owned();
    let call = simulator_call(&stack, &sid).await?;
    assert_eq!(events(&call, "connect").len(), 1, "{call}");
    assert_eq!(texts(&events(&call, "say")).len(), 3, "{call}");

    let list_id = voice_list(&stack, &[(&first, "Ada"), (&second, "Bob")]).await?;
    let id = start_campaign(
        &stack,
        json!({
            "name": "Relay check-in",
            "channel": "voice",
            "list_id": list_id,
            "from": OURS,
            "template": "",
            "rate_per_second": 10,
        }),
    )
    .await?;
    for number in [&first, &second] {
        let log: Document = eventually("the campaign call's log", WAIT, || async {
            Ok(stack
                .mongo
                .collection::<Document>("call_logs")
                .find_one(doc! { "to": number.as_str(), "outcome": { "$exists": true } })
                .await?)
        })
        .await?;
        assert_eq!(log.get_str("outcome")?, "human");
        let t = transcript(&log);
        assert_eq!(
            t[1],
            ("caller".to_owned(), "tell me more".to_owned()),
            "{t:?}"
        );
        let sid = log.get_str("call_sid")?.to_owned();
        let call = simulator_call(&stack, &sid).await?;
        assert_eq!(events(&call, "connect").len(), 1, "{call}");
    }
    Ok(())
}
