//! `vactl`: the command-line client of the Voice Agent gRPC API.
//!
//! ```text
//! vactl send-sms --to +14155550100 --body "hello" --wait
//! vactl get-message msg_0123…
//! vactl list-messages --phone +14155550100
//! vactl lists create "Spring leads"
//! vactl contacts upload --list cl_0123… leads.xlsx --rejected-csv rejected.csv
//! vactl contacts list --list cl_0123… --search 415
//! vactl campaigns create --name Spring --list cl_0123… --template "Hi {{name}}" --rate 10
//! vactl campaigns start cmp_0123…
//! vactl campaigns progress cmp_0123… --watch
//! vactl calls place --to +14155550100 --voicemail "Please call us back" --wait
//! vactl calls get call-0123…
//! vactl keys create --name ci --role manager --expires-in-days 90
//! vactl users create --email ana@example.com --role viewer --password '…'
//! vactl audit --limit 20
//! ```
//!
//! Every command needs an API key: `--api-key` or `VOICE_AGENT_API_KEY`.

mod auth;
mod calls;
mod campaigns;
mod contacts;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::json;
use voice_agent_protos::v1::messaging_service_client::MessagingServiceClient;
use voice_agent_protos::v1::{GetMessageRequest, ListMessagesRequest, Message, SendSmsRequest};

/// Command-line client of the Voice Agent gRPC API. Prints JSON.
#[derive(Parser)]
#[command(name = "vactl", version)]
struct Cli {
    /// gRPC address of the API.
    #[arg(
        long,
        env = "VACTL_API",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    api: String,
    /// HTTP address of the API, for `users`, `keys` and `audit`.
    #[arg(
        long,
        env = "VACTL_HTTP",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    http: String,
    /// API key (`vak_…`) sent as `authorization: Bearer`.
    #[arg(
        long,
        env = "VOICE_AGENT_API_KEY",
        hide_env_values = true,
        global = true
    )]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Contact lists: create, list, get, rename, delete.
    Lists {
        #[command(subcommand)]
        command: contacts::ListsCommand,
    },
    /// Contacts of a list: upload a file, list and search.
    Contacts {
        #[command(subcommand)]
        command: contacts::ContactsCommand,
    },
    /// Campaigns: create, start, pause, resume, cancel, rate, progress.
    Campaigns {
        #[command(subcommand)]
        command: campaigns::CampaignsCommand,
    },
    /// Phone calls with the agent: place one, show one.
    Calls {
        #[command(subcommand)]
        command: calls::CallsCommand,
    },
    /// Users who sign in to the web app (admin).
    Users {
        #[command(subcommand)]
        command: auth::UsersCommand,
    },
    /// API keys for programs (admin).
    Keys {
        #[command(subcommand)]
        command: auth::KeysCommand,
    },
    /// The audit log of state-changing requests, newest first (admin).
    Audit {
        /// Page size (1 to 200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Send one SMS through a durable workflow.
    SendSms {
        /// Recipient, E.164 or national format.
        #[arg(long)]
        to: String,
        /// Text.
        #[arg(long)]
        body: String,
        /// Sender number (default: the API's TWILIO_FROM_NUMBER).
        #[arg(long, default_value = "")]
        from: String,
        /// Messaging Service SID instead of a sender number.
        #[arg(long, default_value = "")]
        messaging_service_sid: String,
        /// Key that makes a repeated command return the first message instead of sending again.
        #[arg(long, default_value = "")]
        idempotency_key: String,
        /// Wait until the message reaches a final status, and print it.
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Show one message.
    GetMessage {
        /// `msg_…` id or Twilio MessageSid.
        id: String,
    },
    /// List messages, newest first.
    ListMessages {
        /// Only messages from or to this number.
        #[arg(long, default_value = "")]
        phone: String,
        /// Page size (1 to 500).
        #[arg(long, default_value_t = 20)]
        limit: i32,
        /// Token printed by the previous page.
        #[arg(long, default_value = "")]
        page_token: String,
    },
}

#[tokio::main]
async fn main() {
    // reqwest is built without a default TLS provider (rustls-no-provider); the gRPC client
    // needs none for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("vactl: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    auth::set_key(cli.api_key);
    let command = match cli.command {
        Command::Users { command } => return auth::users(&cli.http, command).await,
        Command::Keys { command } => return auth::keys(&cli.http, command).await,
        Command::Audit { limit, cursor } => return auth::audit(&cli.http, limit, cursor).await,
        Command::Lists { command } => return contacts::lists(&cli.api, command).await,
        Command::Contacts { command } => return contacts::contacts(&cli.api, command).await,
        Command::Campaigns { command } => return campaigns::campaigns(&cli.api, command).await,
        Command::Calls { command } => return calls::calls(&cli.api, command).await,
        other => other,
    };
    let mut client = MessagingServiceClient::new(auth::channel(&cli.api).await?);
    match command {
        Command::SendSms {
            to,
            body,
            from,
            messaging_service_sid,
            idempotency_key,
            wait,
            timeout,
        } => {
            let sent = client
                .send_sms(SendSmsRequest {
                    to,
                    body,
                    from,
                    messaging_service_sid,
                    idempotency_key,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&json!({
                "message_id": sent.message_id,
                "workflow_id": sent.workflow_id,
                "created": sent.created,
            }));
            if wait {
                let message =
                    wait_final(&mut client, &sent.message_id, Duration::from_secs(timeout)).await?;
                print(&message_json(&message));
            }
        }
        Command::GetMessage { id } => {
            let message = client
                .get_message(GetMessageRequest { message_id: id })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&message_json(&message));
        }
        Command::ListMessages {
            phone,
            limit,
            page_token,
        } => {
            let page = client
                .list_messages(ListMessagesRequest {
                    phone,
                    page_size: limit,
                    page_token,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&json!({
                "messages": page.messages.iter().map(message_json).collect::<Vec<_>>(),
                "next_page_token": page.next_page_token,
            }));
        }
        Command::Lists { .. }
        | Command::Contacts { .. }
        | Command::Campaigns { .. }
        | Command::Calls { .. }
        | Command::Users { .. }
        | Command::Keys { .. }
        | Command::Audit { .. } => {
            unreachable!("contact commands return before the messaging client connects")
        }
    }
    Ok(())
}

const FINAL: [&str; 6] = [
    "delivered",
    "read",
    "undelivered",
    "failed",
    "canceled",
    "received",
];

async fn wait_final(
    client: &mut MessagingServiceClient<auth::Authed>,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<Message> {
    let start = Instant::now();
    loop {
        let found = client
            .get_message(GetMessageRequest {
                message_id: id.to_owned(),
            })
            .await;
        match found {
            Ok(m) if FINAL.contains(&m.get_ref().status.as_str()) => return Ok(m.into_inner()),
            // The workflow records the message a moment after it starts.
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(status_error(s)),
        }
        if start.elapsed() > timeout {
            anyhow::bail!("message {id} did not reach a final status within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn message_json(m: &Message) -> serde_json::Value {
    let ts = |t: &Option<prost_types::Timestamp>| t.as_ref().map(ToString::to_string);
    json!({
        "id": m.id,
        "direction": m.direction,
        "channel": m.channel,
        "from": m.from,
        "to": m.to,
        "body": m.body,
        "status": m.status,
        "twilio_sid": m.twilio_sid,
        "error_code": m.error_code,
        "error_message": m.error_message,
        "conversation_id": m.conversation_id,
        "created_at": ts(&m.created_at),
        "updated_at": ts(&m.updated_at),
    })
}

fn print(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
