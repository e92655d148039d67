//! Contact lists: HTTP (multipart upload, report download) and gRPC surfaces.

use axum::Router;

use crate::AppState;

/// HTTP routes of contact lists.
pub fn routes() -> Router<AppState> {
    Router::new()
}
