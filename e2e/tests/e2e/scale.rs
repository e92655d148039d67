//! Scale-out on one machine: two api processes and three workers share one Temporal server and
//! one MongoDB database. A campaign is created through one api and started through the other
//! while people text both; then one api and one worker are killed (SIGKILL) mid-way and the
//! rest carry on. Afterwards every campaign item is in one final state, no number got the
//! campaign twice (the simulator's ledger), every sent item reached its number once, and every
//! inbound message reached its conversation once and in order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use futures::future::join_all;
use mongodb::bson::{Document, doc};
use serde_json::json;
use temporalio_client::WorkflowGetResultOptions;
use voice_agent_workflows::CampaignWorkflow;

use crate::helpers::{Stack, eventually};
use crate::inbox::{Run, assert_inbox_empty, conversation_inbound, post_sms};

const CONTACTS: usize = 600;
const PEOPLE: usize = 30;
const EACH: usize = 4;
const WAIT: Duration = Duration::from_secs(300);

async fn ledger_by_to(stack: &Stack) -> anyhow::Result<BTreeMap<String, u64>> {
    let counts = stack
        .admin(reqwest::Method::GET, "/admin/ledger/counts", None)
        .await?;
    Ok(serde_json::from_value(counts["by_to"].clone())?)
}

/// Round `n` of inbound messages: one from every person, spread over `apis`.
async fn texts(stack: &Stack, run: &Run, apis: &[String], n: usize) {
    let posts = (0..PEOPLE).map(|p| {
        let (http, api) = (stack.http.clone(), apis[(p + n) % apis.len()].clone());
        let (from, sid) = (run.person(p), run.sid(p, n));
        async move { post_sms(&http, &api, &from, &sid, &format!("m{n}")).await }
    });
    let statuses = join_all(posts).await;
    assert!(
        statuses.iter().all(|s| *s == Some(200)),
        "round {n}: {statuses:?}"
    );
}

#[tokio::test]
async fn two_apis_and_three_workers_share_the_work_and_lose_nothing_when_one_of_each_dies()
-> anyhow::Result<()> {
    // Arrange: api 1 and worker 1 from the stack, api 2 and workers 2 and 3 beside them.
    let mut stack = Stack::start().await?;
    let (_second_api, second_url) = stack.spawn_api().await?;
    let _worker2 = stack.spawn_worker_with(&[])?;
    let _worker3 = stack.spawn_worker_with(&[])?;
    let apis = [stack.api_http.clone(), second_url.clone()];
    let run = Run::new("628");

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

    // Act: the campaign is created on api 2 and started on api 1, at a rate that keeps it
    // going past the kills below; people text both apis meanwhile.
    let began = Instant::now();
    let created: serde_json::Value = stack
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
    texts(&stack, &run, &apis, 0).await;
    texts(&stack, &run, &apis, 1).await;

    eventually("a third of the campaign at Twilio", WAIT, || async {
        let sent: u64 = ledger_by_to(&stack).await?.values().sum();
        Ok((sent >= (CONTACTS / 3) as u64).then_some(()))
    })
    .await?;
    stack.kill_api().await?;
    stack.kill_worker().await?;
    let at_kill: u64 = ledger_by_to(&stack).await?.values().sum();

    // Only api 2 is left to text.
    texts(&stack, &run, &apis[1..], 2).await;
    texts(&stack, &run, &apis[1..], 3).await;

    // Assert: the campaign ends with every item once.
    let counters = stack
        .temporal()
        .await?
        .get_workflow_handle::<CampaignWorkflow>(format!("campaign-{id}"))
        .get_result(WorkflowGetResultOptions::default())
        .await?;
    let took = began.elapsed();
    assert_eq!(counters.total, CONTACTS as i64, "{counters:?}");
    let items: Vec<Document> = stack
        .mongo
        .collection::<Document>("campaign_items")
        .find(doc! { "campaign_id": &id })
        .await?
        .try_collect()
        .await?;
    assert_eq!(items.len(), CONTACTS);
    let by_to = ledger_by_to(&stack).await?;
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        let status = item.get_str("status")?;
        *statuses.entry(status.to_owned()).or_default() += 1;
        let received = by_to.get(item.get_str("phone")?).copied().unwrap_or(0);
        // `sent` too: status callbacks go to `PUBLIC_BASE_URL`, api 1's own address here (no
        // balancer in front), so those after its death are lost and items stay `sent`.
        match status {
            "sent" | "delivered" => assert_eq!(received, 1, "sent once: {item}"),
            other => panic!("an item not sent with no fault injected ({other}): {item}"),
        }
    }

    // Every inbound message reached its conversation once and in order, whichever api took
    // it and whichever worker ran the conversation.
    for p in 0..PEOPLE {
        let ids = conversation_inbound(&stack, &run.person(p), EACH as u64).await?;
        let sent: Vec<String> = (0..EACH).map(|n| run.sid(p, n)).collect();
        assert_eq!(ids, sent, "person {p}: lost, doubled or out of order");
    }
    assert_inbox_empty(&stack).await?;
    println!(
        "scale-out: {CONTACTS} items in {:.1}s ({:.0}/s, rate limit 40/s), {at_kill} sent before \
         the kills, statuses {statuses:?}; {} inbound turns",
        took.as_secs_f64(),
        CONTACTS as f64 / took.as_secs_f64(),
        PEOPLE * EACH
    );
    Ok(())
}
