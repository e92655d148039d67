//! Voice turns that end unusually: a caller who hangs up while the agent is still answering,
//! and an opt-out that could not be written during the call.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use temporalio_client::{WorkflowDescribeOptions, WorkflowGetResultOptions};
use tokio::sync::Notify;
use voice_agent_workflows::CallWorkflow;

use crate::helpers::{ACCOUNT_SID, AUTH_TOKEN, Stack, eventually};
use crate::voice::{person, ring_in, route_our_number, simulator_call};

const WAIT: Duration = Duration::from_secs(90);
const OURS: &str = "+15005550006";
const GREETING: &str = "Hello, how can I help?";

/// An agents file with one profile on our number; `extra` is added to the profile.
fn agents_file(extra: &str, rules: Option<&str>) -> anyhow::Result<PathBuf> {
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
            "[profiles.support]\ninstructions = \"Help people.\"\ngreeting = \"{GREETING}\"\n{rules_line}{extra}\n[numbers]\n\"{OURS}\" = \"support\"\n"
        ),
    )?;
    Ok(file)
}

/// The call's log once written with its outcome.
async fn call_log(stack: &Stack, call_id: &str) -> anyhow::Result<Document> {
    eventually(&format!("the call log of {call_id}"), WAIT, || async {
        Ok(stack
            .mongo
            .collection::<Document>("call_logs")
            .find_one(doc! { "call_id": call_id, "outcome": { "$exists": true } })
            .await?)
    })
    .await
}

fn transcript(log: &Document) -> Vec<(String, String)> {
    log.get_array("transcript")
        .map(|t| {
            t.iter()
                .filter_map(|e| e.as_document())
                .map(|e| {
                    (
                        e.get_str("speaker").unwrap_or_default().to_owned(),
                        e.get_str("text").unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn lines(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(s, t)| ((*s).to_owned(), (*t).to_owned()))
        .collect()
}

/// What the simulator's call said to the caller.
fn said(call: &Value) -> Vec<String> {
    call["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == json!("say"))
        .map(|e| e["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Status callbacks the api has handed to their call workflows (its inbox metric).
async fn call_statuses_delivered(stack: &Stack) -> anyhow::Result<f64> {
    let text = stack
        .http
        .get(format!("{}/metrics", stack.api_http))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| {
            l.strip_prefix("voice_agent_inbox_delivered_total{kind=\"call_status\"}")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0))
}

/// A Chat Completions endpoint whose replies wait for [`HeldModel::release`]; summaries are
/// answered at once.
struct HeldModel {
    url: String,
    replies_asked: Arc<AtomicUsize>,
    asked: Arc<Notify>,
    release: Arc<Notify>,
}

impl HeldModel {
    async fn start(reply: Value) -> anyhow::Result<Self> {
        let replies_asked = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post({
                let (replies_asked, asked, release) =
                    (replies_asked.clone(), asked.clone(), release.clone());
                move |body: String| async move {
                    if body.contains("record_summary") {
                        return axum::Json(json!({
                            "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [{
                                "id": "s1", "type": "function",
                                "function": {"name": "record_summary", "arguments": "{\"summary\":\"Asked for a call back.\",\"disposition\":\"callback\"}"},
                            }]}}],
                        }));
                    }
                    replies_asked.fetch_add(1, Ordering::SeqCst);
                    asked.notify_one();
                    release.notified().await;
                    axum::Json(reply)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            url,
            replies_asked,
            asked,
            release,
        })
    }
}

#[tokio::test]
async fn a_caller_who_hangs_up_mid_turn_gets_the_turns_actions_and_a_transcript_of_what_was_said()
-> anyhow::Result<()> {
    // Arrange: the agent's answer, with a call-back action, is held until the test lets it go.
    let unheard = "Of course, someone will call you back tomorrow.";
    let model = HeldModel::start(json!({
        "choices": [{"message": {"role": "assistant", "content": unheard, "tool_calls": [{
            "id": "c1", "type": "function",
            "function": {"name": "schedule_callback", "arguments": "{\"delay_seconds\":3600,\"note\":\"asked for a call back\"}"},
        }]}}],
    }))
    .await?;
    let file = agents_file("timeout_secs = 20\n", None)?;
    let stack = Stack::start_with_env(&[
        ("AGENTS_FILE", file.to_str().unwrap()),
        ("AGENT_MODEL_BASE_URL", &model.url),
        ("AGENT_MODEL", "test-model"),
        ("AGENT_MODEL_MAX_RETRIES", "0"),
    ])
    .await?;
    route_our_number(&stack).await?;
    let asked = "Can someone call me back tomorrow?";
    let sid = ring_in(&stack, &person(), &[asked], 0).await?;
    let call_id = format!("call-{sid}");

    // Act: while the agent is answering the caller's line, the caller hangs up; the answer
    // comes only once the call's workflow has been told.
    tokio::time::timeout(WAIT, model.asked.notified()).await?;
    let delivered = call_statuses_delivered(&stack).await?;
    let hung_up = stack
        .http
        .post(format!(
            "{}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json",
            stack.simulator_url
        ))
        .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
        .form(&[("Status", "completed")])
        .send()
        .await?;
    assert!(hung_up.status().is_success(), "{}", hung_up.text().await?);
    eventually("the final status handed to the call", WAIT, || async {
        Ok((call_statuses_delivered(&stack).await? > delivered).then_some(()))
    })
    .await?;
    model.release.notify_one();

    // Assert: the call settles, its log has exactly the turns spoken (not the answer nobody
    // heard), and the turn's call-back still happened.
    let temporal = stack.temporal().await?;
    temporal
        .get_workflow_handle::<CallWorkflow>(call_id.clone())
        .get_result(WorkflowGetResultOptions::default())
        .await?;
    let log = call_log(&stack, &call_id).await?;
    assert_eq!(
        transcript(&log),
        lines(&[("agent", GREETING), ("caller", asked)]),
        "{log}"
    );
    let call = simulator_call(&stack, &sid).await?;
    assert_eq!(said(&call), [GREETING], "{call}");
    assert_eq!(model.replies_asked.load(Ordering::SeqCst), 1);
    let followup = temporal
        .get_workflow_handle::<temporalio_client::UntypedWorkflow>(format!("followup-{call_id}-1"))
        .describe(WorkflowDescribeOptions::default())
        .await;
    assert!(
        followup.is_ok(),
        "the call-back of the unfinished turn was not scheduled"
    );
    Ok(())
}

/// Rules for the opt-out test.
const OPT_OUT_RULES: &str = r#"
fallback = "Sorry, could you rephrase?"

[[rules]]
keywords = ["remove me"]
reply = "Done, you won't hear from us again."
actions = [{ type = "opt_out" }, { type = "end_conversation" }]
disposition = "not_interested"
"#;

#[tokio::test]
async fn an_opt_out_that_cannot_be_written_during_the_call_lands_once_after_it()
-> anyhow::Result<()> {
    // Arrange: the caller once texted START, and a unique index makes every agent opt-out
    // write fail until the test removes the document it collides with.
    let file = agents_file("", Some(OPT_OUT_RULES))?;
    let stack = Stack::start_with_env(&[("AGENTS_FILE", file.to_str().unwrap())]).await?;
    route_our_number(&stack).await?;
    let caller = person();
    let suppressions = stack.mongo.collection::<Document>("suppressions");
    suppressions
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! { "keyword": 1 })
                .options(
                    mongodb::options::IndexOptions::builder()
                        .name("e2e_one_per_keyword".to_owned())
                        .unique(true)
                        .build(),
                )
                .build(),
        )
        .await?;
    let long_ago = mongodb::bson::DateTime::from_millis(0);
    suppressions
        .insert_many([
            doc! { "_id": &caller, "opted_out": false, "keyword": "START", "keyword_at": long_ago },
            doc! { "_id": "blocker", "opted_out": false, "keyword": "AGENT", "keyword_at": long_ago },
        ])
        .await?;

    // Act: the caller asks to be removed; the agent says so and hangs up.
    let asked = "please remove me from your list";
    let sid = ring_in(&stack, &caller, &[asked], 0).await?;
    let call = eventually("the call to end", WAIT, || async {
        let call = simulator_call(&stack, &sid).await?;
        Ok((call["status"] == json!("completed")).then_some(call))
    })
    .await?;
    let suppressed = || async {
        suppressions
            .find_one(doc! { "_id": &caller, "opted_out": true })
            .await
    };
    // The write failed during the call (both of its attempts in the turn's budget).
    assert!(suppressed().await?.is_none(), "the opt-out was written");
    suppressions.delete_one(doc! { "_id": "blocker" }).await?;

    // Assert: the opt-out lands after the call, once, and the call's log follows it.
    let stored = eventually("the deferred opt-out", WAIT, || async {
        Ok(suppressed().await?)
    })
    .await?;
    assert_eq!(stored.get_str("keyword")?, "AGENT", "{stored}");
    assert_eq!(stored.get_str("channel")?, "voice", "{stored}");
    let ended: chrono::DateTime<chrono::Utc> =
        call["ended_at"].as_str().expect("ended_at").parse()?;
    let since =
        chrono::DateTime::<chrono::Utc>::from(stored.get_datetime("since")?.to_system_time());
    assert!(
        since >= ended - chrono::Duration::milliseconds(1),
        "written at {since}, the call ended at {ended}"
    );
    assert_eq!(
        suppressions
            .count_documents(doc! { "keyword": "AGENT" })
            .await?,
        1
    );
    let log = call_log(&stack, &format!("call-{sid}")).await?;
    let reply = "Done, you won't hear from us again.";
    assert_eq!(
        transcript(&log),
        lines(&[("agent", GREETING), ("caller", asked), ("agent", reply)]),
        "{log}"
    );
    assert_eq!(said(&call), [GREETING, reply], "{call}");
    Ok(())
}
