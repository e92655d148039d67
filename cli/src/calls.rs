//! `vactl calls …`: phone calls over `voiceagent.v1.CallService`.

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::{Value, json};
use voice_agent_protos::v1::call_service_client::CallServiceClient;
use voice_agent_protos::v1::{Call, GetCallRequest, PlaceCallRequest, TranscriptTurn};

use crate::{print, status_error};

/// `vactl calls …`
#[derive(Subcommand)]
pub(crate) enum CallsCommand {
    /// Call someone with the agent.
    Place {
        /// Callee, E.164 or national format.
        #[arg(long)]
        to: String,
        /// Caller number (default: the API's TWILIO_FROM_NUMBER).
        #[arg(long, default_value = "")]
        from: String,
        /// Said to an answering machine (default: hang up on machines).
        #[arg(long, default_value = "")]
        voicemail: String,
        /// Agent profile (default: our number's).
        #[arg(long, default_value = "")]
        agent_profile: String,
        /// Dial attempts for busy / no-answer / failed.
        #[arg(long, default_value_t = 1)]
        attempts: i32,
        /// Seconds between attempts.
        #[arg(long, default_value_t = 600)]
        retry_after: i64,
        /// Record the call.
        #[arg(long)]
        record: bool,
        /// Wait until the call is over, and print it.
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Show a call: live state while it runs, then one log per attempt with the transcript.
    Get {
        /// `call-…`
        id: String,
    },
}

/// Runs one `vactl calls …` command.
pub(crate) async fn calls(api: &str, command: CallsCommand) -> anyhow::Result<()> {
    let mut client = CallServiceClient::new(crate::auth::channel(api).await?);
    match command {
        CallsCommand::Place {
            to,
            from,
            voicemail,
            agent_profile,
            attempts,
            retry_after,
            record,
            wait,
            timeout,
        } => {
            let placed = client
                .place_call(PlaceCallRequest {
                    to,
                    from,
                    agent_profile,
                    voicemail,
                    max_attempts: attempts,
                    retry_after_secs: retry_after,
                    record,
                    ..Default::default()
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&json!({ "call_id": placed.call_id }));
            if wait {
                let deadline = Instant::now() + Duration::from_secs(timeout);
                loop {
                    let call = get(&mut client, &placed.call_id).await?;
                    if !call.running {
                        print(&call_json(&call));
                        break;
                    }
                    if Instant::now() > deadline {
                        anyhow::bail!("the call is still going after {timeout} s");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        CallsCommand::Get { id } => print(&call_json(&get(&mut client, &id).await?)),
    }
    Ok(())
}

async fn get(
    client: &mut CallServiceClient<crate::auth::Authed>,
    id: &str,
) -> anyhow::Result<Call> {
    Ok(client
        .get_call(GetCallRequest {
            call_id: id.to_owned(),
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

fn turns_json(turns: &[TranscriptTurn]) -> Vec<Value> {
    turns
        .iter()
        .map(|t| json!({ "speaker": t.speaker, "text": t.text, "at": t.at }))
        .collect()
}

fn call_json(c: &Call) -> Value {
    json!({
        "call_id": c.call_id,
        "running": c.running,
        "live_status": c.live_status,
        "live_transcript": turns_json(&c.live_transcript),
        "attempts": c.attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "call_sid": a.call_sid,
            "status": a.status,
            "outcome": a.outcome,
            "answered_by": a.answered_by,
            "duration_secs": a.duration_secs,
            "disposition": a.disposition,
            "summary": a.summary,
            "transcript": turns_json(&a.transcript),
        })).collect::<Vec<_>>(),
    })
}
