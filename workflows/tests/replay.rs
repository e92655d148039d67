//! Replays stored histories of real runs (made by the end-to-end tests with
//! `VA_SAVE_HISTORIES=workflows/tests/histories`) against the current workflow code. A change
//! that would break running workflows on deploy fails here: patch it with `ctx.patched(..)`.
//!
//! The folder only grows: a history recorded before a patch stays, so the unpatched branch of
//! the patch stays tested; new behaviour gets a new history beside it. Every workflow type must
//! have at least one.

use std::path::Path;

use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use voice_agent_workflows::{
    CallWorkflow, CampaignWorkflow, ConversationWorkflow, FollowUpWorkflow, SendMessageWorkflow,
};

#[tokio::test]
async fn stored_histories_replay_against_the_current_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("histories folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no histories in {}", dir.display());
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .register_workflow::<SendMessageWorkflow>()
            .expect("register")
            .register_workflow::<ConversationWorkflow>()
            .expect("register")
            .register_workflow::<CampaignWorkflow>()
            .expect("register")
            .register_workflow::<FollowUpWorkflow>()
            .expect("register")
            .register_workflow::<CallWorkflow>()
            .expect("register")
            .build(),
    )
    .expect("replayer");
    let mut covered = std::collections::BTreeSet::new();
    for file in files {
        let bytes = std::fs::read(&file).expect("read history");
        covered
            .insert(workflow_type(&bytes).unwrap_or_else(|| {
                panic!("{}: no WorkflowExecutionStarted event", file.display())
            }));
        let history = WorkflowHistory::from_json(&bytes).expect("history JSON");
        replayer
            .replay_workflow(history)
            .await
            .unwrap_or_else(|e| panic!("{} no longer replays: {e}", file.display()));
    }
    // A workflow type without a stored history is a change nobody checks on deploy.
    for name in WORKFLOW_TYPES {
        assert!(
            covered.contains(*name),
            "no stored history of {name} in {}: record one (see the module docs)",
            dir.display()
        );
    }
}

/// Every workflow type the worker registers.
const WORKFLOW_TYPES: &[&str] = &[
    "SendMessageWorkflow",
    "ConversationWorkflow",
    "CampaignWorkflow",
    "FollowUpWorkflow",
    "CallWorkflow",
];

/// The type of the workflow a stored history is of (its first event's).
fn workflow_type(history_json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(history_json).ok()?;
    v["events"][0]["attributes"]["WorkflowExecutionStartedEventAttributes"]["workflow_type"]["name"]
        .as_str()
        .map(str::to_owned)
}
