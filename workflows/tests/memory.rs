//! A worker gives back the memory of the workflow runs and activities it has finished.
//!
//! Runs an SDK worker in this process against the Temporal server named by
//! `VA_TEST_TEMPORAL_ADDRESS` (scripts/test.sh starts one) and counts live heap bytes with a
//! counting allocator; this binary has one test, so the count is the worker's.
//!
//! The probes have our workflows' shapes. One races a time-limit timer against the end it waits
//! for and drops the timer unfired, as the call and campaign workflows do. Before the patch in
//! `vendor/temporalio-workflow`, each such run kept its whole workflow context alive after
//! eviction: 4,860 bytes a run here, about 15 KiB a call in the voice benchmark. The other runs
//! activities. Before the patch in `vendor/temporalio-sdk`, each kept 328 bytes for the life of
//! the worker. vendor/README.md has both.

use std::alloc::System;
use std::pin::pin;
use std::time::{Duration, Instant};

use cap::Cap;

use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, WorkflowGetResultOptions,
    WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{
    ActivityOptions, Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext,
    WorkflowResult, workflows::select,
};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn live() -> i64 {
    i64::try_from(ALLOCATOR.allocated()).unwrap_or(i64::MAX)
}

/// Ends when signalled, racing a timer it then drops unfired (the call workflow's time limit).
#[workflow]
#[derive(Default)]
struct RaceProbe {
    done: bool,
}

#[workflow_methods]
impl RaceProbe {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        let mut limit = pin!(ctx.timer(Duration::from_secs(3600)));
        select! {
            _ = ctx.wait_condition(|s| s.done) => {},
            _ = limit.as_mut() => {},
        };
        Ok(())
    }

    #[signal]
    fn finish(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.done = true;
    }
}

struct Echo;

#[activities]
impl Echo {
    #[activity]
    async fn echo(_ctx: ActivityContext, n: u32) -> Result<u32, ActivityError> {
        Ok(n)
    }
}

/// Runs a few activities one after the other (the call workflow runs three or four).
#[workflow]
#[derive(Default)]
struct ActivityProbe;

/// Activities each [`ActivityProbe`] run executes.
const ACTIVITIES_PER_RUN: u32 = 4;

#[workflow_methods]
impl ActivityProbe {
    #[run]
    async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<()> {
        for n in 0..ACTIVITIES_PER_RUN {
            ctx.execute_activity(
                Echo::echo,
                n,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30)).build(),
            )
            .await?;
        }
        Ok(())
    }
}

async fn client() -> Client {
    let address = std::env::var("VA_TEST_TEMPORAL_ADDRESS")
        .expect("VA_TEST_TEMPORAL_ADDRESS: run through scripts/test.sh, which starts Temporal");
    let connection = Connection::connect(
        ConnectionOptions::new(temporalio_client::Url::parse(&address).expect("address"))
            .identity("voice-agent-memory-test".to_owned())
            .build(),
    )
    .await
    .expect("connect to Temporal");
    Client::new(connection, ClientOptions::new("default").build()).expect("client")
}

/// Starts `count` race probes, ends each with its signal, and waits for every result.
async fn run_race_probes(client: &Client, queue: &str, round: &str, count: usize) {
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let handle = client
            .start_workflow(
                RaceProbe::run,
                (),
                WorkflowStartOptions::new(queue.to_owned(), format!("{queue}-{round}-{i}")).build(),
            )
            .await
            .expect("start a race probe");
        handles.push(handle);
    }
    for handle in &handles {
        handle
            .signal(RaceProbe::finish, (), WorkflowSignalOptions::default())
            .await
            .expect("signal a race probe");
    }
    for handle in &handles {
        handle
            .get_result(WorkflowGetResultOptions::default())
            .await
            .expect("a race probe's result");
    }
}

/// Starts `count` activity probes, a few at a time, and waits for every result.
async fn run_activity_probes(client: &Client, queue: &str, round: &str, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
        let mut handles = Vec::with_capacity(chunk.len());
        for i in chunk {
            let handle = client
                .start_workflow(
                    ActivityProbe::run,
                    (),
                    WorkflowStartOptions::new(queue.to_owned(), format!("{queue}-{round}-{i}"))
                        .build(),
                )
                .await
                .expect("start an activity probe");
            handles.push(handle);
        }
        for handle in &handles {
            handle
                .get_result(WorkflowGetResultOptions::default())
                .await
                .expect("an activity probe's result");
        }
    }
}

/// Live bytes a moment after the last result: evictions of finished runs happen just after.
async fn live_after_a_moment() -> i64 {
    tokio::time::sleep(Duration::from_secs(1)).await;
    live()
}

/// Live bytes once they come down to `at_most`, or after a minute: a busy machine evicts
/// finished runs late, a leak never.
async fn settled_live(at_most: i64) -> i64 {
    let start = Instant::now();
    loop {
        let now = live();
        if now <= at_most || start.elapsed() > Duration::from_secs(60) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn with_worker(queue: &str, body: impl AsyncFnOnce(Client)) {
    let client = client().await;
    let runtime = Runtime::from_current_tokio(Default::default()).expect("runtime");
    let options = WorkerOptions::new(queue.to_owned())
        .register_workflow::<RaceProbe>()
        .expect("register")
        .register_workflow::<ActivityProbe>()
        .expect("register")
        .register_activities(Echo)
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options).expect("worker");
    let stop = worker.shutdown_handle();
    // Worker::run is !Send: it runs beside the test body on this task.
    let (result, ()) = tokio::join!(worker.run(), async {
        body(client).await;
        stop();
    });
    result.expect("worker run");
}

/// The only test in this binary, so nothing else allocates while it counts.
#[tokio::test]
async fn finished_workflow_runs_give_their_memory_back() {
    runs_that_dropped_a_timer().await;
    runs_that_ran_activities().await;
}

async fn runs_that_ran_activities() {
    let queue = format!("memory-activities-{}", std::process::id());
    with_worker(&queue, async |client| {
        const RUNS: usize = 400;
        // 64 bytes an activity is slack for buffers that grew; a kept task token and its
        // cancellation token are several times that.
        gives_back(
            "activities",
            RUNS as i64 * i64::from(ACTIVITIES_PER_RUN),
            64,
            run_activity_probes(&client, &queue, "warm", 100),
            run_activity_probes(&client, &queue, "measured", RUNS),
        )
        .await;
    })
    .await;
}

async fn runs_that_dropped_a_timer() {
    let queue = format!("memory-race-{}", std::process::id());
    with_worker(&queue, async |client| {
        const RUNS: usize = 400;
        // A finished run costs nothing once evicted; 1 KiB a run is slack for buffers that
        // grew, a leaked run context is several.
        gives_back(
            "workflow runs",
            RUNS as i64,
            1024,
            run_race_probes(&client, &queue, "warm", 100),
            run_race_probes(&client, &queue, "measured", RUNS),
        )
        .await;
    })
    .await;
}

/// Runs `warm` (connections, caches, the allocator's first pages), then `measured` (`units`
/// units of work), and asserts that at most `slack` live bytes a unit stayed once it ended.
async fn gives_back(
    what: &str,
    units: i64,
    slack: i64,
    warm: impl Future<Output = ()>,
    measured: impl Future<Output = ()>,
) {
    warm.await;
    let before = live_after_a_moment().await;
    measured.await;
    let allowed = before + slack * units;
    let after = settled_live(allowed).await;
    let each = (after - before) / units;
    eprintln!("live heap: {before} bytes before, {after} after {units} {what} ({each} each)");
    assert!(
        after <= allowed,
        "{units} finished {what} kept {} bytes ({each} each)",
        after - before
    );
}
