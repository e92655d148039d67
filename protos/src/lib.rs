//! gRPC contracts of the Voice Agent API (`proto/voiceagent/v1/*.proto`) and their generated
//! Rust code: message types, tonic clients and servers, and the file descriptor set that the
//! API serves through gRPC reflection (so `grpcurl` works without the `.proto` files).
//!
//! ```no_run
//! use voice_agent_protos::v1::{SendSmsRequest, messaging_service_client::MessagingServiceClient};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = MessagingServiceClient::connect("http://127.0.0.1:50051").await?;
//! let sent = client.send_sms(SendSmsRequest { to: "+14155550100".into(), body: "hi".into(),
//!     ..Default::default() }).await?;
//! println!("{}", sent.into_inner().message_id);
//! # Ok(()) }
//! ```

/// Version 1 of the API (`voiceagent.v1`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("voiceagent.v1");
}

/// Encoded `FileDescriptorSet` of every contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/voiceagent_descriptor.bin"));
