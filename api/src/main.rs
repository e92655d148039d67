//! `voice-agent-api`: see the library docs.

use voice_agent_api::{ApiSettings, Application};
use voice_agent_config::{Env, install_crypto_provider, shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("info");
    install_crypto_provider();
    let settings = ApiSettings::from_env(&Env::process())?;
    let app = Application::build(settings).await?;
    println!(
        "voice-agent-api http on http://{} grpc on http://{}",
        app.http_addr(),
        app.grpc_addr()
    );
    app.run_until_stopped(shutdown::on_signal()).await
}
