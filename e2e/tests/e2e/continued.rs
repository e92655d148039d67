//! A campaign whose history grows past the point where it continues as new, mid-way: the next
//! run carries on from the same cursor with the same counters (and its history is the replay
//! fixture of a campaign's continue-as-new).

use std::time::Duration;

use serde_json::{Value, json};
use temporalio_client::{WorkflowDescribeOptions, WorkflowFetchHistoryOptions};
use voice_agent_workflows::CampaignWorkflow;

use crate::campaigns::{api, create_and_start, ledger_counts, ledger_total, make_list, result};
use crate::helpers::{Stack, eventually};

const WAIT: Duration = Duration::from_secs(180);
/// The campaign workflow continues as new past this many events (`MAX_HISTORY_EVENTS`).
const CONTINUE_AFTER: usize = 1_000;

async fn status(stack: &Stack, id: &str) -> anyhow::Result<Value> {
    Ok(api(
        stack,
        reqwest::Method::GET,
        &format!("/api/campaigns/{id}"),
        None,
    )
    .await?
    .1["status"]
        .clone())
}

#[tokio::test]
async fn a_campaign_that_continues_as_new_mid_way_sends_each_contact_once_with_its_counters()
-> anyhow::Result<()> {
    // Arrange: a campaign paused after its first messages.
    // Thousands of signals from one key: beyond the default request budget.
    let stack = Stack::start_with_env(&[("API_RATE_LIMIT_PER_MINUTE", "0")]).await?;
    let (list_id, phones) = make_list(&stack, 30).await?;
    let id = create_and_start(&stack, &list_id, 2.0).await?;
    let workflow_id = format!("campaign-{id}");
    eventually("the first messages", WAIT, || async {
        Ok((ledger_total(&stack).await? >= 2).then_some(()))
    })
    .await?;
    let (s, paused) = api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/pause"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{paused}");
    eventually("the campaign to pause", WAIT, || async {
        Ok((status(&stack, &id).await? == json!("paused")).then_some(()))
    })
    .await?;

    // Act: rate changes (signals) until the history is past the continue-as-new threshold,
    // then resume: the next batch's check continues the run as new.
    let temporal = stack.temporal().await?;
    let handle = temporal.get_workflow_handle::<CampaignWorkflow>(workflow_id.clone());
    while handle
        .describe(WorkflowDescribeOptions::default())
        .await?
        .history_length()
        <= CONTINUE_AFTER
    {
        for _ in 0..100 {
            let (s, changed) = api(
                &stack,
                reqwest::Method::PUT,
                &format!("/api/campaigns/{id}/rate"),
                Some(json!({ "rate_per_second": 2.0 })),
            )
            .await?;
            assert_eq!(s, 200, "{changed}");
        }
    }
    let (s, resumed) = api(
        &stack,
        reqwest::Method::POST,
        &format!("/api/campaigns/{id}/resume"),
        None,
    )
    .await?;
    assert_eq!(s, 200, "{resumed}");
    let counters = result(&stack, &id).await?;

    // Assert: a new run finished the campaign, every contact got one message, and the counters
    // the new run carried add up.
    let history: Value = serde_json::from_slice(
        &temporal
            .get_workflow_handle::<CampaignWorkflow>(workflow_id.clone())
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?,
    )?;
    let continued_from = history["events"][0]["attributes"]
        ["WorkflowExecutionStartedEventAttributes"]["continued_execution_run_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !continued_from.is_empty(),
        "the campaign did not continue as new"
    );
    assert_eq!(counters.total, 30, "{counters:?}");
    assert_eq!(counters.accepted + counters.reconciled, 30, "{counters:?}");
    let by_to = ledger_counts(&stack).await?;
    for p in &phones {
        assert_eq!(by_to.get(p), Some(&1), "{p} received {:?}", by_to.get(p));
    }
    assert_eq!(status(&stack, &id).await?, json!("completed"));
    stack
        .save_previous_run_history::<CampaignWorkflow>(
            &workflow_id,
            "campaign-continued-as-new-shorter-runs",
        )
        .await?;
    stack
        .save_history::<CampaignWorkflow>(
            &workflow_id,
            "campaign-after-continue-as-new-shorter-runs",
        )
        .await?;
    Ok(())
}
