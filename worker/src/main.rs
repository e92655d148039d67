//! `voice-agent-worker`: see the library docs.

use voice_agent_config::{Env, Settings, install_crypto_provider, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("info");
    install_crypto_provider();
    let settings = Settings::from_env(&Env::process())?;
    let token = shutdown::on_signal();
    voice_agent_worker::run(settings, token).await
}
