//! Scale-out on one machine: two api processes and three workers share one Temporal server and
//! one MongoDB database, behind a round-robin balancer ([`crate::balancer`]) that Twilio (the
//! simulator) sends every webhook and status callback to, as to a deployment's public URL.
//! A campaign is created through one api and started through the other; people text in,
//! call in, and are called from both apis; then one api and one worker are killed (SIGKILL)
//! mid-way, with calls on the line, and the rest carry on. Afterwards every campaign item is
//! delivered and was sent once, every reply went out once, every inbound message reached its
//! conversation once and in order, and every call ended once with each of its turns in its
//! transcript, as the caller heard and said them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use futures::future::join_all;
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use temporalio_client::WorkflowGetResultOptions;
use voice_agent_workflows::CampaignWorkflow;

use crate::agent::agents_file;
use crate::balancer::Balancer;
use crate::durability::dials;
use crate::helpers::{FROM, Stack, eventually};
use crate::inbox::{Run, assert_inbox_empty, conversation_inbound, post_sms};
use crate::voice::{call_logs, enc, person, ring_in, script_callee, simulator_call, transcript};

const CONTACTS: usize = 600;
const PEOPLE: usize = 30;
const EACH: usize = 4;
/// Calls of each direction.
const CALLS: usize = 4;
/// What every caller and callee says, a turn each.
const LINES: [&str; 4] = ["Hello", "my name is Grace", "what's my name?", "bye"];
/// A caller's pause before each line: calls last long enough to be on the line at the kills.
const THINK_MS: u64 = 2_000;
const WAIT: Duration = Duration::from_secs(300);

/// Round `n` of inbound messages: one from every person, through the balancer.
async fn texts(stack: &Stack, run: &Run, n: usize) {
    let posts = (0..PEOPLE).map(|p| {
        let (http, url) = (stack.http.clone(), stack.public_url.clone());
        let (from, sid) = (run.person(p), run.sid(p, n));
        async move { post_sms(&http, &url, &from, &sid, &format!("m{n}")).await }
    });
    let statuses = join_all(posts).await;
    assert!(
        statuses.iter().all(|s| *s == Some(200)),
        "round {n}: {statuses:?}"
    );
}

/// Campaign messages at Twilio (the contacts' numbers, not the people texting in).
async fn campaign_sent(stack: &Stack) -> anyhow::Result<u64> {
    Ok(stack
        .ledger_by_to()
        .await?
        .iter()
        .filter(|(to, _)| to.starts_with("+1646555"))
        .map(|(_, n)| n)
        .sum())
}

/// The conversation of a finished call as the simulator's party heard and said it: our
/// `<Say>`s and their speech, in order.
fn heard(call: &Value) -> Vec<(String, String)> {
    call["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| {
                    let speaker = match e["kind"].as_str()? {
                        "say" => "agent",
                        "speech" => "caller",
                        _ => return None,
                    };
                    Some((speaker.to_owned(), e["text"].as_str()?.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the simulator's party has said its first line (the call is mid-way).
fn has_spoken(call: &Value) -> bool {
    heard(call).iter().any(|(speaker, _)| speaker == "caller")
}

/// Checks one finished call: it ended once (one attempt logged, with a final outcome), the
/// caller heard no error, and its transcript holds every turn once, in the order heard and
/// said on the line, all of them answered.
async fn assert_call_complete(
    stack: &Stack,
    call_id: &str,
    sid: &str,
    outcome: &str,
) -> anyhow::Result<()> {
    let logs = call_logs(stack, call_id, 1).await?;
    assert_eq!(
        logs.len(),
        1,
        "{call_id}: one attempt, logged once: {logs:?}"
    );
    let log = &logs[0];
    assert_eq!(log.get_str("outcome")?, outcome, "{log}");
    assert_eq!(log.get_str("call_sid")?, sid, "{log}");
    let call = eventually("the call to end at Twilio", WAIT, || async {
        let call = simulator_call(stack, sid).await?;
        Ok((call["status"] == json!("completed")).then_some(call))
    })
    .await?;
    let errors: Vec<&Value> = call["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == json!("error")).collect())
        .unwrap_or_default();
    assert!(
        errors.is_empty(),
        "{call_id}: the caller heard an error: {errors:?}"
    );
    let on_the_line = heard(&call);
    let said: Vec<&str> = on_the_line
        .iter()
        .filter(|(speaker, _)| speaker == "caller")
        .map(|(_, text)| text.as_str())
        .collect();
    assert_eq!(said, LINES, "{call_id}: the caller said every line");
    assert_eq!(
        transcript(log),
        on_the_line,
        "{call_id}: turns lost or doubled"
    );
    assert_eq!(
        on_the_line.last().map(|(speaker, _)| speaker.as_str()),
        Some("agent"),
        "{call_id}: the last line was answered"
    );
    Ok(())
}

#[tokio::test]
async fn two_apis_and_three_workers_share_the_work_and_lose_nothing_when_one_of_each_dies()
-> anyhow::Result<()> {
    // Arrange: api 1 and worker 1 from the stack, api 2 and workers 2 and 3 beside them, both
    // apis behind the balancer that Twilio's webhooks and callbacks are addressed to.
    // Our number's agent (the scripted one) answers texts and calls.
    let agents = agents_file("", None)?;
    let balancer = Balancer::start().await?;
    let mut stack = Stack::start_behind(
        &balancer.url,
        &[("AGENTS_FILE", agents.to_str().expect("a utf-8 path"))],
    )
    .await?;
    let (_second_api, second_url) = stack.spawn_api().await?;
    balancer.add_upstream(&stack.api_http);
    balancer.add_upstream(&second_url);
    let _worker2 = stack.spawn_worker_with(&[])?;
    let _worker3 = stack.spawn_worker_with(&[])?;
    let apis = [stack.api_http.clone(), second_url.clone()];
    let run = Run::new("628");
    stack
        .admin(
            reqwest::Method::PUT,
            &format!("/admin/numbers/{}", enc(FROM)),
            Some(json!({
                "sms_url": format!("{}/twilio/sms", balancer.url),
                "voice_url": format!("{}/twilio/voice", balancer.url),
                "voice_status_callback": format!("{}/twilio/voice/status", balancer.url),
            })),
        )
        .await?;

    let list_id = format!(
        "cl_scale_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    stack
        .mongo
        .collection::<Document>("contact_lists")
        .insert_one(doc! { "_id": &list_id, "name": "scale" })
        .await?;
    let contacts: Vec<Document> = (0..CONTACTS)
        .map(|i| doc! { "_id": format!("ct_{i:06}"), "list_id": &list_id, "phone": format!("+1646555{i:04}"), "name": format!("N{i}") })
        .collect();
    stack
        .mongo
        .collection::<Document>("contacts")
        .insert_many(contacts)
        .await?;
    let callees: Vec<String> = (0..CALLS).map(|_| person()).collect();
    for callee in &callees {
        script_callee(
            &stack,
            callee,
            json!({"behaviour": "human", "lines": LINES, "think_ms": THINK_MS}),
        )
        .await?;
    }

    // Act: the campaign is created on api 2 and started on api 1, at a rate that keeps it
    // going past the kills below; people text in, call in, and are called from both apis.
    let began = Instant::now();
    let created: Value = stack
        .http
        .post(format!("{second_url}/api/campaigns"))
        .json(&json!({"name": "scale", "list_id": list_id, "template": "Hello {{name}}", "rate_per_second": 40.0}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().expect("campaign id").to_owned();
    let started = stack
        .http
        .post(format!("{}/api/campaigns/{id}/start", stack.api_http))
        .send()
        .await?;
    assert_eq!(started.status(), 200);
    let mut outbound_calls = Vec::new();
    for (i, callee) in callees.iter().enumerate() {
        let resp = stack
            .http
            .post(format!("{}/api/calls", apis[i % apis.len()]))
            .json(&json!({"to": callee}))
            .send()
            .await?;
        assert_eq!(resp.status(), reqwest::StatusCode::CREATED);
        let body: Value = resp.json().await?;
        outbound_calls.push(body["call_id"].as_str().expect("call id").to_owned());
    }
    let mut inbound_calls = Vec::new();
    for _ in 0..CALLS {
        inbound_calls.push(ring_in(&stack, &person(), &LINES, THINK_MS).await?);
    }
    texts(&stack, &run, 0).await;
    texts(&stack, &run, 1).await;

    // The kills come once every call has had a turn (three are left, each after a 2 s
    // pause) and the campaign is under way.
    eventually(
        "a tenth of the campaign at Twilio, every call mid-way",
        WAIT,
        || async {
            if campaign_sent(&stack).await? < (CONTACTS / 10) as u64 {
                return Ok(None);
            }
            for sid in &inbound_calls {
                if !has_spoken(&simulator_call(&stack, sid).await?) {
                    return Ok(None);
                }
            }
            for callee in &callees {
                if !dials(&stack, callee).await?.iter().any(has_spoken) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await?;
    let mut on_the_line = 0;
    for sid in &inbound_calls {
        on_the_line +=
            usize::from(simulator_call(&stack, sid).await?["status"] == json!("in-progress"));
    }
    for callee in &callees {
        on_the_line += dials(&stack, callee)
            .await?
            .iter()
            .filter(|c| c["status"] == json!("in-progress"))
            .count();
    }
    stack.kill_api().await?;
    stack.kill_worker().await?;
    let at_kill = campaign_sent(&stack).await?;
    assert!(on_the_line > 0, "no call was on the line at the kills");

    // The balancer now finds only api 2.
    texts(&stack, &run, 2).await;
    texts(&stack, &run, 3).await;

    // Assert: the campaign ends with every item sent once.
    let counters = stack
        .temporal()
        .await?
        .get_workflow_handle::<CampaignWorkflow>(format!("campaign-{id}"))
        .get_result(WorkflowGetResultOptions::default())
        .await?;
    let took = began.elapsed();
    assert_eq!(counters.total, CONTACTS as i64, "{counters:?}");
    // A batch retried after its worker died counts what the dead attempt sent.
    assert_eq!(
        counters.accepted + counters.reconciled,
        CONTACTS as u64,
        "{counters:?}"
    );
    assert_eq!(counters.failed + counters.skipped, 0, "{counters:?}");

    // Every item reaches `delivered` (its status callbacks reach a live api through the
    // balancer), and reached its number once.
    let items = stack.mongo.collection::<Document>("campaign_items");
    eventually("every item delivered", WAIT, || async {
        let left = items
            .count_documents(doc! { "campaign_id": &id, "status": { "$ne": "delivered" } })
            .await?;
        Ok((left == 0).then_some(()))
    })
    .await?;
    let items: Vec<Document> = items
        .find(doc! { "campaign_id": &id })
        .await?
        .try_collect()
        .await?;
    assert_eq!(items.len(), CONTACTS);
    let by_to = stack.ledger_by_to().await?;
    for item in &items {
        let received = by_to.get(item.get_str("phone")?).copied().unwrap_or(0);
        assert_eq!(received, 1, "sent once: {item}");
    }
    let records: Vec<Document> = stack
        .mongo
        .collection::<Document>("campaign_executions")
        .find(doc! { "campaign_id": &id, "outcome": "accepted" })
        .await?
        .try_collect()
        .await?;
    let mut accepted: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &records {
        *accepted.entry(r.get_str("item_id")?).or_default() += 1;
    }
    assert!(
        accepted.values().all(|n| *n == 1),
        "an item accepted twice: {accepted:?}"
    );

    // Every inbound message reached its conversation once and in order, whichever api took
    // it and whichever worker ran the conversation; every reply went out once.
    let messages = stack.mongo.collection::<Document>("messages");
    let mut replies = 0;
    for p in 0..PEOPLE {
        let ids = conversation_inbound(&stack, &run.person(p), EACH as u64).await?;
        let sent: Vec<String> = (0..EACH).map(|n| run.sid(p, n)).collect();
        assert_eq!(ids, sent, "person {p}: lost, doubled or out of order");
        // Each message Twilio took for this person is one reply we recorded (a reply sent
        // twice would leave a second SID no message holds), and each reply ends delivered.
        let at_twilio: BTreeSet<String> = stack
            .ledger(&run.person(p))
            .await?
            .iter()
            .filter_map(|m| m["sid"].as_str().map(str::to_owned))
            .collect();
        replies += eventually("every reply recorded and delivered", WAIT, || async {
            let docs: Vec<Document> = messages
                .find(doc! { "to": run.person(p), "direction": "outbound" })
                .await?
                .try_collect()
                .await?;
            let recorded: BTreeSet<&str> = docs
                .iter()
                .filter_map(|d| d.get_str("twilio_sid").ok())
                .collect();
            let settled = docs.iter().all(|d| d.get_str("status") == Ok("delivered"))
                && at_twilio.iter().all(|sid| recorded.contains(sid.as_str()));
            Ok(settled.then_some(docs.len()))
        })
        .await?;
    }
    assert_inbox_empty(&stack).await?;

    // Every call ended once, dialled once, with all its turns.
    for (call_id, callee) in outbound_calls.iter().zip(&callees) {
        let dialled = dials(&stack, callee).await?;
        assert_eq!(dialled.len(), 1, "{callee} dialled once: {dialled:?}");
        let sid = dialled[0]["sid"].as_str().expect("call sid");
        assert_call_complete(&stack, call_id, sid, "human").await?;
    }
    for sid in &inbound_calls {
        assert_call_complete(&stack, &format!("call-{sid}"), sid, "completed").await?;
    }

    let (failovers, replays) = balancer.failovers();
    println!(
        "scale-out: {CONTACTS} items in {:.1}s ({:.0}/s, rate limit 40/s), {at_kill} sent before \
         the kills; {} inbound turns, {replies} replies; {} calls of {} turns each, \
         {on_the_line} on the line at the kills; balancer: {failovers} requests failed over to \
         the other api, {replays} of them webhooks replayed",
        took.as_secs_f64(),
        CONTACTS as f64 / took.as_secs_f64(),
        PEOPLE * EACH,
        2 * CALLS,
        LINES.len(),
    );
    Ok(())
}
