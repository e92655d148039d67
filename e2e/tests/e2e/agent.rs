//! The agent answering SMS conversations: replies in order, actions (transfer, callback,
//! opt-out), the fallback when the model fails, context kept across continue-as-new, and sends
//! that do not wait behind a busy model.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use temporalio_client::WorkflowQueryOptions;
use voice_agent_protos::v1::SendSmsRequest;
use voice_agent_workflows::ConversationWorkflow;

use crate::helpers::{Stack, eventually};

const WAIT: Duration = Duration::from_secs(60);
const OURS: &str = "+15005550006";

/// Rules for the action tests: short callback delays so the test sees the follow-up.
const RULES: &str = r#"
fallback = "Sorry, could you rephrase?"

[[rules]]
keywords = ["human"]
reply = "Connecting you to a person."
actions = [{ type = "transfer", reason = "asked for a human" }]
disposition = "transferred"

[[rules]]
keywords = ["later"]
reply = "Sure, talk soon."
actions = [{ type = "schedule_callback", delay_seconds = 2, note = "asked for later" }]
disposition = "callback"

[[rules]]
keywords = ["remove me"]
reply = "Done, you won't hear from us again."
actions = [{ type = "opt_out" }, { type = "end_conversation" }]
disposition = "not_interested"
"#;

/// Writes an agents file (and the rules file when `rules` is given) to a fresh folder.
pub(crate) fn agents_file(profile_extra: &str, rules: Option<&str>) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("va-agents-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let rules_line = match rules {
        Some(text) => {
            std::fs::write(dir.join("rules.toml"), text)?;
            "rules = \"rules.toml\"\n"
        }
        None => "",
    };
    let file = dir.join("agents.toml");
    std::fs::write(
        &file,
        format!(
            "[profiles.support]\ninstructions = \"Help people.\"\n{rules_line}{profile_extra}\n[numbers]\n\"{OURS}\" = \"support\"\n"
        ),
    )?;
    Ok(file)
}

/// A number of its own per test run: conversation workflow ids are global on the Temporal
/// server, and a conversation of an earlier run may still be open there.
fn person() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!("+1415{}{:04}", 200 + n % 800, (n >> 16) % 10_000)
}

fn conversation_id(theirs: &str) -> String {
    format!(
        "conversation-{}-{}",
        OURS.trim_start_matches('+'),
        theirs.trim_start_matches('+')
    )
}

async fn text(stack: &Stack, from: &str, body: &str) -> anyhow::Result<()> {
    let r = stack
        .admin(
            reqwest::Method::POST,
            "/admin/inbound",
            Some(json!({"from": from, "to": OURS, "body": body})),
        )
        .await?;
    anyhow::ensure!(r["status"] == json!(200), "webhook answered {r}");
    // The webhook answers once the message is stored; wait until the inbox has handed it to
    // the conversation, so what the test asks the workflow next is about this message.
    stack
        .handed_over(r["message_sid"].as_str().unwrap_or_default())
        .await
}

/// Waits until the simulator has accepted `n` messages to `to`, and returns their bodies.
async fn replies(stack: &Stack, to: &str, n: usize) -> anyhow::Result<Vec<String>> {
    eventually(&format!("{n} replies to {to}"), WAIT, || async {
        let ledger = stack.ledger(to).await?;
        Ok((ledger.len() >= n).then(|| {
            ledger
                .iter()
                .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
                .collect()
        }))
    })
    .await
}

async fn conversation(stack: &Stack, theirs: &str) -> anyhow::Result<Value> {
    let id = conversation_id(theirs);
    let resp = stack
        .http
        .get(format!("{}/api/conversations/{id}", stack.api_http))
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "GET {id}: {}", resp.status());
    Ok(resp.json().await?)
}

#[tokio::test]
async fn a_multi_turn_sms_conversation_keeps_its_context_across_continue_as_new()
-> anyhow::Result<()> {
    // Three turns per run: the fourth question is answered by a new run.
    let file = agents_file("turns_per_run = 3\nsummary_after_idle_secs = 1\n", None)?;
    let stack = Stack::start_with_env(&[("AGENTS_FILE", file.to_str().unwrap())]).await?;
    let person = &person();

    let turns = [
        ("Hello", "Hello there! How can I help you today?"),
        (
            "my name is Grace",
            "Nice to meet you, Grace! How can I help?",
        ),
        (
            "tell me more",
            "Great! Our offer is simple: one plan, no contract. Would you like a person to follow up?",
        ),
        ("what's my name?", "You told me your name is Grace."),
    ];
    for (i, (said, _)) in turns.iter().enumerate() {
        text(&stack, person, said).await?;
        // One reply per message, in order: wait for this one before the next message.
        replies(&stack, person, i + 1).await?;
    }
    let got = replies(&stack, person, turns.len()).await?;
    let want: Vec<&str> = turns.iter().map(|(_, r)| *r).collect();
    assert_eq!(got, want);

    // The workflow continued as new and still answered from the remembered name.
    let temporal = stack.temporal().await?;
    let id = conversation_id(person);
    let state = temporal
        .get_workflow_handle::<ConversationWorkflow>(id)
        .query(
            ConversationWorkflow::transcript,
            (),
            WorkflowQueryOptions::default(),
        )
        .await?;
    assert!(
        state.generation >= 1,
        "expected a continue-as-new: {state:?}"
    );
    assert_eq!(state.memory.get("name").map(String::as_str), Some("Grace"));
    stack
        .save_history::<ConversationWorkflow>(
            &conversation_id(person),
            "conversation-agent-continued",
        )
        .await?;

    // The API shows the conversation in order, and the idle summary arrives.
    let conv = eventually("the summary", WAIT, || async {
        let c = conversation(&stack, person).await?;
        Ok(c["agent"]["summary"].is_string().then_some(c))
    })
    .await?;
    let messages = conv["messages"].as_array().unwrap();
    let flow: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap(),
                m["body"].as_str().unwrap(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for (said, reply) in turns {
        expected.push(("inbound", said));
        expected.push(("outbound", reply));
    }
    assert_eq!(flow, expected);
    assert_eq!(conv["agent"]["turns"], json!(4));
    assert_eq!(conv["agent"]["agent"], json!("scripted"));
    assert_eq!(conv["agent"]["disposition"], json!("interested"));
    Ok(())
}

#[tokio::test]
async fn a_message_that_arrives_while_the_last_reply_is_being_sent_is_answered_in_turn()
-> anyhow::Result<()> {
    let file = agents_file("", None)?;
    let stack = Stack::start_with_env(&[("AGENTS_FILE", file.to_str().unwrap())]).await?;
    let person = &person();
    // Twilio takes each reply at once and answers 3 s later, so the person's next message
    // reaches the conversation before the workflow learns that its reply went out: the order
    // a busy worker or a slow network gives.
    stack
        .admin(
            reqwest::Method::PUT,
            "/admin/faults",
            Some(json!({"accept_delay_ms": 3000})),
        )
        .await?;

    let turns = [
        ("Hello", "Hello there! How can I help you today?"),
        (
            "my name is Grace",
            "Nice to meet you, Grace! How can I help?",
        ),
        ("what's my name?", "You told me your name is Grace."),
    ];
    for (i, (said, _)) in turns.iter().enumerate() {
        text(&stack, person, said).await?;
        replies(&stack, person, i + 1).await?;
    }
    let got = replies(&stack, person, turns.len()).await?;
    let want: Vec<&str> = turns.iter().map(|(_, r)| *r).collect();
    assert_eq!(got, want);

    // Each reply sits right after the message it answers, whatever arrived meanwhile.
    let state = eventually("the last reply recorded", WAIT, || async {
        let state = stack
            .temporal()
            .await?
            .get_workflow_handle::<ConversationWorkflow>(conversation_id(person))
            .query(
                ConversationWorkflow::transcript,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        Ok((state.recent.len() == 2 * turns.len()).then_some(state))
    })
    .await?;
    let flow: Vec<(&str, &str)> = state
        .recent
        .iter()
        .map(|m| (m.direction.as_str(), m.body.as_str()))
        .collect();
    let mut expected = Vec::new();
    for (said, reply) in turns {
        expected.push(("inbound", said));
        expected.push(("outbound", reply));
    }
    assert_eq!(flow, expected);

    // The race happened: a message reached the workflow while a reply's send was under way
    // (otherwise this test would pass without the fix too).
    let history: Value = serde_json::from_slice(
        &stack
            .temporal()
            .await?
            .get_workflow_handle::<ConversationWorkflow>(conversation_id(person))
            .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?,
    )?;
    let mut sending = BTreeSet::new();
    let mut raced = 0;
    for event in history["events"].as_array().into_iter().flatten() {
        let a = &event["attributes"];
        let scheduled = &a["ActivityTaskScheduledEventAttributes"];
        if scheduled["activity_type"]["name"] == json!("MessagingActivities::send_message") {
            sending.insert(event["event_id"].as_i64());
        }
        sending.remove(&a["ActivityTaskCompletedEventAttributes"]["scheduled_event_id"].as_i64());
        let signal = &a["WorkflowExecutionSignaledEventAttributes"]["signal_name"];
        if signal == &json!("message") && !sending.is_empty() {
            raced += 1;
        }
    }
    assert!(raced > 0, "no message arrived during a send: {history}");
    Ok(())
}

#[tokio::test]
async fn agent_actions_transfer_schedule_a_callback_and_opt_out() -> anyhow::Result<()> {
    let file = agents_file(
        "callback_message = \"Hi again, as promised!\"\n",
        Some(RULES),
    )?;
    let stack = Stack::start_with_env(&[("AGENTS_FILE", file.to_str().unwrap())]).await?;
    let (transfer, callback, opt_out) = (&person(), &person(), &person());

    text(&stack, transfer, "can I talk to a human").await?;
    text(&stack, callback, "text me later please").await?;
    text(&stack, opt_out, "please remove me").await?;

    assert_eq!(
        replies(&stack, transfer, 1).await?,
        ["Connecting you to a person."]
    );
    // The follow-up comes from a durable timer two seconds later.
    assert_eq!(
        replies(&stack, callback, 2).await?,
        ["Sure, talk soon.", "Hi again, as promised!"]
    );
    assert_eq!(
        replies(&stack, opt_out, 1).await?,
        ["Done, you won't hear from us again."]
    );

    stack
        .save_history::<ConversationWorkflow>(
            &conversation_id(callback),
            "conversation-agent-callback",
        )
        .await?;
    if std::env::var("VA_SAVE_HISTORIES").is_ok() {
        // The follow-up's id derives from the inbound message it answers.
        let inbound = stack
            .mongo
            .collection::<mongodb::bson::Document>("messages")
            .find_one(mongodb::bson::doc! { "from": callback.as_str(), "direction": "inbound" })
            .await?
            .ok_or_else(|| anyhow::anyhow!("the callback request is not stored"))?;
        let conversation = conversation_id(callback);
        stack
            .save_history::<voice_agent_workflows::FollowUpWorkflow>(
                &format!(
                    "followup-{}-{}",
                    &conversation["conversation-".len()..],
                    inbound.get_str("twilio_sid")?
                ),
                "followup-text-after-timer",
            )
            .await?;
    }

    // Transfer: flagged for a person, and the agent stays quiet afterwards.
    let conv = eventually("the hand-over to be recorded", WAIT, || async {
        let c = conversation(&stack, transfer).await?;
        Ok((c["agent"]["needs_human"] == json!(true)).then_some(c))
    })
    .await?;
    assert_eq!(conv["agent"]["status"], json!("handoff"));
    assert_eq!(conv["agent"]["actions"][0]["kind"], json!("transfer"));
    let waiting = stack
        .http
        .get(format!(
            "{}/api/conversations?needs_human=true",
            stack.api_http
        ))
        .send()
        .await?
        .json::<Value>()
        .await?;
    assert_eq!(waiting.as_array().map(Vec::len), Some(1), "{waiting}");
    text(&stack, transfer, "hello? anyone?").await?;
    let temporal = stack.temporal().await?;
    let handle = temporal.get_workflow_handle::<ConversationWorkflow>(conversation_id(transfer));
    eventually("the second message to reach the workflow", WAIT, || async {
        let s = handle
            .query(
                ConversationWorkflow::transcript,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        Ok((s.inbound_count == 2).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.ledger(transfer).await?.len(),
        1,
        "the agent replied after a hand-over"
    );

    // Opt-out: suppressed on every channel, conversation ended.
    let suppressed = stack
        .mongo
        .collection::<Document>("suppressions")
        .find_one(doc! { "_id": opt_out.as_str() })
        .await?;
    assert!(suppressed.is_some(), "the opt-out was not stored");
    let conv = eventually("the opt-out to be recorded", WAIT, || async {
        let c = conversation(&stack, opt_out).await?;
        Ok((c["agent"]["status"] == json!("ended")).then_some(c))
    })
    .await?;
    let kinds: Vec<&str> = conv["agent"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["opt_out", "end_conversation"]);
    Ok(())
}

#[tokio::test]
async fn a_failing_model_gets_the_fallback_reply() -> anyhow::Result<()> {
    // A Chat Completions endpoint that always fails.
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "{\"error\":{\"message\":\"model overloaded\"}}",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let model_url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let fallback = "Sorry, our assistant is unavailable. A person will reply soon.";
    let file = agents_file(&format!("fallback_reply = \"{fallback}\"\n"), None)?;
    let stack = Stack::start_with_env(&[
        ("AGENTS_FILE", file.to_str().unwrap()),
        ("AGENT_MODEL_BASE_URL", &model_url),
        ("AGENT_MODEL", "test-model"),
        ("AGENT_MODEL_MAX_RETRIES", "0"),
    ])
    .await?;
    let person = &person();
    text(&stack, person, "Hi, what are your opening hours?").await?;
    assert_eq!(replies(&stack, person, 1).await?, [fallback]);
    let conv = eventually("the fallback to be recorded", WAIT, || async {
        let c = conversation(&stack, person).await?;
        Ok(c["agent"]["actions"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(c))
    })
    .await?;
    assert_eq!(conv["agent"]["actions"][0]["kind"], json!("fallback"));
    assert_eq!(conv["agent"]["agent"], json!("fallback"));
    Ok(())
}

/// A Chat Completions endpoint whose first reply waits until the test releases it, so a
/// message can arrive while the agent is busy. Replies are "Reply 1", "Reply 2", … in the
/// order the requests came in. Returns the base URL, a receiver that yields once per request,
/// and the sender that releases the first reply.
async fn held_model() -> anyhow::Result<(
    String,
    tokio::sync::mpsc::UnboundedReceiver<usize>,
    tokio::sync::oneshot::Sender<()>,
)> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::{Mutex, mpsc, oneshot};

    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let count = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Mutex::new(Some(release_rx)));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let (count, release, seen_tx) = (count.clone(), release.clone(), seen_tx.clone());
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let _ = seen_tx.send(n);
                if n == 1
                    && let Some(rx) = release.lock().await.take()
                {
                    let _ = rx.await;
                }
                axum::Json(json!({
                    "choices": [{"message": {"role": "assistant", "content": format!("Reply {n}")}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen_rx, release_tx))
}

#[tokio::test]
async fn a_message_that_arrives_during_the_last_turn_of_a_run_is_answered_by_the_next_run()
-> anyhow::Result<()> {
    // One turn per run: the turn answering the first message is its run's last, and the run
    // continues as new right after it.
    let (model_url, mut requests, release) = held_model().await?;
    let file = agents_file("turns_per_run = 1\ntimeout_secs = 60\n", None)?;
    let stack = Stack::start_with_env(&[
        ("AGENTS_FILE", file.to_str().unwrap()),
        ("AGENT_MODEL_BASE_URL", &model_url),
        ("AGENT_MODEL", "test-model"),
        ("AGENT_MODEL_MAX_RETRIES", "0"),
    ])
    .await?;
    let person = &person();

    text(&stack, person, "first question").await?;
    let first = tokio::time::timeout(WAIT, requests.recv()).await?;
    assert_eq!(first, Some(1));
    // The second message reaches the workflow while the model is still on the first.
    text(&stack, person, "second question").await?;
    let temporal = stack.temporal().await?;
    let handle = temporal.get_workflow_handle::<ConversationWorkflow>(conversation_id(person));
    eventually("the second message to reach the workflow", WAIT, || async {
        let s = handle
            .query(
                ConversationWorkflow::transcript,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        Ok((s.inbound_count == 2).then_some(()))
    })
    .await?;
    let _ = release.send(());

    // Both messages are answered: the second by the run that followed the continue-as-new.
    assert_eq!(
        replies(&stack, person, 2).await?,
        ["Reply 1", "Reply 2"],
        "the message that arrived during the run's last turn was not answered"
    );
    let state = handle
        .query(
            ConversationWorkflow::transcript,
            (),
            WorkflowQueryOptions::default(),
        )
        .await?;
    assert!(
        state.generation >= 1,
        "expected a continue-as-new: {state:?}"
    );
    assert_eq!(state.pending_turn, None, "{state:?}");
    // The run that answered the carried message is the one before the current run (it
    // continued as new after its own turn).
    stack
        .save_previous_run_history::<ConversationWorkflow>(
            &conversation_id(person),
            "conversation-carried-turn",
        )
        .await?;
    Ok(())
}

/// A Chat Completions endpoint that holds every request until [`HeldModel::release`], so a
/// test decides how long the model is busy.
struct HeldModel {
    url: String,
    received: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldModel {
    async fn start(hold_at_most: Duration) -> anyhow::Result<Self> {
        let received = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move || {
                let counter = counter.clone();
                let mut released = released.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = tokio::time::timeout(hold_at_most, released.wait_for(|r| *r)).await;
                    axum::Json(json!({
                        "id": "chatcmpl-held", "object": "chat.completion", "created": 1,
                        "model": "test-model",
                        "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "Thanks for waiting."}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            url,
            received,
            release,
        })
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    fn release(&self) {
        let _ = self.release.send(true);
    }
}

#[tokio::test]
async fn a_single_sms_is_sent_while_every_model_slot_is_busy() -> anyhow::Result<()> {
    // Both queues get the same few slots, so with model calls and sends sharing one queue the
    // held model calls would take every slot the send could use.
    const SLOTS: usize = 3;
    // The model answers nothing for far longer than the send may take: a send that waited for
    // a model slot would miss SEND_WITHIN by minutes, while a free sending slot makes it in
    // about a second, so the bound holds on a slow, busy machine too.
    const SEND_WITHIN: Duration = Duration::from_secs(60);
    let model = HeldModel::start(Duration::from_secs(600)).await?;
    let file = agents_file("timeout_secs = 900\n", None)?;
    let slots = SLOTS.to_string();
    let stack = Stack::start_with_env(&[
        ("AGENTS_FILE", file.to_str().unwrap()),
        ("AGENT_MODEL_BASE_URL", &model.url),
        ("AGENT_MODEL", "test-model"),
        ("AGENT_MODEL_MAX_RETRIES", "0"),
        ("AGENT_MODEL_TIMEOUT_MS", "900000"),
        ("WORKER_AGENT_ACTIVITY_SLOTS", &slots),
        ("WORKER_MAIN_ACTIVITY_SLOTS", &slots),
    ])
    .await?;

    // More conversations than slots: every model slot is taken and more turns queue behind.
    let people: Vec<String> = (0..SLOTS + 2).map(|_| person()).collect();
    for p in &people {
        text(&stack, p, "Hi, is anyone there?").await?;
    }
    eventually("every model slot to be busy", WAIT, || async {
        Ok((model.received() >= SLOTS).then_some(()))
    })
    .await?;

    let to = person();
    stack
        .grpc()
        .await?
        .send_sms(SendSmsRequest {
            to: to.clone(),
            body: "Your order has shipped".to_owned(),
            ..Default::default()
        })
        .await?;
    let sent = eventually("the SMS while the model is busy", SEND_WITHIN, || async {
        Ok((!stack.ledger(&to).await?.is_empty()).then_some(()))
    })
    .await;
    let busy = model.received();
    model.release();
    sent?;
    assert_eq!(
        busy, SLOTS,
        "more model calls ran at once than the worker has model slots"
    );

    // Once the model answers, the turns that were held or queued are all answered.
    for p in &people {
        assert_eq!(replies(&stack, p, 1).await?, ["Thanks for waiting."]);
    }
    Ok(())
}

#[tokio::test]
async fn an_idle_closed_conversation_keeps_its_memory_and_hand_over_in_the_next_run()
-> anyhow::Result<()> {
    // Runs complete after 2 s of silence (a summary comes first, after 1 s).
    let file = agents_file("idle_close_secs = 2\nsummary_after_idle_secs = 1\n", None)?;
    let stack = Stack::start_with_env(&[("AGENTS_FILE", file.to_str().unwrap())]).await?;
    let temporal = stack.temporal().await?;
    let (named, handed_over) = (&person(), &person());

    text(&stack, named, "my name is Grace").await?;
    text(&stack, handed_over, "can I talk to a human").await?;
    assert_eq!(
        replies(&stack, handed_over, 1).await?,
        ["Of course. Let me get a member of our team for you."]
    );
    replies(&stack, named, 1).await?;
    // Both runs complete idle.
    for theirs in [named, handed_over] {
        tokio::time::timeout(
            WAIT,
            temporal
                .get_workflow_handle::<ConversationWorkflow>(conversation_id(theirs))
                .get_result(temporalio_client::WorkflowGetResultOptions::default()),
        )
        .await??;
    }
    stack
        .save_history::<ConversationWorkflow>(
            &conversation_id(handed_over),
            "conversation-idle-close-carry",
        )
        .await?;

    // The next message starts a new run, which remembers the name…
    text(&stack, named, "what's my name?").await?;
    assert_eq!(
        replies(&stack, named, 2).await?[1],
        "You told me your name is Grace."
    );
    // …and stays handed over: the agent does not come back.
    text(&stack, handed_over, "hello? anyone?").await?;
    let handle = temporal.get_workflow_handle::<ConversationWorkflow>(conversation_id(handed_over));
    let state = eventually("the new run to take back the hand-over", WAIT, || async {
        let s = handle
            .query(
                ConversationWorkflow::transcript,
                (),
                WorkflowQueryOptions::default(),
            )
            .await?;
        Ok(
            (s.mode == voice_agent_workflows::AgentMode::Handoff && s.inbound_count == 1)
                .then_some(s),
        )
    })
    .await?;
    assert_eq!(
        state.recent.back().map(|m| m.body.as_str()),
        Some("hello? anyone?")
    );
    assert_eq!(
        stack.ledger(handed_over).await?.len(),
        1,
        "the agent answered after a hand-over"
    );
    stack
        .save_history::<ConversationWorkflow>(
            &conversation_id(handed_over),
            "conversation-idle-carry-restored",
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn with_no_worker_on_the_model_queue_a_reply_is_the_fallback_until_one_starts()
-> anyhow::Result<()> {
    // A deployment whose only worker polls the main queue: the reply waits the profile's
    // timeout for a model slot that never frees, then the person gets the fallback.
    let fallback = "Sorry, we are busy. A person will reply soon.";
    let file = agents_file(
        &format!("timeout_secs = 2\nfallback_reply = \"{fallback}\"\n"),
        None,
    )?;
    let stack = Stack::start_with_env(&[
        ("AGENTS_FILE", file.to_str().unwrap()),
        ("WORKER_TASK_QUEUES", "main"),
    ])
    .await?;
    let person = &person();
    text(&stack, person, "Hello").await?;
    assert_eq!(replies(&stack, person, 1).await?, [fallback]);

    // A second worker polling only the model queue: the scripted agent answers again.
    let _model_worker = stack.spawn_worker_with(&[("WORKER_TASK_QUEUES", "agent")])?;
    // The profile gives a reply only two seconds in the queue: text once the worker polls.
    let model_queue = voice_agent_workflows::agent_task_queue(stack.task_queue());
    eventually("a worker polling the model queue", WAIT, || async {
        Ok(stack.activity_pollers_on(&model_queue).await?.then_some(()))
    })
    .await?;
    text(&stack, person, "my name is Grace").await?;
    let got = replies(&stack, person, 2).await?;
    assert_eq!(got[1], "Nice to meet you, Grace! How can I help?");
    Ok(())
}

/// The hand-over queue: a person answers by hand through the conversation's workflow (the
/// exactly-once send path: the same request twice sends once), then hands it back, and the
/// agent answers the next message (not the ones the person dealt with).
#[tokio::test]
async fn a_person_answers_a_hand_over_once_and_hands_it_back_to_the_agent() -> anyhow::Result<()> {
    let file = agents_file("", Some(RULES))?;
    let stack = Stack::start_with_env(&[("AGENTS_FILE", file.to_str().unwrap())]).await?;
    let theirs = &person();
    let id = conversation_id(theirs);
    text(&stack, theirs, "can I talk to a human").await?;
    assert_eq!(
        replies(&stack, theirs, 1).await?,
        ["Connecting you to a person."]
    );
    eventually("the hand-over", WAIT, || async {
        let c = conversation(&stack, theirs).await?;
        Ok((c["agent"]["needs_human"] == json!(true)).then_some(()))
    })
    .await?;
    text(&stack, theirs, "hello? anyone?").await?;

    let post = |path: String, body: Value| {
        let http = stack.http.clone();
        async move {
            let r = http.post(path).json(&body).send().await?;
            let status = r.status();
            let answer: Value = r.json().await?;
            anyhow::Ok((status, answer))
        }
    };
    let replies_url = format!("{}/api/conversations/{id}/replies", stack.api_http);
    let reply = json!({"body": "Hi, this is Sam from the team.", "request_id": "reply-1"});
    for _ in 0..3 {
        let (status, answer) = post(replies_url.clone(), reply.clone()).await?;
        assert_eq!(status, 202, "{answer}");
    }
    let (status, answer) =
        post(replies_url.clone(), json!({"body": " ", "request_id": "x"})).await?;
    assert_eq!(status, 400, "an empty reply is refused: {answer}");
    let (status, _) = post(
        format!(
            "{}/api/conversations/conversation-1-2/replies",
            stack.api_http
        ),
        reply.clone(),
    )
    .await?;
    assert_eq!(status, 404, "an unknown conversation is refused");
    assert_eq!(
        replies(&stack, theirs, 2).await?,
        [
            "Connecting you to a person.",
            "Hi, this is Sam from the team."
        ]
    );

    let (status, answer) = post(
        format!("{}/api/conversations/{id}/hand-back", stack.api_http),
        json!({"request_id": "back-1"}),
    )
    .await?;
    assert_eq!(status, 202, "{answer}");
    let conv = eventually("the hand-back", WAIT, || async {
        let c = conversation(&stack, theirs).await?;
        Ok((c["agent"]["needs_human"] == json!(false)).then_some(c))
    })
    .await?;
    let kinds: Vec<&str> = conv["agent"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["transfer", "person_reply", "hand_back"]);
    assert_eq!(conv["agent"]["status"], json!("open"));

    text(&stack, theirs, "what are your opening hours").await?;
    assert_eq!(
        replies(&stack, theirs, 3).await?[2],
        "Sorry, could you rephrase?",
        "the agent answers again"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.ledger(theirs).await?.len(),
        3,
        "the person's reply went once, and the agent did not answer what came during the hand-over"
    );
    Ok(())
}
