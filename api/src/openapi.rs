//! The OpenAPI 3.1 document of the JSON API, generated from the handlers' annotations, served
//! at `/api/openapi.json` with a browsable view at `/api/docs`. The web app's typed client is
//! generated from the same document (`web/openapi.json`), and a test fails when they differ.

use axum::Json;
use axum::Router;
use axum::response::Html;
use axum::routing::get;
use serde::Serialize;
use utoipa::OpenApi;

use crate::AppState;

/// Every JSON error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// A row of a contact file that was not imported.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RejectedRowSchema {
    /// 1-based row number as a spreadsheet program shows it.
    pub row: u32,
    /// Header of the offending column (its letter when the header is blank).
    pub column: String,
    /// The offending cell's text (at most 200 characters).
    pub value: String,
    /// What is wrong, for a person.
    pub reason: String,
}

/// The multipart form of a contact upload.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The `.xlsx` or `.csv` file.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// The sheet to read (`.xlsx`); the first sheet with a phone column by default.
    sheet: Option<String>,
    /// The header of the column with the phone numbers; found by its name by default.
    phone_column: Option<String>,
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Voice Agent API",
        description = "Contact lists, campaigns, conversations and calls. Every list is paged with a bounded page size; errors are `{\"error\": \"...\"}`.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::contacts::http_create_list,
        crate::contacts::http_list_lists,
        crate::contacts::http_get_list,
        crate::contacts::http_rename_list,
        crate::contacts::http_delete_list,
        crate::contacts::http_list_contacts,
        crate::contacts::http_add_contact,
        crate::contacts::http_get_contact,
        crate::contact_history::contact_history,
        crate::contacts::http_update_contact,
        crate::contacts::http_remove_contact,
        crate::contacts::http_upload,
        crate::contacts::http_preview,
        crate::contacts::http_pending_preview,
        crate::contacts::http_pending_import,
        crate::contacts::http_get_report,
        crate::contacts::http_report_csv,
        crate::campaigns::http_create,
        crate::campaigns::http_list,
        crate::campaigns::http_get,
        crate::campaigns::http_start,
        crate::campaigns::http_pause,
        crate::campaigns::http_resume,
        crate::campaigns::http_cancel,
        crate::campaigns::http_rate,
        crate::campaigns::http_progress,
        crate::campaign_items::list_items,
        crate::campaign_items::get_item,
        crate::conversations::list,
        crate::conversations::get_one,
        crate::conversations::reply,
        crate::conversations::hand_back,
        crate::voice::place_call,
        crate::voice::list_calls,
        crate::voice::get_call,
        crate::live::events,
        crate::live::progress_stream,
        crate::stats::http_stats,
        crate::profiles::get_settings,
        crate::profiles::list_profiles,
        crate::profiles::create_profile,
        crate::profiles::get_profile,
        crate::profiles::update_profile,
        crate::profiles::profile_versions,
        crate::auth::handlers::list_users,
        crate::auth::handlers::create_user,
        crate::auth::handlers::update_user,
        crate::auth::handlers::list_keys,
        crate::auth::handlers::create_key,
        crate::auth::handlers::revoke_key,
        crate::auth::handlers::list_audit,
        crate::chat::upgrade,
        crate::chat::profiles,
        crate::auth::docs::login,
        crate::auth::docs::logout,
        crate::auth::docs::me,
        crate::auth::docs::change_password,
    ),
    tags(
        (name = "contacts", description = "Contact lists, contacts and file uploads"),
        (name = "campaigns", description = "Outbound SMS, WhatsApp and voice campaigns"),
        (name = "conversations", description = "SMS and WhatsApp conversations with the agent"),
        (name = "calls", description = "Phone calls and their transcripts"),
        (name = "live", description = "Server-Sent Events for live pages, and the AI chat's WebSocket"),
        (name = "dashboard", description = "Figures by outcome and by day"),
        (name = "access", description = "Sign-in, users, API keys and the audit log. Every route wants a credential (`Authorization: Bearer <API key>` or the session cookie with `X-CSRF-Token` on changes) except sign-in; over a caller's request budget the answer is 429 with `Retry-After`"),
        (name = "settings", description = "Agent profiles (a version per change) and the deployment's settings"),
    )
)]
pub struct ApiDoc;

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `/api/openapi.json` and `/api/docs`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(|| async { Json(document()) }))
        .route(
            "/api/docs",
            get(|| async { Html(utoipa_scalar::Scalar::new(document()).to_html()) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The web app's client is generated from `web/openapi.json`: it must be the document the
    /// api serves. `UPDATE_OPENAPI=1 cargo test -p voice-agent-api openapi` rewrites it.
    #[test]
    fn the_web_apps_copy_of_the_document_is_current() {
        let served = document()
            .to_pretty_json()
            .expect("the document serialises");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/openapi.json");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, format!("{served}\n")).expect("web/openapi.json is writable");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed.trim_end() == served.trim_end(),
            "web/openapi.json differs from the served document: run \
             `UPDATE_OPENAPI=1 cargo test -p voice-agent-api openapi`, then `npm run gen` in web/"
        );
    }

    #[test]
    fn every_operation_documents_its_answers() {
        let doc = document();
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
            {
                assert!(
                    !op.responses.responses.is_empty(),
                    "{path} has an operation without responses"
                );
                assert!(
                    op.tags.as_ref().is_some_and(|t| !t.is_empty()),
                    "{path} has no tag"
                );
            }
        }
        assert!(doc.paths.paths.len() >= 15);
    }
}
