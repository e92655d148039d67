//! The gRPC side: a tower layer in front of every service (reflection included) that wants
//! `authorization: Bearer <API key>` metadata, checks the method's role in
//! [`super::policy::GRPC_METHODS`] (unknown methods are refused) and audits state-changing
//! calls. An interceptor would do, but it is synchronous and the key lookup is not.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{Request, Response};
use mongodb::bson::DateTime;
use mongodb::bson::oid::ObjectId;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};
use voice_agent_store::{AuditDoc, Role};

use super::{AuthError, Principal, policy, principal_from_key};
use crate::AppState;

/// Adds [`GrpcAuth`] to a tonic server.
#[derive(Clone)]
pub struct GrpcAuthLayer {
    state: AppState,
}

impl GrpcAuthLayer {
    /// The layer over `state`'s store.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth {
            inner,
            state: self.state.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    state: AppState,
}

async fn authorize(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    needed: Option<Role>,
) -> (Result<Principal, AuthError>, Option<Principal>) {
    let Some(value) = headers.get("authorization") else {
        return (
            Err(AuthError::Unauthenticated(
                "send authorization: Bearer <API key> metadata",
            )),
            None,
        );
    };
    let Ok(value) = value.to_str() else {
        return (
            Err(AuthError::Unauthenticated(
                "malformed authorization metadata",
            )),
            None,
        );
    };
    let principal = match super::bearer(value) {
        Ok(key) => match principal_from_key(&state.store, key).await {
            Ok(p) => p,
            Err(e) => return (Err(e), None),
        },
        Err(e) => return (Err(e), None),
    };
    match needed {
        None => (
            Err(AuthError::Forbidden("this method has no access policy")),
            Some(principal),
        ),
        Some(role) if principal.role < role => (
            Err(AuthError::Forbidden("your role does not allow this")),
            Some(principal),
        ),
        Some(_) => (Ok(principal.clone()), Some(principal)),
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> Service<Request<B>> for GrpcAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone is not ready; the ready one goes into the future (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let needed = policy::grpc_method(&path);
            let ip = req
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let changing = needed.is_none_or(|r| r > Role::Viewer);
            let (result, who) = authorize(&state, req.headers(), needed).await;
            let result = result.and_then(|principal| {
                state
                    .auth
                    .limits
                    .check_principal(&principal)
                    .map_err(|retry_after_secs| AuthError::Throttled { retry_after_secs })?;
                Ok(principal)
            });
            let (response, status) = match result {
                Ok(_) => {
                    let response = inner.call(req).await?;
                    // Errors come back trailers-only, with the status in the headers; a call
                    // that gets as far as a message ends with status 0 in the trailers.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    (response, code)
                }
                Err(e) => {
                    let status = tonic::Status::from(e);
                    let code = status.code() as i32;
                    (status.into_http::<ResBody>(), code)
                }
            };
            if changing {
                let entry = AuditDoc {
                    id: ObjectId::new(),
                    at: DateTime::now(),
                    actor_kind: String::new(),
                    actor_id: String::new(),
                    actor_name: String::new(),
                    transport: "grpc".to_owned(),
                    method: "POST".to_owned(),
                    route: path,
                    target: None,
                    status,
                    ip,
                };
                super::record(&state.store, who.as_ref(), entry).await;
            }
            Ok(response)
        })
    }
}
