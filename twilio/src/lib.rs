//! Twilio channel for the Voice Agent: webhook signatures, TwiML and a typed REST client.
//!
//! Everything here speaks Twilio's wire protocol (REST API `2010-04-01`), so the same code works against
//! Twilio itself and against the project's Twilio simulator (point [`TwilioConfig::base_url`] at it).
//!
//! # Module map
//!
//! | module | what it holds |
//! |---|---|
//! | [`signature`] | `X-Twilio-Signature`: compute and validate (form, GET and JSON-body webhooks) |
//! | [`relay`] | ConversationRelay's WebSocket messages, in and out |
//! | [`twiml`] | typed builders for voice ([`twiml::VoiceResponse`]) and messaging ([`twiml::MessagingResponse`]) TwiML |
//! | [`client`] | [`TwilioClient`]: Messages and Calls resources, paging, [`TwilioError`] with retry classification |
//!
//! # Example
//!
//! ```no_run
//! use secrecy::SecretString;
//! use voice_agent_twilio::client::{Auth, CreateMessage, TwilioClient, TwilioConfig};
//!
//! # async fn run() -> Result<(), voice_agent_twilio::TwilioError> {
//! // Binaries install the rustls provider once at startup; this crate never does.
//! let config = TwilioConfig::new(
//!     "AC00000000000000000000000000000000",
//!     Auth::AuthToken(SecretString::from("auth-token")),
//! );
//! let client = TwilioClient::new(config)?;
//! let sent = client
//!     .create_message(&CreateMessage {
//!         to: "+15558675310".into(),
//!         from: Some("+15005550006".into()),
//!         body: Some("Hello from the agent".into()),
//!         ..CreateMessage::default()
//!     })
//!     .await;
//! match sent {
//!     Ok(message) => println!("queued {}", message.sid),
//!     Err(e) if e.is_retryable() => { /* let the activity retry */ }
//!     Err(_) => { /* permanent: opted out, invalid number, ... */ }
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod client;
mod mask;
pub mod relay;
pub mod signature;
pub mod twiml;

pub use client::{Auth, TwilioClient, TwilioConfig, TwilioError};

/// HTTP method Twilio uses to call a webhook (`method`, `statusCallbackMethod`, ... attributes and parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// `GET`: parameters travel in the query string.
    Get,
    /// `POST`: parameters travel as a form body (Twilio's default).
    Post,
}

impl HttpMethod {
    /// The method as Twilio spells it (`GET` / `POST`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}
