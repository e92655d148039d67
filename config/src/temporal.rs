//! The Temporal client, configured the SDK's standard way.

use anyhow::Context;
use temporalio_client::{
    Client, ClientOptions, Connection, envconfig::LoadClientConfigProfileOptions,
};

/// Connects to Temporal with the SDK's standard environment configuration
/// (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, TLS, `temporal.toml`).
pub async fn connect_temporal(identity: &str) -> anyhow::Result<Client> {
    let (conn_opts, client_opts) = ClientOptions::load_from_config(
        LoadClientConfigProfileOptions::default(),
    )
    .map_err(|e| anyhow::anyhow!("Failed to read the Temporal client configuration: {e:?}"))?;
    let mut conn_opts = conn_opts;
    conn_opts.identity = format!("{identity}@{}", std::process::id());
    let target = conn_opts.target.to_string();
    let connection = Connection::connect(conn_opts)
        .await
        .with_context(|| format!("Failed to connect to Temporal at {target}"))?;
    Client::new(connection, client_opts).context("Failed to create the Temporal client")
}
