//! The worker process: connects to Temporal, MongoDB and Twilio (or the simulator) and runs
//! the workflows of `voice-agent-workflows` with the activities of `voice-agent-activities`.
//!
//! It polls two task queues, each with its own activity slots (`WORKER_TASK_QUEUES` chooses
//! which, so model workers and sending workers can be scaled apart):
//!
//! | queue | what runs there |
//! |---|---|
//! | main (`TEMPORAL_TASK_QUEUE`) | every workflow; sends, dials, campaign batches, store writes; the call agent's local activities |
//! | agent (`<main>-agent`) | model calls: `agent_reply` and `agent_summary` |
//!
//! Any number of workers can poll the same task queue; a worker killed at any point loses
//! nothing, because Temporal re-dispatches its tasks and every activity is idempotent.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let settings = voice_agent_config::Settings::from_env(&voice_agent_config::Env::process())?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! voice_agent_worker::run(settings, shutdown).await
//! # }
//! ```
#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;
use voice_agent_activities::sender::SenderLimits;
use voice_agent_activities::{
    AgentActivities, CampaignActivities, ChannelRegistry, MessagingActivities, TwilioChannel,
    VoiceActivities,
};
use voice_agent_config::Settings;
use voice_agent_store::MongoStore;
use voice_agent_workflows::{
    CallWorkflow, CampaignWorkflow, ConversationWorkflow, FollowUpWorkflow, SendMessageWorkflow,
    agent_task_queue,
};

/// Connects to Temporal once it answers for our namespace. Connecting, and the SDK's own check
/// when the worker starts polling, give up after a few seconds; a worker started while
/// Temporal restarts (or before it, in the wrong order) waits here instead of exiting. Returns
/// `None` when stopped first.
async fn connect_when_up(
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<temporalio_client::Client>> {
    use temporalio_client::tonic::{Code, Request};
    use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;

    let mut pause = Duration::from_millis(250);
    let mut client = None;
    loop {
        if client.is_none() {
            match voice_agent_config::connect_temporal("voice-agent-worker").await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "Temporal is not reachable yet; waiting")
                }
            }
        }
        if let Some(c) = &client {
            let namespace = c.options().namespace.clone();
            let request = DescribeNamespaceRequest {
                namespace: namespace.clone(),
                ..Default::default()
            };
            let mut service = c.connection().workflow_service();
            match service.describe_namespace(Request::new(request)).await {
                Ok(_) => return Ok(client),
                // A dev server registers its namespace just after it starts listening: wait
                // for it too, saying what is missing.
                Err(s) if s.code() == Code::NotFound => tracing::warn!(
                    namespace,
                    "Temporal has no such namespace (yet); waiting: create it, or fix TEMPORAL_NAMESPACE"
                ),
                Err(s) => {
                    tracing::warn!(error = %s.message(), "Temporal is not reachable yet; waiting")
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Runs the worker until `shutdown` is cancelled, then drains in-flight tasks.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = MongoStore::connect(settings.mongo.uri.expose_secret(), &settings.mongo.database)
        .await
        .context("Failed to configure MongoDB")?;
    store
        .ensure_schema()
        .await
        .context("Failed to create MongoDB collections and indexes")?;
    let directory = Arc::new(settings.agent.directory()?);
    // The profiles live in MongoDB; the agents file seeds them (each content once).
    voice_agent_activities::profiles::import_directory(&store, &directory)
        .await
        .context("Failed to import the agents file's profiles")?;
    let agent = settings.agent.agent(&directory)?;
    tracing::info!(
        agent = %agent.name(),
        numbers = directory.number_count(),
        "agent configured"
    );
    // Both queues run agent activities: the main queue the quick ones (profile lookup,
    // opt-out, turn records) and the call agent's local activities, the agent queue the model
    // calls.
    let agents = AgentActivities::new(agent.clone(), store.clone());
    let model_calls = AgentActivities::new(agent, store.clone());
    let twilio = settings.twilio.client()?;
    let limits = sender_limits(&settings.senders);
    let voice = VoiceActivities::new(
        store.clone(),
        twilio.clone(),
        settings.public_base_url.clone(),
    )
    .with_sender_limits(limits.clone());
    let channels = ChannelRegistry::new("twilio", Arc::new(TwilioChannel::new(twilio)));
    let messaging = MessagingActivities::new(
        store.clone(),
        channels.clone(),
        settings.public_base_url.clone(),
    )
    .with_sender_limits(limits.clone());
    let campaigns = CampaignActivities::new(
        store,
        channels,
        settings.public_base_url.clone(),
        settings.default_region.clone(),
    )
    .with_sender_limits(limits);

    let Some(client) = connect_when_up(&shutdown).await? else {
        return Ok(());
    };
    let runtime = Runtime::from_current_tokio(Default::default())
        .context("Failed to start the Temporal runtime")?;
    let mut workers = Vec::new();
    if settings.worker.poll_main {
        let options = WorkerOptions::new(settings.task_queue.clone())
            .register_activities(messaging)
            .register_activities(campaigns)
            .register_activities(agents)
            .register_activities(voice)
            .register_workflow::<SendMessageWorkflow>()?
            .register_workflow::<CampaignWorkflow>()?
            .register_workflow::<ConversationWorkflow>()?
            .register_workflow::<FollowUpWorkflow>()?
            .register_workflow::<CallWorkflow>()?
            .tuner(tuner(settings.worker.main_activity_slots))
            // A crashed worker's sticky queue delays the next workflow task by this much.
            .sticky_queue_schedule_to_start_timeout(Duration::from_secs(3))
            // Heartbeats reach the server at least this often (by default only every 80% of the
            // heartbeat timeout, which leaves a slow batch no margin before it is timed out).
            .max_heartbeat_throttle_interval(Duration::from_secs(2))
            .graceful_shutdown_period(Duration::from_secs(10))
            .build();
        workers.push((settings.task_queue.clone(), options));
    }
    if settings.worker.poll_agent {
        // Activities only: the SDK then polls no workflow tasks on this queue.
        let options = WorkerOptions::new(agent_task_queue(&settings.task_queue))
            .register_activities(model_calls)
            .tuner(tuner(settings.worker.agent_activity_slots))
            .graceful_shutdown_period(Duration::from_secs(10))
            .build();
        workers.push((agent_task_queue(&settings.task_queue), options));
    }
    let mut workers = workers
        .into_iter()
        .map(|(queue, options)| {
            let worker = Worker::new(&runtime, client.clone(), options)
                .with_context(|| format!("Failed to create the worker for task queue {queue}"))?;
            Ok((queue, worker))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    // One worker stopping (an error, or shutdown) stops the others, so the process never
    // carries on polling half of what it was configured for.
    let stop_all = shutdown.child_token();
    let stops: Vec<_> = workers.iter().map(|(_, w)| w.shutdown_handle()).collect();
    // Worker::run is !Send, so the workers run side by side on this task, not spawned.
    let runs = futures::future::join_all(workers.iter_mut().map(|(queue, worker)| {
        let stop_all = &stop_all;
        async move {
            tracing::info!(task_queue = %queue, "worker polling");
            let result = worker.run().await;
            if let Err(e) = &result {
                tracing::error!(task_queue = %queue, error = ?e, "worker stopped with an error");
            }
            stop_all.cancel();
            result.with_context(|| format!("worker of task queue {queue} stopped with an error"))
        }
    }));
    let (results, ()) = tokio::join!(runs, async {
        stop_all.cancelled().await;
        tracing::info!("worker shutting down");
        for stop in &stops {
            stop();
        }
    });
    results.into_iter().try_for_each(|r| r)
}

/// Fixed activity slots; the other slot kinds keep the SDK's default.
fn tuner(activity_slots: usize) -> TunerHolder {
    const SDK_DEFAULT_SLOTS: usize = 100;
    TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(SDK_DEFAULT_SLOTS))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(activity_slots))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(SDK_DEFAULT_SLOTS))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(SDK_DEFAULT_SLOTS))
        .build()
}

/// The configured per-sender limits, as the activities apply them.
fn sender_limits(s: &voice_agent_config::SenderLimitSettings) -> SenderLimits {
    SenderLimits {
        sms_per_second: s.sms_per_second,
        whatsapp_per_second: s.whatsapp_per_second,
        calls_per_second: s.calls_per_second,
        overrides: s.overrides.iter().cloned().collect(),
    }
}
