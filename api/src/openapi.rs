//! The OpenAPI 3.1 document of the JSON API, generated from the handlers' annotations, served
//! at `/api/openapi.json` with a browsable view at `/api/docs`. The web app's typed client is
//! generated from the same document (`web/openapi.json`), and a test fails when they differ.

use axum::Json;
use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
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

/// Scalar's API reference viewer, one exact release. The page runs in the api's origin, where
/// a signed-in admin's cookie rides on every request, so the browser runs the file only if it
/// matches this hash (a changed file on the CDN is refused), and the page's policy lets it
/// talk to the api alone.
const SCALAR_JS: &str =
    "https://cdn.jsdelivr.net/npm/@scalar/api-reference@1.76.4/dist/browser/standalone.js";
const SCALAR_JS_SRI: &str =
    "sha384-hwB9WroDTpZaI38gr+u9CXA6ksz5gUYgD2GxXazKl/agT1L2GWUiRFWGJYNiFu4Q";

/// Scalar's defaults send "try it" requests to other hosts through its own proxy (with the
/// credential typed in), load fonts from its servers and report telemetry: all off.
const SCALAR_CONFIG: &str =
    r#"{"proxyUrl":"","withDefaultFonts":false,"telemetry":false,"persistAuth":false}"#;

fn docs_policy() -> String {
    format!(
        "default-src 'none'; script-src {SCALAR_JS}; style-src 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

fn docs_page() -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Voice Agent API</title>
</head>
<body>
<script id="api-reference" data-url="/api/openapi.json" data-configuration='{SCALAR_CONFIG}'></script>
<script src="{SCALAR_JS}" integrity="{SCALAR_JS_SRI}" crossorigin="anonymous" referrerpolicy="no-referrer"></script>
<noscript>The browsable view needs JavaScript; the document itself is at <a href="/api/openapi.json">/api/openapi.json</a>.</noscript>
</body>
</html>
"#
    )
}

async fn docs() -> impl IntoResponse {
    (
        [
            (header::CONTENT_SECURITY_POLICY, docs_policy()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        Html(docs_page()),
    )
}

/// `/api/openapi.json` and `/api/docs`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(|| async { Json(document()) }))
        .route("/api/docs", get(docs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_page_runs_one_pinned_checked_script_that_talks_to_the_api_alone() {
        let page = docs_page();
        assert!(SCALAR_JS.contains("@1.76.4/"), "a pinned release");
        assert!(page.contains(&format!(
            r#"src="{SCALAR_JS}" integrity="{SCALAR_JS_SRI}" crossorigin="anonymous""#
        )));
        assert_eq!(page.matches("<script").count(), 2);
        let config: serde_json::Value = serde_json::from_str(SCALAR_CONFIG).unwrap();
        assert_eq!(config["proxyUrl"], "");
        assert_eq!(config["telemetry"], false);
        assert_eq!(config["withDefaultFonts"], false);
        let policy = docs_policy();
        assert!(policy.starts_with("default-src 'none';"));
        assert!(policy.contains(&format!("script-src {SCALAR_JS};")));
        assert!(policy.contains("connect-src 'self';"));
        assert!(!policy.contains("unsafe-eval"));
    }

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
