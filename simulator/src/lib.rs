//! A local Twilio simulator, so campaigns and agents can be exercised end to end before any
//! real message is paid for.
//!
//! It speaks Twilio's wire protocol only: the 2010-04-01 REST Messages and Calls resources
//! (HTTP Basic auth, Twilio's JSON shapes, error codes and paging) for SMS, WhatsApp and voice,
//! signed status callbacks, signed inbound SMS / WhatsApp / voice webhooks and a voice TwiML
//! interpreter talking to scripted callees. Test hooks live under `/admin/…`.
//!
//! # Behaviour
//!
//! - The simulated account owns every number: any `From` is accepted except Twilio's magic
//!   test numbers, which fail with their documented codes (`+15005550001` → 21212,
//!   `+15005550007` → 21606, `+15005550008` → 21611; `To` `+15005550001` → 21211,
//!   `+15005550002` → 21612, `+15005550003` → 21408, `+15005550004` → 21610,
//!   `+15005550009` → 21614).
//! - Created messages start `queued` (`accepted` with a Messaging Service), then move to
//!   `sent` and `delivered` (WhatsApp: then `read`), or a scripted outcome, one step per
//!   `--callback-delay-ms`. Each change after the first is posted to `StatusCallback`, signed
//!   with the auth token, at most `--callback-concurrency` at a time; connection failures are
//!   retried with backoff.
//! - WhatsApp (`whatsapp:+E164` on both sides, else 21910): a free-form message outside the
//!   24-hour window since the user's last inbound message is accepted (201) and then `failed`
//!   with 63016; `ContentSid` templates (21655 / 21656 on bad input) go out regardless and are
//!   rendered if registered. Windows follow a simulated clock that tests can move.
//! - An inbound SMS `STOP` (and Twilio's other opt-out keywords) makes SMS from that sender to
//!   that user fail with 400 / 21610 until `START`, unless `--twilio-opt-out false`.
//! - A path `AccountSid` other than the configured one answers 404 / 20404, the way Twilio
//!   hides resources of other accounts.
//! - Faults (latency, random 429 / 20429 and 500 / 20500, per-sender rate limit) apply to
//!   authenticated REST requests and can be changed at run time.
//! - **Calls.** `POST …/Calls.json` (`To`, `From`, `Url` + `Method` or `Twiml`,
//!   `StatusCallback[Method|Event]`, `MachineDetection`, `Timeout`, `Record`, `TimeLimit`)
//!   answers 201 `queued` / `outbound-api`. Errors: 21201 no To, 21213 no From, 21205 no or bad
//!   `Url`, 21211 / 21212 invalid To / From, 21232 `Twiml` over 4000 chars, 21609 bad
//!   `StatusCallback`, 20001 bad enum or number; To `+15005550001` → 21217, `…2` → 21214,
//!   `…3` → 21215, `…4` → 21216. `GET …/Calls/{Sid}.json`, `GET …/Calls.json` (`To`, `From`,
//!   `Status`, `StartTime`, `StartTime>`, `StartTime<`, paging as Messages), and
//!   `POST …/Calls/{Sid}.json` with `Status=completed` (hangs up a live call, cancels a
//!   queued or ringing one), `Status=canceled` (queued / ringing only) or `Url` / `Twiml`
//!   (redirects a live call; otherwise 21220).
//! - Outbound calls are dialled in creation order at `--calls-per-second` per account (Twilio's
//!   CPS; over it calls wait `queued`, never rejected), then go `initiated` → `ringing` →
//!   `in-progress` → `completed`, or `busy` / `no-answer` (also when the callee's answer delay
//!   exceeds `Timeout`) / `failed` / `canceled`. Status callbacks are signed, sent in that order
//!   for the subscribed events (none = `completed` only) with `CallbackSource`,
//!   `SequenceNumber` (from 0), `Timestamp`, and `CallDuration` / `Duration` (+
//!   `SipResponseCode` when not connected, recording fields with `Record=true`) on the last.
//! - On answer the TwiML is fetched (signed; POST or GET) with `CallStatus=in-progress`
//!   (`ringing` for inbound calls) and `AnsweredBy` when AMD was asked (`human`;
//!   `machine_start` with `Enable`; `machine_end_beep` or the callee's `answered_by` with
//!   `DetectMessageEnd`, after a greeting). Verbs: `Say`, `Play`, `Pause`, `Gather` (input,
//!   action, method, timeout, numDigits, actionOnEmptyResult; no input falls through; no
//!   action posts to the current document), `Redirect`, `Dial` (`Number` / `Client` / `Sip`
//!   or text; the party talks 5 s; `action` gets `DialCallStatus`, `DialCallDuration`;
//!   an invalid number logs 13223), `Record` (the callee's next line; `RecordingUrl`,
//!   `RecordingSid`, `RecordingDuration`), `Hangup`, `Reject` (inbound before answer → `busy`),
//!   `Connect` with `ConversationRelay` (below); others are skipped. The document's end completes the call. A webhook failing (non-2xx,
//!   connection error, 15 s timeout) is error 11200 and unparsable TwiML 12100: the caller
//!   hears an application error, the call completes and the ledger keeps the code.
//! - Callees are scripted per number (unknown numbers: a human with nothing to say). A human
//!   gives its next line to each Gather (none left: silence); a machine stays silent and
//!   everything said to it becomes its `voicemail`; `hangup_mid_call` hangs up at the Gather
//!   after `hangup_after_turns` answers. Time is simulated: calls ring `--call-ring-ms`,
//!   callees think `--call-think-ms` (or their `think_ms`), and one simulated second (Pause,
//!   timeouts, recordings, a dialled party's talk, reported durations) lasts
//!   `--call-second-ms`.
//! - `<Connect><ConversationRelay url>` plays Twilio ConversationRelay: the WebSocket opens
//!   with `X-Twilio-Signature` over the URL as written (no parameters; forged with
//!   `bad_signature`), `setup` goes first (`customParameters` from `<Parameter>`s), the
//!   `welcomeGreeting` is logged as said, each line is a `prompt` (`{"digits"}`: one `dtmf` a
//!   key with `dtmfDetection`), and every `text` token is logged as heard (`token` events,
//!   with times), each reply as one `say` (what was heard of it). Lines
//!   `{"speech", "interrupt_after_tokens": N}` or `{"speech", "interrupt_after_ms": M}` are
//!   said over the reply to the line before (`interrupt` with `utteranceUntilInterrupt`, then
//!   the `prompt`; a token is spoken in 0.25 simulated s), `{"hangup_after_tokens": N}` hangs
//!   up mid-reply, `{"silence": true}` says nothing. A message Twilio would refuse gets an
//!   `error` frame (64107, logged); `play`, `sendDigits` and `language` are logged; `end` is
//!   logged with its `handoffData`, and the call follows the `<Connect action>` with
//!   `SessionId`, `SessionStatus`, `SessionDuration` and `HandoffData`. With no line left the
//!   callee waits 3 s for an `end`, then hangs up. A refused handshake logs an `error` and the
//!   `action` gets `SessionStatus=failed`.
//! - State is in memory and lost on exit. It is laid out for campaigns: a message costs about
//!   300 bytes, per-number queries are indexed, and no request waits on I/O under the lock
//!   (`examples/load.rs` measures throughput).
//!
//! # Admin API (JSON; loopback clients only unless `--admin-allow-remote`)
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /admin/health` | | `{"status":"ok","account_sid"}` |
//! | `GET /admin/numbers` | | `{"numbers":{NUMBER: config}}` |
//! | `GET`/`PUT`/`DELETE /admin/numbers/{number}` | `{"sms_url"?, "voice_url"?, "voice_status_callback"?, "outcome"?: {"status"?: "delivered"\|"read"\|"undelivered"\|"failed"\|"sent", "error_code"?}}` | the config / 204 / 404 |
//! | `POST /admin/inbound` | `{"from","to","body"?,"media_urls"?,"profile_name"?,"bad_signature"?}` | `{"message_sid","url","status","content_type","body","error"}` |
//! | `POST /admin/inbound/{sid}/redeliver` | `{"bad_signature"?}` or empty | same as above |
//! | `GET`/`PUT /admin/faults` | `{"error_rate"?,"too_many_requests_rate"?,"latency_ms"?,"rate_limit_mps"?,"accept_delay_ms"?,"callback_loss_rate"?,"twilio_opt_out"?,"calls_per_second"?}` | current faults |
//! | `GET /admin/callees` | | `{"callees":{NUMBER: script}}` |
//! | `GET`/`PUT`/`DELETE /admin/callees/{number}` (`*`: every number without its own script) | `{"behaviour"?: "human"\|"machine"\|"busy"\|"no_answer"\|"failed"\|"hangup_mid_call", "lines"?: ["text" \| {"speech","confidence"?} \| {"digits"} \| {"silence":true} \| {"speech","interrupt_after_tokens"} \| {"speech","interrupt_after_ms"} \| {"hangup_after_tokens"}], "hangup_after_turns"?, "answer_delay_ms"?, "think_ms"?, "answered_by"?: "machine_end_beep"\|"machine_end_silence"\|"machine_end_other"}` | the script / 204 / 404 |
//! | `POST /admin/calls/inbound` | `{"from","to","lines"?,"think_ms"?,"bad_signature"?}` | `{"call_sid","from","to","url","status":"ringing"}` at once; 422 without a voice URL |
//! | `GET /admin/calls[?to=&from=]` | | `{"total","calls":[call]}`, oldest first |
//! | `GET /admin/calls/{sid}` | | `{sid,from,to,direction,status,answered_by,date_created,date_updated,dialled_at,answered_at,ended_at,duration,error_code,error_message,voicemail,transfers,events:[{at,kind,speaker,text,…}]}`; `kind` ∈ say, play, pause, gather, speech, digits, silence, dial, record, hangup, redirect, reject, error, voicemail, connect, token, interrupt, language, end; `speaker` ∈ agent, callee, system |
//! | `GET /admin/opt-outs` | | `{"enabled","refused","opt_outs":[{"from":USER,"to":SENDER}]}` |
//! | `GET /admin/ledger[?to=NUMBER]` | | `{"total","messages":[{sid,from,to,body,content_sid,content_variables,status,error_code,…}]}` |
//! | `GET /admin/ledger/counts[?to=NUMBER][&by_to=false]` | | `{"total","by_to":{NUMBER:n},"by_status":{STATUS:n}}` (`by_to` empty with `by_to=false`) |
//! | `GET /admin/ledger/duplicates[?body=TEXT][&content_sid=HX…]` | | `{"total","numbers","duplicates":[{to,count,body,content_sid,content_variables,sids}]}` |
//! | `POST /admin/ledger/missing` | `{"numbers":[…],"body"?,"content_sid"?}` | `{"checked","total","missing":[…]}` |
//! | `GET /admin/content`, `GET`/`PUT`/`DELETE /admin/content/{HXsid}` | `{"body":"Hi {{1}}","variables"?:{"1":"default"}}` | `{"templates":{…}}` / `{"sid","body","variables"}` / 204 / 404 |
//! | `GET`/`PUT /admin/whatsapp/sessions` | `{"from":USER,"to":SENDER,"last_inbound_at"?: RFC 3339 \| null}` | `{"now","sessions":[…]}` / `{"from","to","last_inbound_at","open","expires_at"}` |
//! | `GET`/`PUT /admin/clock` | `{"offset_seconds"}` | `{"offset_seconds","now"}` |
//! | `POST /admin/reset` | | 204 (also forgets calls and callees) |
//!
//! # Modules
//!
//! - [`config`]: command-line / `SIMULATOR_*` settings.
//! - `rest`: the Twilio REST surface; `admin`: the admin API; `webhook`: signed deliveries;
//!   `state`: shared settings, faults and the lock; `store`: messages and their indexes;
//!   `whatsapp`: windows and templates; `optout`: STOP / START keywords; `calls`: calls,
//!   callees, the dialling rate, the call runner and the TwiML parser.
//!
//! # Example
//!
//! ```no_run
//! use tokio_util::sync::CancellationToken;
//! use voice_agent_simulator::{Config, run};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! let shutdown = CancellationToken::new();
//! let server = tokio::spawn(run(listener, Config::default(), shutdown.clone()));
//! // … point a Twilio client at `url` …
//! # let _ = url;
//! shutdown.cancel();
//! server.await??;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod admin;
mod calls;
pub mod config;
mod optout;
mod rest;
mod segments;
mod state;
mod store;
mod util;
mod webhook;
mod whatsapp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError, Secret};

/// Entry points for the fuzz targets in `fuzz/`; not part of the simulator's interface.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses a voice TwiML document as a call does: the root element's name, or why not.
    pub fn parse_twiml(document: &str) -> Result<String, String> {
        crate::calls::twiml::parse(document)
            .map(|root| root.name)
            .map_err(|e| e.to_string())
    }
}

use crate::state::{AppState, Shared};

/// How long shutdown waits for in-flight status callbacks to notice cancellation.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the simulator could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid; fix the flag or `SIMULATOR_*` variable named in the cause.
    #[error("invalid configuration")]
    Config(#[from] ConfigError),
    /// The HTTP client for webhooks could not be built (usually a TLS set-up problem).
    #[error("failed to build the webhook HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The listener failed while serving.
    #[error("failed to serve HTTP")]
    Serve(#[source] std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Installs rustls' ring provider as the process default unless one is installed already.
///
/// reqwest is built without a provider; binaries call this at start, and [`run`] calls it too
/// so embedding tests need not.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: any provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Serves the simulator on `listener` until `shutdown` is cancelled.
pub async fn run(listener: TcpListener, config: Config, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    install_crypto_provider();
    let http = reqwest::Client::builder()
        // Twilio does not follow redirects for webhooks.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(Error::HttpClient)?;
    let state: AppState = Arc::new(Shared::new(&config, http, &shutdown));
    tracing::info!(
        account_sid = %config.account_sid,
        rate_limit_mps = config.rate_limit_mps,
        callback_delay_ms = config.callback_delay_ms,
        "simulator started"
    );

    axum::serve(
        listener,
        app(Arc::clone(&state)).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .map_err(Error::Serve)?;

    // Deliveries run under a child of `shutdown`, so they are already stopping.
    state.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some status callbacks were still running at shutdown");
    }
    tracing::info!("simulator stopped");
    Ok(())
}

fn app(state: AppState) -> Router {
    Router::new()
        .merge(rest::router(Arc::clone(&state)))
        .merge(admin::router(Arc::clone(&state)))
        .fallback(rest::not_found)
        .with_state(state)
}
