//! The Twilio REST surface (API version 2010-04-01): authentication, fault injection, Messages
//! and Calls.

mod calls;
mod error;
mod messages;
mod paging;

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::state::AppState;
use crate::util::constant_time_eq;

pub(crate) use error::ApiError;

/// Routes under `/2010-04-01`, behind Basic auth and fault injection.
pub(crate) fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages.json",
            get(messages::list).post(messages::create),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages/{file}",
            get(messages::fetch).delete(messages::delete),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Calls.json",
            get(calls::list).post(calls::create),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Calls/{file}",
            get(calls::fetch).post(calls::update),
        )
        .route_layer(middleware::from_fn_with_state(state, guard))
}

/// Answer for paths the simulator does not serve.
pub(crate) async fn not_found(request: Request) -> Response {
    ApiError::not_found(request.uri().path()).into_response()
}

/// Applies, in order: added latency, authentication, the account check, random 429/500 faults.
///
/// Faults come after authentication so that credential problems stay deterministic even while
/// a run injects errors.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let faults = state.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if let Err(error) = authenticate(&state, &request) {
        tracing::info!(code = error.code(), "rejected REST request: authentication");
        return error.into_response();
    }
    let path_account = request.uri().path().split('/').nth(3).unwrap_or_default();
    if path_account != state.account_sid {
        // Twilio hides other accounts' resources rather than admitting they exist.
        return ApiError::not_found(request.uri().path()).into_response();
    }
    if faults.too_many_requests_rate > 0.0 && rand::random::<f64>() < faults.too_many_requests_rate
    {
        tracing::info!("injected fault: 429");
        return ApiError::too_many_requests().into_response();
    }
    if faults.error_rate > 0.0 && rand::random::<f64>() < faults.error_rate {
        tracing::info!("injected fault: 500");
        return ApiError::internal().into_response();
    }
    next.run(request).await
}

fn authenticate(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let no_credentials =
        || ApiError::unauthorized("Authentication Error - No credentials provided");
    let invalid = || ApiError::unauthorized("Authentication Error - invalid username");
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(no_credentials)?;
    let encoded = header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Basic "))
        .ok_or_else(no_credentials)?;
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let (user, password) = decoded.split_once(':').ok_or_else(invalid)?;
    let expected = if user == state.account_sid {
        Some(state.auth_token.expose())
    } else {
        state
            .api_key
            .as_ref()
            .filter(|(sid, _)| sid == user)
            .map(|(_, secret)| secret.expose())
    };
    match expected {
        Some(expected) if constant_time_eq(password, expected) => Ok(()),
        _ => Err(invalid()),
    }
}
