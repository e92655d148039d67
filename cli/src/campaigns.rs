//! `vactl campaigns …`: campaigns over `voiceagent.v1.CampaignService`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use voice_agent_protos::v1::campaign_service_client::CampaignServiceClient;
use voice_agent_protos::v1::{
    Campaign, CampaignProgress, CampaignRef, CreateCampaignRequest, ListCampaignsRequest,
    SetCampaignRateRequest,
};

use crate::{print, status_error};

/// `vactl campaigns …`
// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(crate) enum CampaignsCommand {
    /// Create a campaign (in draft; nothing is sent until `start`).
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Contact list (`cl_…`).
        #[arg(long)]
        list: String,
        /// Text with {{variable}} placeholders (name, first_name, any column of the list); for
        /// voice, the voicemail left on answering machines (empty: hang up on machines).
        #[arg(long, default_value = "")]
        template: String,
        /// `sms`, `whatsapp` or `voice`.
        #[arg(long, default_value = "sms")]
        channel: String,
        /// Sender number (default: the API's TWILIO_FROM_NUMBER).
        #[arg(long, default_value = "")]
        from: String,
        /// Messages per second; 0 = as fast as Twilio allows.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Sending window opening in the recipient's local time, HH:MM.
        #[arg(long, default_value = "")]
        window_start: String,
        /// Sending window closing, HH:MM.
        #[arg(long, default_value = "")]
        window_end: String,
        /// WhatsApp content template (HX…) for recipients outside the 24-hour window.
        #[arg(long, default_value = "")]
        content_sid: String,
        /// A template variable as NUMBER=TEXT (repeatable), e.g. 1={{name}}.
        #[arg(long = "content-variable")]
        content_variables: Vec<String>,
        /// Voice: dial attempts per contact for busy / no-answer / failed (0 = 3).
        #[arg(long, default_value_t = 0)]
        attempts: i32,
        /// Voice: seconds between attempts (0 = 3600).
        #[arg(long, default_value_t = 0)]
        retry_after: i64,
        /// Voice: most calls in flight (0 = 5).
        #[arg(long, default_value_t = 0)]
        max_in_flight: i32,
        /// Voice: agent profile on the calls (default: our number's).
        #[arg(long, default_value = "")]
        agent_profile: String,
    },
    /// List campaigns, newest first.
    List,
    /// Show one campaign.
    Get {
        /// `cmp_…`
        id: String,
    },
    /// Start sending.
    Start {
        /// `cmp_…`
        id: String,
    },
    /// Pause after the batch in flight.
    Pause {
        /// `cmp_…`
        id: String,
    },
    /// Resume a paused campaign.
    Resume {
        /// `cmp_…`
        id: String,
    },
    /// Cancel: contacts not yet sent end `cancelled`.
    Cancel {
        /// `cmp_…`
        id: String,
    },
    /// Change the rate (messages per second; 0 = unlimited).
    Rate {
        /// `cmp_…`
        id: String,
        /// The new rate.
        rate: f64,
    },
    /// Show progress: counts by status, measured rate, expected finish.
    Progress {
        /// `cmp_…`
        id: String,
        /// Keep printing every few seconds until the campaign ends.
        #[arg(long)]
        watch: bool,
    },
}

/// Runs one `vactl campaigns …` command.
pub(crate) async fn campaigns(api: &str, command: CampaignsCommand) -> anyhow::Result<()> {
    let mut client = CampaignServiceClient::new(crate::auth::channel(api).await?);
    let by_id = |id: String| CampaignRef { campaign_id: id };
    let campaign = match command {
        CampaignsCommand::Create {
            name,
            list,
            template,
            channel,
            from,
            rate,
            window_start,
            window_end,
            content_sid,
            content_variables,
            attempts,
            retry_after,
            max_in_flight,
            agent_profile,
        } => {
            let mut vars = std::collections::HashMap::new();
            for pair in content_variables {
                let (k, v) = pair.split_once('=').with_context(|| {
                    format!("--content-variable {pair:?}: expected NUMBER=TEXT")
                })?;
                vars.insert(k.to_owned(), v.to_owned());
            }
            client
                .create_campaign(CreateCampaignRequest {
                    name,
                    channel,
                    from,
                    template,
                    list_id: list,
                    rate_per_second: rate,
                    window_start,
                    window_end,
                    content_sid,
                    content_variables: vars,
                    max_attempts: attempts,
                    retry_after_secs: retry_after,
                    max_in_flight,
                    agent_profile,
                    ..Default::default()
                })
                .await
        }
        CampaignsCommand::List => {
            let list = client
                .list_campaigns(ListCampaignsRequest { page_size: 100 })
                .await
                .map_err(status_error)?
                .into_inner();
            print(&json!(
                list.campaigns.iter().map(campaign_json).collect::<Vec<_>>()
            ));
            return Ok(());
        }
        CampaignsCommand::Get { id } => client.get_campaign(by_id(id)).await,
        CampaignsCommand::Start { id } => client.start_campaign(by_id(id)).await,
        CampaignsCommand::Pause { id } => client.pause_campaign(by_id(id)).await,
        CampaignsCommand::Resume { id } => client.resume_campaign(by_id(id)).await,
        CampaignsCommand::Cancel { id } => client.cancel_campaign(by_id(id)).await,
        CampaignsCommand::Rate { id, rate } => {
            client
                .set_campaign_rate(SetCampaignRateRequest {
                    campaign_id: id,
                    rate_per_second: rate,
                })
                .await
        }
        CampaignsCommand::Progress { id, watch } => loop {
            let p = client
                .get_campaign_progress(by_id(id.clone()))
                .await
                .map_err(status_error)?
                .into_inner();
            print(&progress_json(&p));
            if !watch || matches!(p.status.as_str(), "completed" | "cancelled") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        },
    };
    print(&campaign_json(
        &campaign.map_err(status_error)?.into_inner(),
    ));
    Ok(())
}

fn campaign_json(c: &Campaign) -> serde_json::Value {
    json!({
        "id": c.id,
        "name": c.name,
        "channel": c.channel,
        "status": c.status,
        "list_id": c.list_id,
        "from": c.from,
        "template": c.template,
        "rate_per_second": c.rate_per_second,
        "window_start": c.window_start,
        "window_end": c.window_end,
        "total_items": c.total_items,
        "workflow_id": c.workflow_id,
        "created_at": c.created_at.as_ref().map(ToString::to_string),
    })
}

fn progress_json(p: &CampaignProgress) -> serde_json::Value {
    let counts: BTreeMap<&String, &i64> = p.counts.iter().collect();
    json!({
        "campaign_id": p.campaign_id,
        "status": p.status,
        "total": p.total,
        "counts": counts,
        "rate_per_second": (p.rate_per_second * 10.0).round() / 10.0,
        "rate_limit": p.rate_limit,
        "expected_finish": p.expected_finish.as_ref().map(ToString::to_string),
        "paused": p.paused,
        "pass": p.pass,
    })
}
