//! The gRPC API (`voiceagent.v1`), with server reflection.

use std::time::Duration;

use mongodb::bson::DateTime;
use temporalio_client::errors::WorkflowStartError;
use temporalio_client::{WorkflowIdReusePolicy, WorkflowStartOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tracing::{info, warn};
use voice_agent_activities::SendMessageInput;
use voice_agent_domain::{Channel, MessageId, PhoneNumber, send_workflow_id};
use voice_agent_protos::v1::messaging_service_server::{MessagingService, MessagingServiceServer};
use voice_agent_protos::v1::{
    GetMessageRequest, ListMessagesRequest, ListMessagesResponse, Message, SendSmsRequest,
    SendSmsResponse,
};
use voice_agent_store::{MessageDoc, MessageQuery};
use voice_agent_workflows::SendMessageWorkflow;

use crate::AppState;

/// Longest body Twilio accepts for one message.
const MAX_BODY_CHARS: usize = 1_600;
/// Page size when the request asks for none.
const DEFAULT_PAGE_SIZE: i32 = 50;

/// Errors of the gRPC API, mapped to status codes in one place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is invalid; the message says which field and why.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The id names nothing.
    #[error("{0} not found")]
    NotFound(String),
    /// The server is not configured for this request.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency failed; retrying later may succeed.
    #[error("internal error")]
    Unavailable(#[source] anyhow::Error),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match &e {
            ApiError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            ApiError::NotFound(_) => Status::not_found(e.to_string()),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            ApiError::Unavailable(cause) => {
                warn!(error = %format!("{cause:#}"), "request failed");
                Status::unavailable("a dependency is unavailable; try again")
            }
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

/// Longest a gRPC call may take.
pub const GRPC_TIMEOUT: Duration = Duration::from_secs(120);

/// Most calls one gRPC connection may have open at once.
pub const GRPC_MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// Serves the gRPC API and reflection on `listener` until `shutdown`.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(voice_agent_protos::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tonic::transport::Server::builder()
        // A call that has not answered by then is cut (DEADLINE_EXCEEDED); a client's own
        // shorter `grpc-timeout` wins. Contact uploads stream up to the upload size limit,
        // which fits in this at any usable bandwidth.
        .timeout(GRPC_TIMEOUT)
        // One connection cannot hold more calls than this open at once, nor queue more work
        // than this per connection; the HTTP/2 keepalive drops dead peers' connections.
        .max_concurrent_streams(Some(GRPC_MAX_STREAMS_PER_CONNECTION))
        .concurrency_limit_per_connection(GRPC_MAX_STREAMS_PER_CONNECTION as usize)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .layer(crate::auth::grpc::GrpcAuthLayer::new(state.clone()))
        .add_service(reflection)
        .add_service(crate::campaigns::grpc_service(state.clone()))
        .add_service(crate::contacts::grpc_service(state.clone()))
        .add_service(crate::voice::grpc_service(state.clone()))
        .add_service(MessagingServiceServer::new(MessagingApi { state }))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// `voiceagent.v1.MessagingService`.
pub struct MessagingApi {
    state: AppState,
}

impl MessagingApi {
    fn parse_phone(&self, field: &'static str, raw: &str) -> Result<PhoneNumber, ApiError> {
        PhoneNumber::parse(raw, &self.state.settings.common.default_region)
            .map_err(|e| invalid(field, e.to_string()))
    }
}

#[tonic::async_trait]
impl MessagingService for MessagingApi {
    async fn send_sms(
        &self,
        request: Request<SendSmsRequest>,
    ) -> Result<Response<SendSmsResponse>, Status> {
        let req = request.into_inner();
        let twilio = &self.state.settings.common.twilio;
        let to = self.parse_phone("to", &req.to)?;
        let chars = req.body.chars().count();
        if req.body.trim().is_empty() {
            return Err(invalid("body", "must not be empty").into());
        }
        if chars > MAX_BODY_CHARS {
            return Err(invalid(
                "body",
                format!("{chars} characters; at most {MAX_BODY_CHARS}"),
            )
            .into());
        }
        let messaging_service_sid = match req.messaging_service_sid.trim() {
            "" => None,
            ms if ms.len() == 34 && ms.starts_with("MG") => Some(ms.to_owned()),
            _ => {
                return Err(invalid(
                    "messaging_service_sid",
                    "expected MG followed by 32 hex digits",
                )
                .into());
            }
        };
        let from = match req.from.trim() {
            "" => None,
            raw => Some(self.parse_phone("from", raw)?),
        };
        let (from, messaging_service_sid) = match (from, messaging_service_sid) {
            (Some(f), ms) => (Some(f), ms),
            (None, Some(ms)) => (None, Some(ms)),
            (None, None) => match (&twilio.from_number, &twilio.messaging_service_sid) {
                (Some(f), _) => (Some(f.clone()), None),
                (None, Some(ms)) => (None, Some(ms.clone())),
                (None, None) => {
                    return Err(ApiError::FailedPrecondition(
                        "no sender: pass `from` or `messaging_service_sid`, or configure TWILIO_FROM_NUMBER".to_owned(),
                    )
                    .into());
                }
            },
        };
        if req.idempotency_key.len() > 200 {
            return Err(invalid("idempotency_key", "at most 200 bytes").into());
        }
        let message_id = match req.idempotency_key.as_str() {
            "" => MessageId::generate(),
            key => MessageId::from_idempotency_key(key),
        };
        let workflow_id = send_workflow_id(&message_id);
        let input = SendMessageInput {
            message_id: message_id.as_str().to_owned(),
            channel: Channel::Sms,
            to: to.as_str().to_owned(),
            from: from.as_ref().map(|f| f.as_str().to_owned()),
            messaging_service_sid,
            body: req.body,
            conversation_id: None,
        };
        let options = WorkflowStartOptions::new(
            self.state.settings.common.task_queue.clone(),
            workflow_id.clone(),
        )
        // The id is the idempotency key: a repeat must not send again, even after the first
        // send finished.
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .build();
        let created = match self
            .state
            .temporal
            .start_workflow(SendMessageWorkflow::run, input, options)
            .await
        {
            Ok(_) => true,
            Err(WorkflowStartError::AlreadyStarted { .. }) => false,
            Err(e) => {
                return Err(ApiError::Unavailable(
                    anyhow::Error::new(e).context("Failed to start the send workflow"),
                )
                .into());
            }
        };
        metrics::counter!("voice_agent_sms_requests_total", "created" => if created { "true" } else { "false" }).increment(1);
        info!(message_id = %message_id, to = %to, created, "send started");
        Ok(Response::new(SendSmsResponse {
            message_id: message_id.as_str().to_owned(),
            workflow_id,
            created,
        }))
    }

    async fn get_message(
        &self,
        request: Request<GetMessageRequest>,
    ) -> Result<Response<Message>, Status> {
        let id = request.into_inner().message_id;
        let valid_id = MessageId::parse(&id).is_some()
            || (id.len() == 34 && (id.starts_with("SM") || id.starts_with("MM")));
        if !valid_id {
            return Err(invalid("message_id", "expected msg_… or a Twilio MessageSid").into());
        }
        let doc = self
            .state
            .store
            .get_message(&id)
            .await
            .map_err(|e| ApiError::Unavailable(e.into()))?
            .ok_or_else(|| ApiError::NotFound(format!("message {id}")))?;
        Ok(Response::new(to_proto(doc)))
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Result<Response<ListMessagesResponse>, Status> {
        let req = request.into_inner();
        let page_size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=500).contains(&n) => n,
            _ => return Err(invalid("page_size", "between 1 and 500").into()),
        };
        let phone = match req.phone.trim() {
            "" => None,
            raw => Some(self.parse_phone("phone", raw)?.as_str().to_owned()),
        };
        let before = match req.page_token.as_str() {
            "" => None,
            token => {
                Some(DateTime::from_millis(token.parse::<i64>().map_err(
                    |_| invalid("page_token", "not a token from this API"),
                )?))
            }
        };
        let docs = self
            .state
            .store
            .list_messages(&MessageQuery {
                phone,
                conversation_id: None,
                before,
                limit: i64::from(page_size) + 1,
            })
            .await
            .map_err(|e| ApiError::Unavailable(e.into()))?;
        let has_more = docs.len() > page_size as usize;
        let page: Vec<MessageDoc> = docs.into_iter().take(page_size as usize).collect();
        // Messages created in the same millisecond as the page's last one could be skipped by a
        // strict "before" cursor; acceptable for a history view, and documented in the proto.
        let next_page_token = match (has_more, page.last()) {
            (true, Some(last)) => last.created_at.timestamp_millis().to_string(),
            _ => String::new(),
        };
        Ok(Response::new(ListMessagesResponse {
            messages: page.into_iter().map(to_proto).collect(),
            next_page_token,
        }))
    }
}

fn to_proto(doc: MessageDoc) -> Message {
    let ts = |d: DateTime| prost_types::Timestamp::from(d.to_system_time());
    Message {
        id: doc.id,
        direction: doc.direction,
        channel: doc.channel,
        from: doc.from.unwrap_or_default(),
        to: doc.to,
        body: doc.body,
        status: doc.status,
        twilio_sid: doc.twilio_sid.unwrap_or_default(),
        error_code: doc.error_code.unwrap_or_default(),
        error_message: doc.error_message.unwrap_or_default(),
        conversation_id: doc.conversation_id.unwrap_or_default(),
        created_at: Some(ts(doc.created_at)),
        updated_at: Some(ts(doc.updated_at)),
    }
}
