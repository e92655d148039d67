//! Spawning the stack for one test: simulator, API and worker processes with a fresh MongoDB
//! database and task queue, all stopped when the [`Stack`] is dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use voice_agent_protos::v1::messaging_service_client::MessagingServiceClient;

pub(crate) const ACCOUNT_SID: &str = "ACe2e0e2e0e2e0e2e0e2e0e2e0e2e0e2e0";
pub(crate) const AUTH_TOKEN: &str = "e2e-auth-token";
pub(crate) const FROM: &str = "+15005550006";
/// The admin user every stack's api creates at start (`API_BOOTSTRAP_ADMIN_EMAIL`), for tests
/// that sign in a browser.
pub(crate) const ADMIN_EMAIL: &str = "admin@e2e.example";
/// Its password (`API_BOOTSTRAP_ADMIN_PASSWORD`).
pub(crate) const ADMIN_PASSWORD: &str = "e2e admin password";

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the end-to-end tests through scripts/test.sh, which starts Temporal and MongoDB")
    })
}

fn bin(name: &str) -> PathBuf {
    PathBuf::from(env("VA_BIN_DIR")).join(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the kernel hands out a free loopback port")
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub(crate) async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Captured process output, shared by the drain tasks.
pub(crate) type Logs = std::sync::Arc<std::sync::Mutex<String>>;

/// Most log text kept per stack; the rest is read and dropped, so a long test cannot fill
/// memory and no process ever blocks on a full pipe.
const MAX_CAPTURED_LOG: usize = 16 << 20;

/// Reads `lines` to the end, keeping them in `logs`.
fn drain<R>(mut lines: tokio::io::Lines<BufReader<R>>, logs: Logs)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            keep(&logs, &line);
        }
    });
}

fn keep(logs: &Logs, line: &str) {
    let mut logs = logs.lock().expect("no test panics while holding the log");
    if logs.len() + line.len() < MAX_CAPTURED_LOG {
        logs.push_str(line);
        logs.push('\n');
    }
}

/// One test's processes and handles.
pub(crate) struct Stack {
    pub(crate) temporal_address: String,
    pub(crate) simulator_url: String,
    pub(crate) api_http: String,
    /// Where Twilio sends webhooks (`PUBLIC_BASE_URL`): the api's own URL, or a balancer in
    /// front of several apis ([`Stack::start_behind`]).
    pub(crate) public_url: String,
    pub(crate) api_grpc: String,
    pub(crate) mongo: mongodb::Database,
    pub(crate) http: reqwest::Client,
    /// The api's bootstrap admin key (`API_BOOTSTRAP_ADMIN_KEY`). [`Stack::http`] sends it on
    /// every request and [`Stack::grpc_channel`] on every call, so tests need not.
    pub(crate) api_key: String,
    /// What the simulator, API and worker processes wrote to stdout (their logs), up to
    /// [`MAX_CAPTURED_LOG`].
    pub(crate) logs: Logs,
    simulator: Child,
    api: Child,
    api_env: Vec<(String, String)>,
    worker: Option<Child>,
    worker_env: Vec<(String, String)>,
}

/// A Temporal dev server of a test's own, persisted in a SQLite file so it can be restarted.
pub(crate) struct TemporalServer {
    pub(crate) address: String,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl TemporalServer {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("va-temporal-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let port = free_port();
        let mut server = Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            child: None,
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = env("VA_TEMPORAL_BIN");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "error",
        ])
        .args(["--port", &self.port.to_string()])
        .args(["--http-port", &free_port().to_string()])
        .args(["--metrics-port", &free_port().to_string()])
        .arg("--db-filename")
        .arg(self.dir.join("temporal.db"));
        for attr in ["CampaignId", "CampaignChannel", "CampaignStatus"] {
            cmd.args(["--search-attribute", &format!("{attr}=Keyword")]);
        }
        for cap in ["transfer", "timer", "visibility", "outbound"] {
            cmd.args([
                "--dynamic-config-value",
                &format!("history.{cap}ProcessorMaxPollRPS=1000"),
            ]);
        }
        self.child = Some(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()?,
        );
        let address = format!("127.0.0.1:{}", self.port);
        eventually(
            "the Temporal dev server",
            Duration::from_secs(120),
            || async {
                let ok = Command::new(&bin)
                    .args([
                        "operator",
                        "namespace",
                        "describe",
                        "--namespace",
                        "default",
                        "--address",
                        &address,
                    ])
                    .args([
                        "--disable-config-file",
                        "--disable-config-env",
                        "--command-timeout",
                        "2s",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await?
                    .success();
                Ok(ok.then_some(()))
            },
        )
        .await
    }

    /// Stops the server as an operator would (SIGTERM, wait), then starts it on the same port
    /// and data file.
    pub(crate) async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.spawn().await
    }

    /// Stops the server (SIGTERM, wait; SIGKILL only if it hangs): Temporal is unreachable
    /// until [`Self::start_again`].
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                child.start_kill()?;
                child.wait().await?;
            }
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port and data file.
    pub(crate) async fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn().await
    }
}

impl Drop for TemporalServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Stack {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        Self::start_with(&env("VA_TEST_TEMPORAL_ADDRESS")).await
    }

    /// The stack against a given Temporal server.
    pub(crate) async fn start_with(temporal_address: &str) -> anyhow::Result<Self> {
        Self::start_configured(temporal_address, &[], &[], None).await
    }

    /// The stack with Twilio's webhooks and callbacks addressed to `public_url`, a balancer
    /// in front of this stack's api and those of [`Stack::spawn_api`], and `extra`
    /// environment for the apis and workers.
    pub(crate) async fn start_behind(
        public_url: &str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::start_configured(
            &env("VA_TEST_TEMPORAL_ADDRESS"),
            extra,
            &[],
            Some(public_url),
        )
        .await
    }

    /// The stack with extra environment for the API and the worker (agents file, model).
    pub(crate) async fn start_with_env(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_configured(&env("VA_TEST_TEMPORAL_ADDRESS"), extra, &[], None).await
    }

    /// The stack with extra command-line flags for the simulator.
    pub(crate) async fn start_with_simulator_args(args: &[&str]) -> anyhow::Result<Self> {
        Self::start_configured(&env("VA_TEST_TEMPORAL_ADDRESS"), &[], args, None).await
    }

    async fn start_configured(
        temporal_address: &str,
        extra: &[(&str, &str)],
        simulator_args: &[&str],
        public_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("e2e_{}", &suffix[..12]);
        let task_queue = format!("e2e-{}", &suffix[..12]);
        let http_port = free_port();
        let grpc_port = free_port();
        let api_http = format!("http://127.0.0.1:{http_port}");
        let api_key = test_api_key();
        let public_url = public_url.map_or_else(|| api_http.clone(), str::to_owned);

        let mut simulator = Command::new(bin("voice-agent-simulator"))
            .args([
                "--port",
                "0",
                "--account-sid",
                ACCOUNT_SID,
                "--auth-token",
                AUTH_TOKEN,
            ])
            .args(["--default-sms-url", &format!("{public_url}/twilio/sms")])
            .args(["--callback-delay-ms", "10"])
            .args(simulator_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context(
                "Failed to start the simulator; build it with cargo build --workspace --bins",
            )?;
        let logs = Logs::default();
        let simulator_url =
            read_url(&mut simulator, "voice-agent-simulator listening on ", &logs).await?;

        let common = vec![
            ("TEMPORAL_ADDRESS".to_owned(), temporal_address.to_owned()),
            ("TEMPORAL_NAMESPACE".to_owned(), "default".to_owned()),
            ("TEMPORAL_TASK_QUEUE".to_owned(), task_queue.clone()),
            ("MONGODB_URI".to_owned(), env("VA_TEST_MONGODB_URI")),
            ("MONGODB_DATABASE".to_owned(), database.clone()),
            ("TWILIO_BASE_URL".to_owned(), simulator_url.clone()),
            ("TWILIO_ACCOUNT_SID".to_owned(), ACCOUNT_SID.to_owned()),
            ("TWILIO_AUTH_TOKEN".to_owned(), AUTH_TOKEN.to_owned()),
            ("TWILIO_FROM_NUMBER".to_owned(), FROM.to_owned()),
            ("TWILIO_TIMEOUT_MS".to_owned(), "5000".to_owned()),
            ("PUBLIC_BASE_URL".to_owned(), public_url.clone()),
            ("RUST_LOG".to_owned(), "warn".to_owned()),
            // Twilio's per-number defaults (1 SMS, 1 call a second) would slow every test down;
            // the per-sender limit has its own tests, which set it.
            ("SENDER_LIMIT_SMS_PER_SECOND".to_owned(), "0".to_owned()),
            (
                "SENDER_LIMIT_WHATSAPP_PER_SECOND".to_owned(),
                "0".to_owned(),
            ),
            ("SENDER_LIMIT_CALLS_PER_SECOND".to_owned(), "0".to_owned()),
        ];
        let common: Vec<(String, String)> = common
            .into_iter()
            .chain(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect();
        let api_env: Vec<(String, String)> = common
            .iter()
            .cloned()
            .chain([
                ("API_HTTP_ADDR".to_owned(), format!("127.0.0.1:{http_port}")),
                ("API_GRPC_ADDR".to_owned(), format!("127.0.0.1:{grpc_port}")),
                ("API_BOOTSTRAP_ADMIN_KEY".to_owned(), api_key.clone()),
                (
                    "API_BOOTSTRAP_ADMIN_EMAIL".to_owned(),
                    ADMIN_EMAIL.to_owned(),
                ),
                (
                    "API_BOOTSTRAP_ADMIN_PASSWORD".to_owned(),
                    ADMIN_PASSWORD.to_owned(),
                ),
            ])
            .collect();
        let mut api = Command::new(bin("voice-agent-api"))
            .envs(api_env.iter().cloned())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("Failed to start the API")?;
        read_url(&mut api, "voice-agent-api http on ", &logs).await?;

        let client = mongodb::Client::with_uri_str(env("VA_TEST_MONGODB_URI")).await?;
        let mut stack = Self {
            temporal_address: temporal_address.to_owned(),
            simulator_url,
            api_http,
            public_url,
            api_grpc: format!("http://127.0.0.1:{grpc_port}"),
            mongo: client.database(&database),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(bearer_headers(&api_key)?)
                .build()?,
            api_key,
            simulator,
            api,
            api_env,
            logs,
            worker: None,
            worker_env: common,
        };
        stack.start_worker()?;
        Ok(stack)
    }

    pub(crate) fn start_worker(&mut self) -> anyhow::Result<()> {
        let mut worker = Command::new(bin("voice-agent-worker"))
            .envs(self.worker_env.iter().cloned())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("Failed to start the worker")?;
        let stdout = worker.stdout.take().context("stdout is piped")?;
        drain(BufReader::new(stdout).lines(), self.logs.clone());
        self.worker = Some(worker);
        Ok(())
    }

    /// Another worker process with the stack's environment plus `extra`; it is killed when the
    /// returned child is dropped.
    pub(crate) fn spawn_worker_with(&self, extra: &[(&str, &str)]) -> anyhow::Result<Child> {
        Command::new(bin("voice-agent-worker"))
            .envs(self.worker_env.iter().cloned())
            .envs(extra.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .context("Failed to start the worker")
    }

    /// Whether a worker polls `task_queue` for activities, as the Temporal server sees it.
    pub(crate) async fn activity_pollers_on(&self, task_queue: &str) -> anyhow::Result<bool> {
        let out = Command::new(env("VA_TEMPORAL_BIN"))
            .args(["task-queue", "describe", "--task-queue", task_queue])
            .args(["--task-queue-type", "activity", "-o", "json"])
            .args([
                "--address",
                self.temporal_address.trim_start_matches("http://"),
            ])
            .args(["--disable-config-file", "--disable-config-env"])
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "temporal task-queue describe failed");
        let described: Value = serde_json::from_slice(&out.stdout)?;
        Ok(described["pollers"]
            .as_array()
            .is_some_and(|p| !p.is_empty()))
    }

    /// The stack's main task queue.
    pub(crate) fn task_queue(&self) -> &str {
        self.worker_env
            .iter()
            .find(|(k, _)| k == "TEMPORAL_TASK_QUEUE")
            .map(|(_, v)| v.as_str())
            .expect("the stack sets TEMPORAL_TASK_QUEUE")
    }

    /// The API process's memory figure `field` of `/proc/<pid>/status` (`VmHWM`: peak resident
    /// set; `VmRSS`: now), in KiB.
    pub(crate) fn api_memory_kib(&self, field: &str) -> anyhow::Result<u64> {
        let pid = self.api.id().context("the API has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("Failed to read the API's /proc status")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/{pid}/status"))
    }

    /// SIGKILL of the API, as a crash: Twilio's webhooks fail until it is back.
    pub(crate) async fn kill_api(&mut self) -> anyhow::Result<()> {
        self.api.start_kill()?;
        self.api.wait().await?;
        Ok(())
    }

    /// Starts the API again on the same ports.
    pub(crate) async fn start_api(&mut self) -> anyhow::Result<()> {
        let mut api = Command::new(bin("voice-agent-api"))
            .envs(self.api_env.iter().cloned())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("Failed to start the API")?;
        read_url(&mut api, "voice-agent-api http on ", &self.logs).await?;
        self.api = api;
        Ok(())
    }

    /// Waits until the inbound message `sid` has been handed to its conversation by the api's
    /// inbox (the webhook answers once it is stored, before that).
    pub(crate) async fn handed_over(&self, sid: &str) -> anyhow::Result<()> {
        eventually(
            "the message to reach its conversation",
            Duration::from_secs(120),
            || async {
                let handed = self
                    .mongo
                    .collection::<mongodb::bson::Document>("messages")
                    .count_documents(
                        mongodb::bson::doc! { "_id": sid, "handed_over_at": { "$exists": true } },
                    )
                    .await?;
                Ok((handed == 1).then_some(()))
            },
        )
        .await
    }

    /// Starts one more api process on the same MongoDB database, Temporal and task queue, as a
    /// second replica behind a load balancer would run. Its `PUBLIC_BASE_URL` is the stack's
    /// balancer when it has one ([`Stack::start_behind`]), else its own address, so webhooks
    /// signed for that address pass. Returns the process and its URL.
    pub(crate) async fn spawn_api(&self) -> anyhow::Result<(Child, String)> {
        let http_port = free_port();
        let url = format!("http://127.0.0.1:{http_port}");
        let env = self
            .api_env
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "API_HTTP_ADDR" | "API_GRPC_ADDR" | "PUBLIC_BASE_URL"
                )
            })
            .cloned()
            .chain([
                ("API_HTTP_ADDR".to_owned(), format!("127.0.0.1:{http_port}")),
                (
                    "API_GRPC_ADDR".to_owned(),
                    format!("127.0.0.1:{}", free_port()),
                ),
                (
                    "PUBLIC_BASE_URL".to_owned(),
                    if self.public_url == self.api_http {
                        url.clone()
                    } else {
                        self.public_url.clone()
                    },
                ),
            ]);
        let mut api = Command::new(bin("voice-agent-api"))
            .envs(env)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("Failed to start another API")?;
        read_url(&mut api, "voice-agent-api http on ", &self.logs).await?;
        Ok((api, url))
    }

    /// SIGKILL, as a crash: no graceful shutdown, nothing flushed.
    pub(crate) async fn kill_worker(&mut self) -> anyhow::Result<()> {
        if let Some(mut w) = self.worker.take() {
            w.start_kill()?;
            w.wait().await?;
        }
        Ok(())
    }

    /// SIGSTOP of the worker, as a process that hangs (a long pause, a host cut off): it
    /// holds whatever it was doing and wakes later. The stack forgets it; the returned
    /// [`Frozen`] continues it with SIGCONT, and kills it when dropped.
    pub(crate) fn freeze_worker(&mut self) -> anyhow::Result<Frozen> {
        let worker = self.worker.take().context("no worker running")?;
        let pid = worker.id().context("worker already exited")?;
        signal(pid, "-STOP")?;
        Ok(Frozen { worker, pid })
    }

    pub(crate) async fn grpc(&self) -> anyhow::Result<MessagingServiceClient<AuthedChannel>> {
        Ok(MessagingServiceClient::new(self.grpc_channel().await?))
    }

    /// A channel to the api's gRPC port whose calls carry the admin key: wrap it in any
    /// client (`CallServiceClient::new(stack.grpc_channel().await?)`).
    pub(crate) async fn grpc_channel(&self) -> anyhow::Result<AuthedChannel> {
        authed_channel(&self.api_grpc, Some(&self.api_key)).await
    }

    pub(crate) async fn temporal(&self) -> anyhow::Result<temporalio_client::Client> {
        let conn = temporalio_client::Connection::connect(
            temporalio_client::ConnectionOptions::new(temporalio_client::Url::parse(
                &self.temporal_address,
            )?)
            .identity("e2e".to_owned())
            .build(),
        )
        .await?;
        Ok(temporalio_client::Client::new(
            conn,
            temporalio_client::ClientOptions::new("default").build(),
        )?)
    }

    /// With `VA_SAVE_HISTORIES=<dir>`, writes the workflow's history as `<dir>/<name>.json`:
    /// how the replay fixtures in `workflows/tests/histories/` are made.
    pub(crate) async fn save_history<W>(&self, workflow_id: &str, name: &str) -> anyhow::Result<()>
    where
        W: temporalio_common::HasWorkflowDefinition,
    {
        let Ok(dir) = std::env::var("VA_SAVE_HISTORIES") else {
            return Ok(());
        };
        let json = self
            .temporal()
            .await?
            .get_workflow_handle::<W>(workflow_id.to_owned())
            .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(PathBuf::from(dir).join(format!("{name}.json")), json)?;
        Ok(())
    }

    /// Like [`Self::save_history`], for the run before the workflow's current one (the run
    /// that continued as new into it).
    pub(crate) async fn save_previous_run_history<W>(
        &self,
        workflow_id: &str,
        name: &str,
    ) -> anyhow::Result<()>
    where
        W: temporalio_common::HasWorkflowDefinition,
    {
        let Ok(dir) = std::env::var("VA_SAVE_HISTORIES") else {
            return Ok(());
        };
        let client = self.temporal().await?;
        let current = client
            .get_workflow_handle::<W>(workflow_id.to_owned())
            .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        let started: Value = serde_json::from_slice(&current)?;
        let previous = started["events"][0]["attributes"]
            ["WorkflowExecutionStartedEventAttributes"]["continued_execution_run_id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .context("the current run did not continue an earlier one")?
            .to_owned();
        let handle = temporalio_client::WorkflowHandle::<_, W>::new(
            client,
            temporalio_client::WorkflowExecutionInfo::builder()
                .namespace("default")
                .workflow_id(workflow_id)
                .run_id(previous)
                .build(),
        );
        let json = handle
            .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(PathBuf::from(dir).join(format!("{name}.json")), json)?;
        Ok(())
    }

    pub(crate) async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.simulator_url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("simulator admin {path}: {status} {text}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// How many messages the simulator accepted for each number.
    pub(crate) async fn ledger_by_to(
        &self,
    ) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
        let counts = self
            .admin(reqwest::Method::GET, "/admin/ledger/counts", None)
            .await?;
        Ok(serde_json::from_value(counts["by_to"].clone())?)
    }

    /// Messages the simulator accepted for `to`.
    pub(crate) async fn ledger(&self, to: &str) -> anyhow::Result<Vec<Value>> {
        let v = self
            .admin(
                reqwest::Method::GET,
                &format!("/admin/ledger?to={}", to.replace('+', "%2B")),
                None,
            )
            .await?;
        Ok(v["messages"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // kill_on_drop stops the processes; this makes it explicit and immediate.
        let _ = self.api.start_kill();
        let _ = self.simulator.start_kill();
        if let Some(w) = self.worker.as_mut() {
            let _ = w.start_kill();
        }
    }
}

/// Reads the child's stdout until the line announcing its URL, then keeps draining it in the
/// background so the child never blocks on a full pipe.
/// A worker stopped by [`Stack::freeze_worker`].
pub(crate) struct Frozen {
    #[allow(dead_code)]
    worker: Child,
    pid: u32,
}

impl Frozen {
    /// SIGCONT: it carries on from where it stopped.
    pub(crate) fn thaw(&self) -> anyhow::Result<()> {
        signal(self.pid, "-CONT")
    }
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill {sig} {pid} failed");
    Ok(())
}

async fn read_url(child: &mut Child, prefix: &str, logs: &Logs) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            keep(logs, &line);
            if let Some(rest) = line.strip_prefix(prefix) {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                return Ok::<_, anyhow::Error>(Some(url));
            }
        }
        Ok(None)
    })
    .await
    .context("process did not announce its address within 60 s")??;
    drain(lines, logs.clone());
    match found {
        Some(url) => Ok(url),
        None => bail!("process exited before announcing its address (prefix {prefix:?})"),
    }
}

/// A random admin key in the api's `vak_<12 hex>_<secret>` shape, for `API_BOOTSTRAP_ADMIN_KEY`.
pub(crate) fn test_api_key() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("vak_{}_{b}{}", &a[..12], &a[12..])
}

/// `Authorization: Bearer <key>`, as default headers for a client.
pub(crate) fn bearer_headers(key: &str) -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))?,
    );
    Ok(headers)
}

/// Adds `authorization: Bearer <key>` metadata to every gRPC call (none when `key` is `None`).
#[derive(Clone)]
pub(crate) struct BearerInterceptor(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A gRPC channel whose calls carry a bearer key.
pub(crate) type AuthedChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerInterceptor>;

/// Connects to `url`, sending `key` (if any) on every call.
pub(crate) async fn authed_channel(url: &str, key: Option<&str>) -> anyhow::Result<AuthedChannel> {
    let value = key.map(|k| format!("Bearer {k}").parse()).transpose()?;
    let channel = tonic::transport::Channel::from_shared(url.to_owned())?
        .connect()
        .await?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel,
        BearerInterceptor(value),
    ))
}
