//! The worker process: connects to Temporal, MongoDB and Twilio (or the simulator) and runs
//! the workflows of `voice-agent-workflows` with the activities of `voice-agent-activities`.
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
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;
use voice_agent_activities::{
    AgentActivities, CampaignActivities, ChannelRegistry, MessagingActivities, TwilioChannel,
    VoiceActivities,
};
use voice_agent_config::Settings;
use voice_agent_store::MongoStore;
use voice_agent_workflows::{
    CallWorkflow, CampaignWorkflow, ConversationWorkflow, FollowUpWorkflow, SendMessageWorkflow,
};

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
    let agent = settings.agent.agent(&directory)?;
    tracing::info!(
        agent = %agent.name(),
        numbers = directory.number_count(),
        "agent configured"
    );
    let agents = AgentActivities::new(agent, directory, store.clone());
    let twilio = settings.twilio.client()?;
    let voice = VoiceActivities::new(
        store.clone(),
        twilio.clone(),
        settings.public_base_url.clone(),
    );
    let channels = ChannelRegistry::new("twilio", Arc::new(TwilioChannel::new(twilio)));
    let messaging = MessagingActivities::new(
        store.clone(),
        channels.clone(),
        settings.public_base_url.clone(),
    );
    let campaigns = CampaignActivities::new(
        store,
        channels,
        settings.public_base_url.clone(),
        settings.default_region.clone(),
    );

    let client = voice_agent_config::connect_temporal("voice-agent-worker").await?;
    let runtime = Runtime::from_current_tokio(Default::default())
        .context("Failed to start the Temporal runtime")?;
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
        // A crashed worker's sticky queue delays the next workflow task by this much.
        .sticky_queue_schedule_to_start_timeout(Duration::from_secs(3))
        // Heartbeats reach the server at least this often (by default only every 80% of the
        // heartbeat timeout, which leaves a slow batch no margin before it is timed out).
        .max_heartbeat_throttle_interval(Duration::from_secs(2))
        .graceful_shutdown_period(Duration::from_secs(10))
        .build();
    let mut worker =
        Worker::new(&runtime, client, options).context("Failed to create the worker")?;
    let stop = worker.shutdown_handle();
    tracing::info!(task_queue = %settings.task_queue, "worker polling");
    // Worker::run is !Send, so it runs on this task next to the shutdown watcher.
    let (result, ()) = tokio::join!(worker.run(), async move {
        shutdown.cancelled().await;
        tracing::info!("worker shutting down");
        stop();
    });
    result.context("worker stopped with an error")
}
