//! Contact lists: the gRPC `voiceagent.v1.ContactService` and the same operations over HTTP
//! JSON, plus file uploads (gRPC client streaming, HTTP multipart) and the rejected-rows
//! report as a CSV download.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/contact-lists`, `GET /api/contact-lists` | create (`{"name"}`), list (`?page_size&page_token`) |
//! | `GET`, `PATCH`, `DELETE /api/contact-lists/{id}` | one list; rename (`{"name"}`); delete with its contacts |
//! | `GET`, `POST /api/contact-lists/{id}/contacts` | page and search (`?phone&name&tag&page_size&page_token`); add one |
//! | `GET`, `PATCH`, `DELETE /api/contact-lists/{id}/contacts/{contact_id}` | one contact; edit; remove |
//! | `POST /api/contact-lists/{id}/uploads` | multipart upload: field `file` (`.xlsx`/`.csv`), optional `sheet` |
//! | `POST /api/contact-lists/{id}/uploads/preview` | multipart: what the file would import; keeps it and returns a token |
//! | `POST /api/contact-lists/{id}/pending-uploads/{token}/preview` | the kept file read with another sheet or phone column |
//! | `POST /api/contact-lists/{id}/pending-uploads/{token}/import` | imports the kept file: it goes up once |
//! | `GET /api/contact-lists/{id}/uploads/{upload_id}` | an upload's counts and rejected rows |
//! | `GET /api/contact-lists/{id}/uploads/{upload_id}/rejected.csv` | the rejected rows, formula-neutralised CSV |
//!
//! Both surfaces share [`ContactsApi`], so validation and errors are the same; gRPC maps
//! [`ApiError`] to a status, HTTP to a status code and `{"error": …}`.
//!
//! Uploads are parsed completely before anything is written, so a file that fails as a whole
//! (wrong type, unreadable, over a limit, no phone column) writes nothing. Parsing runs on the
//! blocking pool (it is CPU-bound, about a second per 100,000 rows). At most
//! [`MAX_CONCURRENT_IMPORTS`] uploads are received or imported at once, because each holds the
//! whole file and its rows in memory: an upload takes its slot before its body is read, and
//! one that finds none free is answered at once (HTTP 503 with `Retry-After`, gRPC
//! `UNAVAILABLE`) instead of being buffered while it waits.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mongodb::bson::DateTime;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Status, Streaming};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::info;
use voice_agent_contacts::report::rejected_rows_csv;
use voice_agent_contacts::{
    ImportError, ImportOptions, RejectedRow, is_email, is_time_zone, language_tag, parse_file,
};
use voice_agent_domain::PhoneNumber;
use voice_agent_protos::v1 as pb;
use voice_agent_protos::v1::contact_service_server::{ContactService, ContactServiceServer};
use voice_agent_store::StoreError;
use voice_agent_store::contacts::{
    ContactDoc, ContactListDoc, ContactPatch, ContactQuery, ContactWrite, ImportReportDoc,
    NewContact, RejectedRowDoc, new_id,
};

use crate::AppState;
use crate::grpc::ApiError;

/// Uploads received or imported at the same time; more are refused as busy.
pub const MAX_CONCURRENT_IMPORTS: usize = 2;
/// What a busy answer asks the client to wait, in seconds: about one typical import.
pub const BUSY_RETRY_AFTER_SECS: u64 = 5;
/// Page size when a request asks for none.
const DEFAULT_PAGE_SIZE: i64 = 50;
/// Longest list name.
const MAX_NAME_CHARS: usize = 200;
/// Longest sheet name asked for.
const MAX_SHEET_CHARS: usize = 100;
/// Room for the multipart framing and the `sheet` field around the file itself.
const MULTIPART_OVERHEAD: usize = 64 * 1024;
/// An upload of the largest allowed file over a slow link, plus its import.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a previewed file waits for its import.
pub const PENDING_UPLOAD_TTL: Duration = Duration::from_secs(30 * 60);
/// Previewed files kept at once (each at most `CONTACTS_MAX_UPLOAD_BYTES`); more previews are
/// refused as busy until one is imported or expires.
pub const MAX_PENDING_UPLOADS: u64 = 20;

static IMPORT_PERMITS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(MAX_CONCURRENT_IMPORTS)));

/// An upload slot, held from before the body is read until the import is stored. Waiting for
/// one would hold the connection and, for a client that streams anyway, its buffered bytes.
fn import_permit() -> Result<OwnedSemaphorePermit, UploadError> {
    IMPORT_PERMITS
        .clone()
        .try_acquire_owned()
        .map_err(|_| UploadError::Busy {
            retry_after_secs: BUSY_RETRY_AFTER_SECS,
        })
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

fn unavailable(e: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Unavailable(e.into())
}

/// Why an upload failed: the request, or the file as a whole.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Bad request, unknown list, or a dependency failure.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The file cannot be imported at all; nothing was written.
    #[error(transparent)]
    File(#[from] ImportError),
    /// Every upload slot is taken; nothing was read. Retry after `retry_after_secs`.
    #[error(
        "the server is importing {MAX_CONCURRENT_IMPORTS} files already; retry in \
         {retry_after_secs} s"
    )]
    Busy {
        /// Seconds to wait before retrying.
        retry_after_secs: u64,
    },
    /// The previewed file of this token is not kept (any more): choose the file again.
    #[error(
        "the previewed file {0} is gone: it expired (files wait 30 minutes), was imported \
         already, or belongs to another list; choose the file again"
    )]
    PendingGone(String),
    /// [`MAX_PENDING_UPLOADS`] previewed files wait for their import already; nothing was kept.
    #[error(
        "{MAX_PENDING_UPLOADS} previewed files wait for their import already; import one, or \
         retry when one expires"
    )]
    TooManyPending,
}

impl From<UploadError> for Status {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::Api(e) => e.into(),
            UploadError::File(ImportError::UnknownRegion(r)) => ApiError::FailedPrecondition(
                format!("the server's DEFAULT_REGION {r:?} is unusable"),
            )
            .into(),
            UploadError::File(e) => invalid("file", e.to_string()).into(),
            busy @ UploadError::Busy { .. } => Status::unavailable(busy.to_string()),
            gone @ UploadError::PendingGone(_) => Status::not_found(gone.to_string()),
            full @ UploadError::TooManyPending => Status::unavailable(full.to_string()),
        }
    }
}

/// Which sheet and which phone column to read (both found by themselves when absent).
#[derive(Debug, Clone, Default)]
pub struct FileChoice {
    /// The sheet (`.xlsx`).
    pub sheet: Option<String>,
    /// The header of the phone column.
    pub phone_column: Option<String>,
}

/// Contacts shown by a preview.
const PREVIEW_CONTACTS: usize = 5;
/// Rejected rows detailed by a preview.
const PREVIEW_REJECTIONS: usize = 5;

/// One column of a previewed file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewColumn {
    /// The header as written (its letter when blank).
    header: String,
    /// `field` (a standard field), `variable` (a template variable) or `ignored`.
    kind: String,
    /// The field (`phone`, `name`, `first_name`, ...) or the variable's key.
    name: Option<String>,
}

/// A contact of a preview.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewContact {
    phone: String,
    name: Option<String>,
    variables: BTreeMap<String, String>,
}

/// `POST /api/contact-lists/{id}/uploads/preview`: what an upload would import.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewView {
    /// `xlsx` or `csv`.
    kind: String,
    /// The sheet read (`.xlsx`).
    sheet: Option<String>,
    /// Every sheet of the workbook (empty for CSV).
    sheets: Vec<String>,
    columns: Vec<PreviewColumn>,
    /// The header of the phone column.
    phone_column: Option<String>,
    /// Data rows.
    rows: usize,
    /// Contacts it would import or update (rows with the same number count once).
    contacts: usize,
    rejected: usize,
    /// The first rejected rows.
    #[schema(value_type = Vec<crate::openapi::RejectedRowSchema>)]
    rejected_rows: Vec<RejectedRow>,
    /// The first contacts, as they would be stored.
    sample: Vec<PreviewContact>,
    /// The kept file: import it (or read it with another sheet or phone column) with this
    /// token, without sending it again.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// When the kept file is dropped, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

impl From<voice_agent_contacts::ParsedFile> for PreviewView {
    fn from(p: voice_agent_contacts::ParsedFile) -> Self {
        use voice_agent_contacts::columns::{ColumnRole, Field};
        let field_name = |f: &Field| {
            serde_json::to_value(f)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        let phone_column = p
            .columns
            .iter()
            .find(|(_, r)| {
                matches!(
                    r,
                    ColumnRole::Field {
                        field: Field::Phone
                    }
                )
            })
            .map(|(h, _)| h.clone());
        Self {
            kind: match p.kind {
                voice_agent_contacts::FileKind::Xlsx => "xlsx",
                _ => "csv",
            }
            .to_owned(),
            sheet: p.sheet,
            sheets: p.sheets,
            columns: p
                .columns
                .iter()
                .map(|(header, role)| {
                    let (kind, name) = match role {
                        ColumnRole::Field { field } => ("field", field_name(field)),
                        ColumnRole::Variable { key } => ("variable", Some(key.clone())),
                        _ => ("ignored", None),
                    };
                    PreviewColumn {
                        header: header.clone(),
                        kind: kind.to_owned(),
                        name,
                    }
                })
                .collect(),
            phone_column,
            rows: p.rows,
            contacts: p.contacts.len(),
            rejected: p.rejected,
            rejected_rows: p.rejected_rows,
            sample: p
                .contacts
                .into_iter()
                .take(PREVIEW_CONTACTS)
                .map(|c| PreviewContact {
                    phone: String::from(c.phone),
                    name: c.name.or_else(|| {
                        let full = format!(
                            "{} {}",
                            c.first_name.unwrap_or_default(),
                            c.last_name.unwrap_or_default()
                        );
                        Some(full.trim().to_owned()).filter(|n| !n.is_empty())
                    }),
                    variables: c.variables,
                })
                .collect(),
            token: None,
            expires_at: None,
        }
    }
}

/// The sheet and phone column to read a kept file with (both found by themselves when absent).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingChoice {
    sheet: Option<String>,
    phone_column: Option<String>,
}

impl From<PendingChoice> for FileChoice {
    fn from(c: PendingChoice) -> Self {
        Self {
            sheet: c.sheet,
            phone_column: c.phone_column,
        }
    }
}

/// Operations shared by the gRPC service and the HTTP routes.
#[derive(Clone)]
pub struct ContactsApi {
    state: AppState,
}

/// A contact as given by a client, before validation.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// E.164 or national format of the default region.
    pub phone: String,
    /// Full name.
    #[serde(default)]
    pub name: String,
    /// Given name.
    #[serde(default)]
    pub first_name: String,
    /// Family name.
    #[serde(default)]
    pub last_name: String,
    /// E-mail address.
    #[serde(default)]
    pub email: String,
    /// BCP 47 language tag.
    #[serde(default)]
    pub language: String,
    /// IANA time zone.
    #[serde(default)]
    pub time_zone: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Template variables.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// Changes to a contact as given by a client; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchInput {
    /// New number.
    pub phone: Option<String>,
    /// New name (`""` clears).
    pub name: Option<String>,
    /// New given name (`""` clears).
    pub first_name: Option<String>,
    /// New family name (`""` clears).
    pub last_name: Option<String>,
    /// New e-mail (`""` clears).
    pub email: Option<String>,
    /// New language (`""` clears).
    pub language: Option<String>,
    /// New time zone (`""` clears).
    pub time_zone: Option<String>,
    /// Replaces all tags.
    pub tags: Option<Vec<String>>,
    /// Replaces all variables.
    pub variables: Option<BTreeMap<String, String>>,
}

/// A page of results and the token of the next one (empty on the last page).
pub type Page<T> = (Vec<T>, String);

impl ContactsApi {
    /// The operations over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn region(&self) -> &str {
        &self.state.settings.common.default_region
    }

    async fn require_list(&self, id: &str) -> Result<ContactListDoc, ApiError> {
        if id.is_empty() || id.len() > 100 {
            return Err(invalid("list_id", "expected a list id (cl_…)"));
        }
        self.state
            .store
            .get_contact_list(id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ApiError::NotFound(format!("contact list {id}")))
    }

    /// Creates a list.
    pub async fn create_list(&self, name: &str) -> Result<ContactListDoc, ApiError> {
        let name = list_name(name)?;
        let list = self
            .state
            .store
            .create_contact_list(&name)
            .await
            .map_err(unavailable)?;
        info!(list_id = %list.id, "contact list created");
        Ok(list)
    }

    /// Renames a list.
    pub async fn rename_list(&self, id: &str, name: &str) -> Result<ContactListDoc, ApiError> {
        let name = list_name(name)?;
        self.state
            .store
            .rename_contact_list(id, &name)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ApiError::NotFound(format!("contact list {id}")))
    }

    /// Deletes a list with its contacts and reports. The deletion runs in its own task: a big
    /// list takes seconds, and a client that gives up (or the request timeout) must not leave
    /// it half done.
    pub async fn delete_list(&self, id: &str) -> Result<(), ApiError> {
        let store = self.state.store.clone();
        let list_id = id.to_owned();
        let existed = tokio::spawn(async move { store.delete_contact_list(&list_id).await })
            .await
            .map_err(|e| unavailable(anyhow::anyhow!("the delete task failed: {e}")))?
            .map_err(unavailable)?;
        if !existed {
            return Err(ApiError::NotFound(format!("contact list {id}")));
        }
        info!(list_id = %id, "contact list deleted");
        Ok(())
    }

    /// One list.
    pub async fn get_list(&self, id: &str) -> Result<ContactListDoc, ApiError> {
        self.require_list(id).await
    }

    /// Lists, newest first.
    pub async fn list_lists(
        &self,
        page_size: i64,
        page_token: &str,
    ) -> Result<Page<ContactListDoc>, ApiError> {
        let size = page_size_or_default(page_size)?;
        let after = match page_token {
            "" => None,
            token => {
                let parsed = token.split_once(':').and_then(|(ms, id)| {
                    Some((DateTime::from_millis(ms.parse().ok()?), id.to_owned()))
                });
                Some(parsed.ok_or_else(|| invalid("page_token", "not a token from this API"))?)
            }
        };
        let mut lists = self
            .state
            .store
            .list_contact_lists(after, size + 1)
            .await
            .map_err(unavailable)?;
        let next = if lists.len() as i64 > size {
            lists.truncate(size as usize);
            lists.last().map_or_else(String::new, |l| {
                format!("{}:{}", l.created_at.timestamp_millis(), l.id)
            })
        } else {
            String::new()
        };
        Ok((lists, next))
    }

    /// Contacts of a list, sorted by phone, filtered and paged.
    pub async fn list_contacts(
        &self,
        list_id: &str,
        page_size: i64,
        page_token: &str,
        phone: &str,
        name: &str,
        tag: &str,
    ) -> Result<Page<ContactDoc>, ApiError> {
        self.require_list(list_id).await?;
        let size = page_size_or_default(page_size)?;
        check_search(phone, name, tag)?;
        let after_phone = match page_token {
            "" => None,
            t if t.starts_with('+') && t[1..].bytes().all(|b| b.is_ascii_digit()) => {
                Some(t.to_owned())
            }
            _ => return Err(invalid("page_token", "not a token from this API")),
        };
        let (phone_prefix, phone_contains) = phone_search(phone)?;
        let mut docs = self
            .state
            .store
            .list_contacts(&ContactQuery {
                list_id: list_id.to_owned(),
                phone_prefix,
                phone_contains,
                name: Some(name.trim().to_owned()).filter(|n| !n.is_empty()),
                tag: Some(tag.trim().to_owned()).filter(|t| !t.is_empty()),
                after_phone,
                limit: size + 1,
            })
            .await
            .map_err(search_failed)?;
        let next = if docs.len() as i64 > size {
            docs.truncate(size as usize);
            docs.last().map_or_else(String::new, |c| c.phone.clone())
        } else {
            String::new()
        };
        Ok((docs, next))
    }

    /// One contact.
    pub async fn get_contact(&self, list_id: &str, id: &str) -> Result<ContactDoc, ApiError> {
        self.state
            .store
            .get_contact(list_id, id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ApiError::NotFound(format!("contact {id}")))
    }

    /// Adds one contact.
    pub async fn add_contact(
        &self,
        list_id: &str,
        input: ContactInput,
    ) -> Result<ContactDoc, ApiError> {
        let phone = PhoneNumber::parse(&input.phone, self.region())
            .map_err(|e| invalid("phone", e.to_string()))?;
        let contact = NewContact {
            phone: phone.as_str().to_owned(),
            name: text_field(&input.name),
            first_name: text_field(&input.first_name),
            last_name: text_field(&input.last_name),
            email: check_email(&input.email)?,
            language: check_language(&input.language)?,
            time_zone: check_time_zone(&input.time_zone)?,
            tags: check_tags(input.tags)?,
            variables: check_variables(input.variables)?,
        };
        let written = self
            .state
            .store
            .add_contact(list_id, contact)
            .await
            .map_err(unavailable)?;
        let doc = written_or_error(written, list_id)?;
        info!(list_id = %list_id, contact_id = %doc.id, phone = %phone, "contact added");
        Ok(doc)
    }

    /// Edits one contact.
    pub async fn update_contact(
        &self,
        list_id: &str,
        id: &str,
        input: PatchInput,
    ) -> Result<ContactDoc, ApiError> {
        let phone = match input.phone.as_deref() {
            None => None,
            Some(raw) => Some(
                PhoneNumber::parse(raw, self.region())
                    .map_err(|e| invalid("phone", e.to_string()))?
                    .as_str()
                    .to_owned(),
            ),
        };
        let optional = |v: &Option<String>, check: fn(&str) -> Result<Option<String>, ApiError>| {
            v.as_deref()
                .map(|s| check(s).map(Option::unwrap_or_default))
                .transpose()
        };
        let patch = ContactPatch {
            phone,
            name: input.name.as_deref().map(|s| s.trim().to_owned()),
            first_name: input.first_name.as_deref().map(|s| s.trim().to_owned()),
            last_name: input.last_name.as_deref().map(|s| s.trim().to_owned()),
            email: optional(&input.email, check_email)?,
            language: optional(&input.language, check_language)?,
            time_zone: optional(&input.time_zone, check_time_zone)?,
            tags: input.tags.map(check_tags).transpose()?,
            variables: input.variables.map(check_variables).transpose()?,
        };
        let written = self
            .state
            .store
            .update_contact(list_id, id, patch)
            .await
            .map_err(unavailable)?;
        written_or_error(written, list_id)
    }

    /// Removes one contact.
    pub async fn remove_contact(&self, list_id: &str, id: &str) -> Result<(), ApiError> {
        let removed = self
            .state
            .store
            .remove_contact(list_id, id)
            .await
            .map_err(unavailable)?;
        if removed {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("contact {id}")))
        }
    }

    /// The largest upload accepted, in bytes.
    pub fn max_upload_bytes(&self) -> usize {
        self.state.settings.contacts_max_upload_bytes
    }

    /// Reads an uploaded file as [`Self::upload`] would, writing nothing: the sheets, the
    /// columns found and what each becomes, the counts, and the first contacts. It holds an
    /// upload slot like an import, and the same limits bound its memory.
    pub async fn preview(
        &self,
        list_id: &str,
        file_name: &str,
        choice: FileChoice,
        bytes: Bytes,
        permit: OwnedSemaphorePermit,
    ) -> Result<voice_agent_contacts::ParsedFile, UploadError> {
        let _permit = permit;
        self.require_list(list_id).await?;
        let mut options = self.import_options(file_name, choice)?;
        options.max_reported_rejections = PREVIEW_REJECTIONS;
        let name = file_name.trim().to_owned();
        let parsed = tokio::task::spawn_blocking(move || parse_file(&name, &bytes, &options))
            .await
            .map_err(|e| unavailable(anyhow::anyhow!("the preview task failed: {e}")))??;
        Ok(parsed)
    }

    fn import_options(
        &self,
        file_name: &str,
        choice: FileChoice,
    ) -> Result<ImportOptions, UploadError> {
        let file_name = file_name.trim();
        if file_name.is_empty() || file_name.len() > 255 {
            return Err(invalid("file_name", "1 to 255 bytes").into());
        }
        // Excel's own limit is 31 characters.
        if choice
            .sheet
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SHEET_CHARS)
        {
            return Err(invalid("sheet", format!("at most {MAX_SHEET_CHARS} characters")).into());
        }
        if choice
            .phone_column
            .as_ref()
            .is_some_and(|s| s.chars().count() > voice_agent_contacts::columns::MAX_HEADER_CHARS)
        {
            return Err(invalid("phone_column", "longer than any column header").into());
        }
        Ok(ImportOptions {
            sheet: choice.sheet.filter(|s| !s.trim().is_empty()),
            phone_column: choice.phone_column.filter(|s| !s.trim().is_empty()),
            max_bytes: self.state.settings.contacts_max_upload_bytes as u64,
            max_rows: self.state.settings.contacts_max_rows,
            ..ImportOptions::new(self.region())
        })
    }

    /// Imports an uploaded file into a list and keeps its report.
    ///
    /// The import runs in its own task, so a client that disconnects (or the request timeout)
    /// cannot stop it between writes: it finishes and its report is kept. `permit` is the
    /// upload's slot ([`import_permit`]), released when the import is done.
    pub async fn upload(
        &self,
        list_id: &str,
        file_name: &str,
        choice: FileChoice,
        bytes: Bytes,
        permit: OwnedSemaphorePermit,
    ) -> Result<ImportReportDoc, UploadError> {
        let api = self.clone();
        let (list_id, file_name) = (list_id.to_owned(), file_name.to_owned());
        tokio::spawn(async move {
            let _permit = permit;
            api.import_file(&list_id, &file_name, choice, bytes).await
        })
        .await
        .map_err(|e| unavailable(anyhow::anyhow!("the import task failed: {e}")))?
    }

    async fn import_file(
        &self,
        list_id: &str,
        file_name: &str,
        choice: FileChoice,
        bytes: Bytes,
    ) -> Result<ImportReportDoc, UploadError> {
        self.require_list(list_id).await?;
        let options = self.import_options(file_name, choice)?;
        let file_name = file_name.trim();
        let started = Instant::now();
        let name = file_name.to_owned();
        let parsed = tokio::task::spawn_blocking(move || parse_file(&name, &bytes, &options))
            .await
            .map_err(|e| unavailable(anyhow::anyhow!("the import task failed: {e}")))?;
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                metrics::counter!("voice_agent_contact_imports_total", "outcome" => "refused")
                    .increment(1);
                info!(list_id = %list_id, error = %e, "upload refused");
                return Err(e.into());
            }
        };
        let parse_ms = started.elapsed().as_millis();
        let contacts: Vec<NewContact> = parsed
            .contacts
            .into_iter()
            .map(|c| NewContact {
                phone: String::from(c.phone),
                name: c.name,
                first_name: c.first_name,
                last_name: c.last_name,
                email: c.email,
                language: c.language,
                time_zone: c.time_zone,
                tags: c.tags,
                variables: c.variables,
            })
            .collect();
        let counts = self
            .state
            .store
            .import_contacts(list_id, contacts)
            .await
            .map_err(unavailable)?;
        let report = ImportReportDoc {
            id: new_id("imp"),
            list_id: list_id.to_owned(),
            file_name: file_name.to_owned(),
            sheet: parsed.sheet,
            rows: parsed.rows as i64,
            imported: counts.inserted as i64,
            merged: (parsed.merged as u64 + counts.updated) as i64,
            rejected: parsed.rejected as i64,
            rejected_rows: parsed
                .rejected_rows
                .into_iter()
                .map(|r| RejectedRowDoc {
                    row: r.row,
                    column: r.column,
                    value: r.value,
                    reason: r.reason,
                })
                .collect(),
            created_at: DateTime::now(),
        };
        self.state
            .store
            .save_import_report(&report)
            .await
            .map_err(unavailable)?;
        metrics::counter!("voice_agent_contact_imports_total", "outcome" => "imported")
            .increment(1);
        metrics::counter!("voice_agent_contact_import_rows_total").increment(report.rows as u64);
        info!(
            list_id = %list_id,
            upload_id = %report.id,
            rows = report.rows,
            imported = report.imported,
            merged = report.merged,
            rejected = report.rejected,
            parse_ms,
            total_ms = started.elapsed().as_millis(),
            "contacts imported"
        );
        Ok(report)
    }

    /// Keeps a previewed file for its import (see `voice_agent_store::uploads`).
    async fn keep_pending(
        &self,
        list_id: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<voice_agent_store::uploads::PendingUpload, UploadError> {
        self.state
            .store
            .save_pending_upload(
                list_id,
                file_name.trim(),
                bytes,
                PENDING_UPLOAD_TTL,
                MAX_PENDING_UPLOADS,
            )
            .await
            .map_err(unavailable)?
            .ok_or(UploadError::TooManyPending)
    }

    /// A kept file and its name.
    async fn pending(
        &self,
        list_id: &str,
        token: &str,
    ) -> Result<(voice_agent_store::uploads::PendingUpload, Bytes), UploadError> {
        // Tokens are ours (`pup_` and 32 hex digits): anything else was never issued.
        if token.len() > 64
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(UploadError::PendingGone(token.chars().take(64).collect()));
        }
        let (pending, bytes) = self
            .state
            .store
            .pending_upload(list_id, token)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| UploadError::PendingGone(token.to_owned()))?;
        Ok((pending, Bytes::from(bytes)))
    }

    /// An earlier upload's report.
    pub async fn report(
        &self,
        list_id: &str,
        upload_id: &str,
    ) -> Result<ImportReportDoc, ApiError> {
        self.state
            .store
            .get_import_report(list_id, upload_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| ApiError::NotFound(format!("upload {upload_id}")))
    }
}

fn written_or_error(written: ContactWrite, list_id: &str) -> Result<ContactDoc, ApiError> {
    match written {
        ContactWrite::Written(doc) => Ok(*doc),
        ContactWrite::PhoneTaken { existing_id } => Err(invalid(
            "phone",
            format!("already on this list (contact {existing_id})"),
        )),
        ContactWrite::NotFound => Err(ApiError::NotFound(format!(
            "contact list {list_id} or contact"
        ))),
    }
}

fn list_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(invalid("name", format!("1 to {MAX_NAME_CHARS} characters")));
    }
    Ok(name.to_owned())
}

fn page_size_or_default(size: i64) -> Result<i64, ApiError> {
    match size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if (1..=1000).contains(&n) => Ok(n),
        _ => Err(invalid("page_size", "between 1 and 1000")),
    }
}

/// Longest search text: a name or tag search is a case-insensitive substring match that
/// scans the list, and a long pattern costs on every contact it meets.
const MAX_SEARCH_CHARS: usize = 100;
/// Longest phone search; an E.164 number with spaces and a `00` prefix fits.
const MAX_PHONE_SEARCH_CHARS: usize = 32;

fn check_search(phone: &str, name: &str, tag: &str) -> Result<(), ApiError> {
    for (field, text, max) in [
        ("phone", phone, MAX_PHONE_SEARCH_CHARS),
        ("name", name, MAX_SEARCH_CHARS),
        ("tag", tag, MAX_SEARCH_CHARS),
    ] {
        if text.chars().count() > max {
            return Err(invalid(
                field,
                format!("search text of at most {max} characters"),
            ));
        }
    }
    Ok(())
}

/// A search MongoDB stopped at `SEARCH_MAX_TIME` is the caller's to narrow, not a fault.
fn search_failed(e: StoreError) -> ApiError {
    match e {
        StoreError::SearchTimedOut => ApiError::FailedPrecondition(format!(
            "{e}; narrow it with a phone prefix starting with + or a tag"
        )),
        other => unavailable(other),
    }
}

/// `+1 415` or `00 1 415` → prefix `+1415`; `555-0100` → contains `5550100`.
fn phone_search(raw: &str) -> Result<(Option<String>, Option<String>), ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok((None, None));
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if raw.starts_with('+') {
        Ok((Some(format!("+{digits}")), None))
    } else if let Some(rest) = digits.strip_prefix("00") {
        Ok((Some(format!("+{rest}")), None))
    } else if digits.is_empty() {
        Err(invalid("phone", "search by digits of the number"))
    } else {
        Ok((None, Some(digits)))
    }
}

fn text_field(v: &str) -> Option<String> {
    Some(v.trim().to_owned()).filter(|s| !s.is_empty())
}

fn check_email(v: &str) -> Result<Option<String>, ApiError> {
    match text_field(v) {
        Some(e) if !is_email(&e) => Err(invalid("email", "not an e-mail address")),
        other => Ok(other),
    }
}

fn check_language(v: &str) -> Result<Option<String>, ApiError> {
    match text_field(v) {
        Some(l) => language_tag(&l)
            .map(Some)
            .ok_or_else(|| invalid("language", "not a language code such as en or pt-BR")),
        None => Ok(None),
    }
}

fn check_time_zone(v: &str) -> Result<Option<String>, ApiError> {
    match text_field(v) {
        Some(tz) if !is_time_zone(&tz) => Err(invalid(
            "time_zone",
            "not a time zone name such as America/New_York or UTC",
        )),
        other => Ok(other),
    }
}

fn check_tags(tags: Vec<String>) -> Result<Vec<String>, ApiError> {
    if tags.len() > 100 || tags.iter().any(|t| t.chars().count() > 100) {
        return Err(invalid(
            "tags",
            "at most 100 tags of at most 100 characters",
        ));
    }
    Ok(tags)
}

fn check_variables(vars: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError> {
    if vars.len() > 256 {
        return Err(invalid("variables", "at most 256"));
    }
    for key in vars.keys() {
        let ok = !key.is_empty()
            && key.len() <= 64
            && key.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !ok {
            return Err(invalid(
                "variables",
                format!("key {key:?}: 1 to 64 letters, digits or _"),
            ));
        }
    }
    Ok(vars)
}

// ---- gRPC ------------------------------------------------------------------------------------

/// The gRPC service, for `grpc::serve`.
pub fn grpc_service(state: AppState) -> ContactServiceServer<ContactsApi> {
    ContactServiceServer::new(ContactsApi::new(state))
}

fn ts(d: DateTime) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(d.to_system_time()))
}

fn list_proto(l: ContactListDoc) -> pb::ContactList {
    pb::ContactList {
        id: l.id,
        name: l.name,
        contact_count: l.contact_count,
        created_at: ts(l.created_at),
        updated_at: ts(l.updated_at),
    }
}

fn contact_proto(c: ContactDoc) -> pb::Contact {
    pb::Contact {
        id: c.id,
        list_id: c.list_id,
        phone: c.phone,
        name: c.name.unwrap_or_default(),
        first_name: c.first_name.unwrap_or_default(),
        last_name: c.last_name.unwrap_or_default(),
        email: c.email.unwrap_or_default(),
        language: c.language.unwrap_or_default(),
        time_zone: c.time_zone.unwrap_or_default(),
        tags: c.tags,
        variables: c.variables.into_iter().collect::<HashMap<_, _>>(),
        created_at: ts(c.created_at),
        updated_at: ts(c.updated_at),
    }
}

fn report_proto(r: ImportReportDoc) -> pb::UploadContactsResponse {
    pb::UploadContactsResponse {
        upload_id: r.id,
        list_id: r.list_id,
        sheet: r.sheet.unwrap_or_default(),
        rows: r.rows,
        imported: r.imported,
        merged: r.merged,
        rejected: r.rejected,
        rejected_rows: r
            .rejected_rows
            .into_iter()
            .map(|x| pb::RejectedRow {
                row: x.row,
                column: x.column,
                value: x.value,
                reason: x.reason,
            })
            .collect(),
    }
}

type GrpcResult<T> = Result<tonic::Response<T>, Status>;

#[tonic::async_trait]
impl ContactService for ContactsApi {
    async fn create_contact_list(
        &self,
        request: Request<pb::CreateContactListRequest>,
    ) -> GrpcResult<pb::ContactList> {
        let list = self.create_list(&request.into_inner().name).await?;
        Ok(tonic::Response::new(list_proto(list)))
    }

    async fn rename_contact_list(
        &self,
        request: Request<pb::RenameContactListRequest>,
    ) -> GrpcResult<pb::ContactList> {
        let req = request.into_inner();
        let list = self.rename_list(&req.list_id, &req.name).await?;
        Ok(tonic::Response::new(list_proto(list)))
    }

    async fn delete_contact_list(
        &self,
        request: Request<pb::DeleteContactListRequest>,
    ) -> GrpcResult<pb::DeleteContactListResponse> {
        self.delete_list(&request.into_inner().list_id).await?;
        Ok(tonic::Response::new(pb::DeleteContactListResponse {}))
    }

    async fn get_contact_list(
        &self,
        request: Request<pb::GetContactListRequest>,
    ) -> GrpcResult<pb::ContactList> {
        let list = self.get_list(&request.into_inner().list_id).await?;
        Ok(tonic::Response::new(list_proto(list)))
    }

    async fn list_contact_lists(
        &self,
        request: Request<pb::ListContactListsRequest>,
    ) -> GrpcResult<pb::ListContactListsResponse> {
        let req = request.into_inner();
        let (lists, next_page_token) = self
            .list_lists(i64::from(req.page_size), &req.page_token)
            .await?;
        Ok(tonic::Response::new(pb::ListContactListsResponse {
            lists: lists.into_iter().map(list_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> GrpcResult<pb::ListContactsResponse> {
        let req = request.into_inner();
        let (contacts, next_page_token) = ContactsApi::list_contacts(
            self,
            &req.list_id,
            i64::from(req.page_size),
            &req.page_token,
            &req.phone,
            &req.name,
            &req.tag,
        )
        .await?;
        Ok(tonic::Response::new(pb::ListContactsResponse {
            contacts: contacts.into_iter().map(contact_proto).collect(),
            next_page_token,
        }))
    }

    async fn add_contact(
        &self,
        request: Request<pb::AddContactRequest>,
    ) -> GrpcResult<pb::Contact> {
        let req = request.into_inner();
        let f = req.contact.ok_or_else(|| invalid("contact", "required"))?;
        let input = ContactInput {
            phone: f.phone,
            name: f.name,
            first_name: f.first_name,
            last_name: f.last_name,
            email: f.email,
            language: f.language,
            time_zone: f.time_zone,
            tags: f.tags,
            variables: f.variables.into_iter().collect(),
        };
        let doc = ContactsApi::add_contact(self, &req.list_id, input).await?;
        Ok(tonic::Response::new(contact_proto(doc)))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> GrpcResult<pb::Contact> {
        let req = request.into_inner();
        let input = PatchInput {
            phone: req.phone,
            name: req.name,
            first_name: req.first_name,
            last_name: req.last_name,
            email: req.email,
            language: req.language,
            time_zone: req.time_zone,
            tags: req.tags.map(|t| t.tags),
            variables: req.variables.map(|v| v.variables.into_iter().collect()),
        };
        let doc = ContactsApi::update_contact(self, &req.list_id, &req.contact_id, input).await?;
        Ok(tonic::Response::new(contact_proto(doc)))
    }

    async fn remove_contact(
        &self,
        request: Request<pb::RemoveContactRequest>,
    ) -> GrpcResult<pb::RemoveContactResponse> {
        let req = request.into_inner();
        ContactsApi::remove_contact(self, &req.list_id, &req.contact_id).await?;
        Ok(tonic::Response::new(pb::RemoveContactResponse {}))
    }

    async fn upload_contacts(
        &self,
        request: Request<Streaming<pb::UploadContactsRequest>>,
    ) -> GrpcResult<pb::UploadContactsResponse> {
        let permit = import_permit()?;
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| invalid("start", "required"))?;
        let Some(pb::upload_contacts_request::Part::Start(start)) = first.part else {
            return Err(invalid("start", "the first message must carry `start`").into());
        };
        // Fail fast on an unknown list, before receiving the whole file.
        self.require_list(&start.list_id).await?;
        let max = self.max_upload_bytes();
        let mut bytes = Vec::new();
        while let Some(msg) = stream.message().await? {
            match msg.part {
                Some(pb::upload_contacts_request::Part::Chunk(chunk)) => {
                    if bytes.len() + chunk.len() > max {
                        return Err(UploadError::File(ImportError::TooLarge {
                            size: (bytes.len() + chunk.len()) as u64,
                            max: max as u64,
                        })
                        .into());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                _ => return Err(invalid("chunk", "only the first message carries `start`").into()),
            }
        }
        let sheet = Some(start.sheet).filter(|s| !s.is_empty());
        let report = self
            .upload(
                &start.list_id,
                &start.file_name,
                FileChoice {
                    sheet,
                    phone_column: None,
                },
                Bytes::from(bytes),
                permit,
            )
            .await?;
        Ok(tonic::Response::new(report_proto(report)))
    }

    async fn get_import_report(
        &self,
        request: Request<pb::GetImportReportRequest>,
    ) -> GrpcResult<pb::UploadContactsResponse> {
        let req = request.into_inner();
        let report = self.report(&req.list_id, &req.upload_id).await?;
        Ok(tonic::Response::new(report_proto(report)))
    }
}

// ---- HTTP ------------------------------------------------------------------------------------

/// JSON CRUD routes and the report download; they live under the API's global body limit.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/contact-lists",
            post(http_create_list).get(http_list_lists),
        )
        .route(
            "/api/contact-lists/{id}",
            get(http_get_list)
                .patch(http_rename_list)
                .delete(http_delete_list),
        )
        .route(
            "/api/contact-lists/{id}/contacts",
            get(http_list_contacts).post(http_add_contact),
        )
        .route(
            "/api/contact-lists/{id}/contacts/{contact_id}",
            get(http_get_contact)
                .patch(http_update_contact)
                .delete(http_remove_contact),
        )
        .route(
            "/api/contact-lists/{id}/uploads/{upload_id}",
            get(http_get_report),
        )
        .route(
            "/api/contact-lists/{id}/uploads/{upload_id}/rejected.csv",
            get(http_report_csv),
        )
}

/// The upload route, with its own body limit (`CONTACTS_MAX_UPLOAD_BYTES` plus the multipart
/// framing) and a longer timeout than other requests. Merge it outside the global body limit
/// and timeout layers, which would otherwise cut every upload at their smaller values.
pub fn upload_routes(max_upload_bytes: usize) -> Router<AppState> {
    let limit = max_upload_bytes.saturating_add(MULTIPART_OVERHEAD);
    Router::new()
        .route("/api/contact-lists/{id}/uploads", post(http_upload))
        .route(
            "/api/contact-lists/{id}/uploads/preview",
            post(http_preview),
        )
        // No file in these bodies, but an import's time.
        .route(
            "/api/contact-lists/{id}/pending-uploads/{token}/preview",
            post(http_pending_preview),
        )
        .route(
            "/api/contact-lists/{id}/pending-uploads/{token}/import",
            post(http_pending_import),
        )
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            UPLOAD_TIMEOUT,
        ))
}

/// An error as an HTTP answer: `{"error": "...", "code": "..."}`.
#[derive(Debug)]
pub struct HttpError(UploadError);

impl<E: Into<UploadError>> From<E> for HttpError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            UploadError::Busy { retry_after_secs } => {
                let body = Json(serde_json::json!({ "error": self.0.to_string(), "code": "busy" }));
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, retry_after_secs.to_string())],
                    body,
                )
                    .into_response();
            }
            UploadError::TooManyPending => {
                let body = Json(
                    serde_json::json!({ "error": self.0.to_string(), "code": "too_many_pending" }),
                );
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "60".to_owned())],
                    body,
                )
                    .into_response();
            }
            UploadError::PendingGone(_) => (StatusCode::GONE, "upload_gone"),
            UploadError::Api(ApiError::InvalidArgument { .. }) => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
            UploadError::Api(ApiError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
            UploadError::Api(ApiError::FailedPrecondition(_)) => {
                (StatusCode::CONFLICT, "failed_precondition")
            }
            UploadError::Api(ApiError::Unavailable(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "request failed");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            UploadError::File(e) => match e {
                ImportError::TooLarge { .. } | ImportError::TooLargeUncompressed { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "file_too_large")
                }
                ImportError::TooManyRows { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_rows"),
                ImportError::TooManyCells { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "too_many_cells")
                }
                ImportError::TooMuchText { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_much_text"),
                ImportError::TooManyColumns { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "too_many_columns")
                }
                ImportError::CellTooLong { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "cell_too_long")
                }
                ImportError::HeaderTooLong { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "header_too_long")
                }
                ImportError::WrongType(_) => {
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, "wrong_file_type")
                }
                ImportError::UnknownRegion(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "misconfigured")
                }
                ImportError::SheetNotFound { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "sheet_not_found")
                }
                ImportError::MissingPhoneColumn { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "no_phone_column")
                }
                ImportError::PhoneColumnNotFound { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "phone_column_not_found")
                }
                ImportError::Empty => (StatusCode::UNPROCESSABLE_ENTITY, "empty_file"),
                _ => (StatusCode::UNPROCESSABLE_ENTITY, "unreadable_file"),
            },
        };
        let message = match &self.0 {
            UploadError::Api(ApiError::Unavailable(_)) => {
                "a dependency is unavailable; try again".to_owned()
            }
            other => other.to_string(),
        };
        (
            status,
            Json(serde_json::json!({ "error": message, "code": code })),
        )
            .into_response()
    }
}

type HttpResult<T> = Result<Json<T>, HttpError>;

/// A list as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListView {
    id: String,
    name: String,
    contact_count: i64,
    created_at: String,
    updated_at: String,
}

fn rfc3339(d: DateTime) -> String {
    d.try_to_rfc3339_string().unwrap_or_default()
}

impl From<ContactListDoc> for ListView {
    fn from(l: ContactListDoc) -> Self {
        Self {
            id: l.id,
            name: l.name,
            contact_count: l.contact_count,
            created_at: rfc3339(l.created_at),
            updated_at: rfc3339(l.updated_at),
        }
    }
}

/// A contact as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactView {
    id: String,
    list_id: String,
    phone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_zone: Option<String>,
    tags: Vec<String>,
    variables: BTreeMap<String, String>,
    created_at: String,
    updated_at: String,
}

impl From<ContactDoc> for ContactView {
    fn from(c: ContactDoc) -> Self {
        Self {
            id: c.id,
            list_id: c.list_id,
            phone: c.phone,
            name: c.name,
            first_name: c.first_name,
            last_name: c.last_name,
            email: c.email,
            language: c.language,
            time_zone: c.time_zone,
            tags: c.tags,
            variables: c.variables,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// An upload's outcome as JSON.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadView {
    upload_id: String,
    list_id: String,
    file_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sheet: Option<String>,
    rows: i64,
    imported: i64,
    merged: i64,
    rejected: i64,
    #[schema(value_type = Vec<crate::openapi::RejectedRowSchema>)]
    rejected_rows: Vec<RejectedRow>,
    /// Where to download the rejected rows as CSV.
    report_csv: String,
}

impl From<ImportReportDoc> for UploadView {
    fn from(r: ImportReportDoc) -> Self {
        Self {
            report_csv: format!(
                "/api/contact-lists/{}/uploads/{}/rejected.csv",
                r.list_id, r.id
            ),
            upload_id: r.id,
            list_id: r.list_id,
            file_name: r.file_name,
            sheet: r.sheet,
            rows: r.rows,
            imported: r.imported,
            merged: r.merged,
            rejected: r.rejected,
            rejected_rows: r.rejected_rows.into_iter().map(rejected_row).collect(),
        }
    }
}

fn rejected_row(r: RejectedRowDoc) -> RejectedRow {
    RejectedRow {
        row: r.row,
        column: r.column,
        value: r.value,
        reason: r.reason,
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| invalid("body", e.to_string()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameBody {
    name: String,
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// At most this many (default 50, at most 1000).
    #[serde(default)]
    #[param(minimum = 0, maximum = 1000)]
    page_size: i64,
    /// `next_page_token` of the previous page; empty for the first.
    #[serde(default)]
    page_token: String,
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ContactParams {
    /// At most this many (default 50, at most 1000).
    #[serde(default)]
    #[param(minimum = 0, maximum = 1000)]
    page_size: i64,
    /// `next_page_token` of the previous page; empty for the first.
    #[serde(default)]
    page_token: String,
    /// A number: a prefix when it starts with `+`, else any part of it.
    #[serde(default)]
    phone: String,
    /// Any part of a name, any case (at most 100 characters).
    #[serde(default)]
    name: String,
    /// Contacts with this tag.
    #[serde(default)]
    tag: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListsPage {
    lists: Vec<ListView>,
    next_page_token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ContactsPage {
    contacts: Vec<ContactView>,
    next_page_token: String,
}

#[utoipa::path(
    post,
    path = "/api/contact-lists",
    tag = "contacts",
    request_body = NameBody,
    responses((status = 201, description = "Created", body = ListView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody))
)]
async fn http_create_list(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<ListView>), HttpError> {
    let req: NameBody = json_body(&body)?;
    let list = ContactsApi::new(state).create_list(&req.name).await?;
    Ok((StatusCode::CREATED, Json(list.into())))
}

#[utoipa::path(
    get,
    path = "/api/contact-lists",
    tag = "contacts",
    params(PageParams),
    responses((status = 200, description = "A page of lists, by name", body = ListsPage), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody))
)]
async fn http_list_lists(
    State(state): State<AppState>,
    Query(p): Query<PageParams>,
) -> HttpResult<ListsPage> {
    let (lists, next_page_token) = ContactsApi::new(state)
        .list_lists(p.page_size, &p.page_token)
        .await?;
    Ok(Json(ListsPage {
        lists: lists.into_iter().map(ListView::from).collect(),
        next_page_token,
    }))
}

#[utoipa::path(
    get,
    path = "/api/contact-lists/{id}",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact list id")),
    responses((status = 200, description = "The list", body = ListView), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody))
)]
async fn http_get_list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> HttpResult<ListView> {
    Ok(Json(ContactsApi::new(state).get_list(&id).await?.into()))
}

#[utoipa::path(
    patch,
    path = "/api/contact-lists/{id}",
    tag = "contacts",
    request_body = NameBody,
    params(("id" = String, Path, description = "The contact list id")),
    responses((status = 200, description = "Renamed", body = ListView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody))
)]
async fn http_rename_list(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> HttpResult<ListView> {
    let req: NameBody = json_body(&body)?;
    Ok(Json(
        ContactsApi::new(state)
            .rename_list(&id, &req.name)
            .await?
            .into(),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/contact-lists/{id}",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact list id")),
    responses((status = 204, description = "Deleted with its contacts"), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody), (status = 409, description = "A running campaign uses the list", body = crate::openapi::ErrorBody))
)]
async fn http_delete_list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, HttpError> {
    ContactsApi::new(state).delete_list(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/contact-lists/{id}/contacts",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact list id"), ContactParams),
    responses((status = 200, description = "A page of contacts, by number", body = ContactsPage), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody))
)]
async fn http_list_contacts(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<ContactParams>,
) -> HttpResult<ContactsPage> {
    let (contacts, next_page_token) = ContactsApi::new(state)
        .list_contacts(&id, p.page_size, &p.page_token, &p.phone, &p.name, &p.tag)
        .await?;
    Ok(Json(ContactsPage {
        contacts: contacts.into_iter().map(ContactView::from).collect(),
        next_page_token,
    }))
}

#[utoipa::path(
    post,
    path = "/api/contact-lists/{id}/contacts",
    tag = "contacts",
    request_body = ContactInput,
    params(("id" = String, Path, description = "The contact list id")),
    responses((status = 201, description = "Added", body = ContactView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody), (status = 409, description = "The number is already on the list", body = crate::openapi::ErrorBody))
)]
async fn http_add_contact(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ContactView>), HttpError> {
    let input: ContactInput = json_body(&body)?;
    let doc = ContactsApi::new(state).add_contact(&id, input).await?;
    Ok((StatusCode::CREATED, Json(doc.into())))
}

#[utoipa::path(
    get,
    path = "/api/contact-lists/{id}/contacts/{contact_id}",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact list id"), ("contact_id" = String, Path, description = "The contact id")),
    responses((status = 200, description = "The contact", body = ContactView), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody))
)]
async fn http_get_contact(
    State(state): State<AppState>,
    Path((id, contact_id)): Path<(String, String)>,
) -> HttpResult<ContactView> {
    Ok(Json(
        ContactsApi::new(state)
            .get_contact(&id, &contact_id)
            .await?
            .into(),
    ))
}

#[utoipa::path(
    patch,
    path = "/api/contact-lists/{id}/contacts/{contact_id}",
    tag = "contacts",
    request_body = PatchInput,
    params(("id" = String, Path, description = "The contact list id"), ("contact_id" = String, Path, description = "The contact id")),
    responses((status = 200, description = "Updated", body = ContactView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody))
)]
async fn http_update_contact(
    State(state): State<AppState>,
    Path((id, contact_id)): Path<(String, String)>,
    body: Bytes,
) -> HttpResult<ContactView> {
    let input: PatchInput = json_body(&body)?;
    Ok(Json(
        ContactsApi::new(state)
            .update_contact(&id, &contact_id, input)
            .await?
            .into(),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/contact-lists/{id}/contacts/{contact_id}",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact list id"), ("contact_id" = String, Path, description = "The contact id")),
    responses((status = 204, description = "Removed"), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody))
)]
async fn http_remove_contact(
    State(state): State<AppState>,
    Path((id, contact_id)): Path<(String, String)>,
) -> Result<StatusCode, HttpError> {
    ContactsApi::new(state)
        .remove_contact(&id, &contact_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/contact-lists/{id}/uploads",
    tag = "contacts",
    request_body(content = crate::openapi::UploadForm, content_type = "multipart/form-data"),
    params(("id" = String, Path, description = "The contact list id")),
    responses((status = 200, description = "Imported; rejected rows are in the report", body = UploadView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody), (status = 413, description = "Over a size, row, cell or text limit; nothing stored", body = crate::openapi::ErrorBody), (status = 503, description = "Two uploads already in progress; retry after `Retry-After`", body = crate::openapi::ErrorBody))
)]
async fn http_upload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    multipart: Multipart,
) -> HttpResult<UploadView> {
    let permit = import_permit()?;
    let api = ContactsApi::new(state);
    // Fail fast on an unknown list, before receiving the whole file.
    api.require_list(&id).await?;
    let (name, bytes, choice) = read_upload_form(multipart, api.max_upload_bytes()).await?;
    let report = api
        .upload(&id, &name, choice, Bytes::from(bytes), permit)
        .await?;
    Ok(Json(report.into()))
}

/// The file of an upload form, with the sheet and phone column asked for.
async fn read_upload_form(
    mut multipart: Multipart,
    max: usize,
) -> Result<(String, Vec<u8>, FileChoice), HttpError> {
    let mut file: Option<(String, Vec<u8>)> = None;
    let mut choice = FileChoice::default();
    let bad = |e: axum::extract::multipart::MultipartError| {
        HttpError::from(invalid("body", format!("not a multipart form: {e}")))
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("file") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if bytes.len() + chunk.len() > max {
                        return Err(ImportError::TooLarge {
                            size: (bytes.len() + chunk.len()) as u64,
                            max: max as u64,
                        }
                        .into());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = Some((name, bytes));
            }
            Some("sheet") => choice.sheet = Some(field.text().await.map_err(bad)?),
            Some("phone_column") => choice.phone_column = Some(field.text().await.map_err(bad)?),
            _ => {}
        }
    }
    let (name, bytes) = file.ok_or_else(|| invalid("file", "required (multipart field `file`)"))?;
    Ok((name, bytes, choice))
}

#[utoipa::path(
    post,
    path = "/api/contact-lists/{id}/uploads/preview",
    tag = "contacts",
    request_body(content = crate::openapi::UploadForm, content_type = "multipart/form-data"),
    params(("id" = String, Path, description = "The contact list id")),
    responses((status = 200, description = "What an upload of this file would import; no contact is stored, the file is kept for its import (`token`, for 30 minutes)", body = PreviewView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such list", body = crate::openapi::ErrorBody), (status = 413, description = "Over a size, row, cell or text limit", body = crate::openapi::ErrorBody), (status = 422, description = "No phone column, no such sheet or column, or an unreadable file", body = crate::openapi::ErrorBody), (status = 503, description = "Two uploads already in progress; retry after `Retry-After`", body = crate::openapi::ErrorBody))
)]
async fn http_preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    multipart: Multipart,
) -> HttpResult<PreviewView> {
    let permit = import_permit()?;
    let api = ContactsApi::new(state);
    api.require_list(&id).await?;
    let (name, bytes, choice) = read_upload_form(multipart, api.max_upload_bytes()).await?;
    let bytes = Bytes::from(bytes);
    let parsed = api
        .preview(&id, &name, choice, bytes.clone(), permit)
        .await?;
    // Kept only once it could be read: a refused file stores nothing.
    let pending = api.keep_pending(&id, &name, &bytes).await?;
    let mut view = PreviewView::from(parsed);
    view.token = Some(pending.token);
    view.expires_at = Some(rfc3339(pending.expires_at));
    Ok(Json(view))
}

#[utoipa::path(
    post,
    path = "/api/contact-lists/{id}/pending-uploads/{token}/preview",
    tag = "contacts",
    request_body = PendingChoice,
    params(
        ("id" = String, Path, description = "The contact list id"),
        ("token" = String, Path, description = "The preview's token")
    ),
    responses((status = 200, description = "What the kept file would import with this sheet and phone column", body = PreviewView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such list", body = crate::openapi::ErrorBody), (status = 410, description = "The kept file expired, was imported, or belongs to another list: choose the file again", body = crate::openapi::ErrorBody), (status = 422, description = "No phone column, no such sheet or column", body = crate::openapi::ErrorBody), (status = 503, description = "Two uploads already in progress; retry after `Retry-After`", body = crate::openapi::ErrorBody))
)]
async fn http_pending_preview(
    State(state): State<AppState>,
    Path((id, token)): Path<(String, String)>,
    body: Bytes,
) -> HttpResult<PreviewView> {
    let choice: PendingChoice = json_body(&body)?;
    let permit = import_permit()?;
    let api = ContactsApi::new(state);
    api.require_list(&id).await?;
    let (pending, bytes) = api.pending(&id, &token).await?;
    let parsed = api
        .preview(&id, &pending.file_name, choice.into(), bytes, permit)
        .await?;
    let mut view = PreviewView::from(parsed);
    view.token = Some(pending.token);
    view.expires_at = Some(rfc3339(pending.expires_at));
    Ok(Json(view))
}

#[utoipa::path(
    post,
    path = "/api/contact-lists/{id}/pending-uploads/{token}/import",
    tag = "contacts",
    request_body = PendingChoice,
    params(
        ("id" = String, Path, description = "The contact list id"),
        ("token" = String, Path, description = "The preview's token")
    ),
    responses((status = 200, description = "Imported; rejected rows are in the report; the kept file is dropped", body = UploadView), (status = 400, description = "Invalid input", body = crate::openapi::ErrorBody), (status = 404, description = "No such list", body = crate::openapi::ErrorBody), (status = 410, description = "The kept file expired, was imported, or belongs to another list: choose the file again", body = crate::openapi::ErrorBody), (status = 413, description = "Over a row, cell or text limit; nothing stored", body = crate::openapi::ErrorBody), (status = 422, description = "No phone column, no such sheet or column; nothing stored, the file stays kept", body = crate::openapi::ErrorBody), (status = 503, description = "Two uploads already in progress; retry after `Retry-After`", body = crate::openapi::ErrorBody))
)]
async fn http_pending_import(
    State(state): State<AppState>,
    Path((id, token)): Path<(String, String)>,
    body: Bytes,
) -> HttpResult<UploadView> {
    let choice: PendingChoice = json_body(&body)?;
    let permit = import_permit()?;
    let api = ContactsApi::new(state);
    api.require_list(&id).await?;
    let (pending, bytes) = api.pending(&id, &token).await?;
    let report = api
        .upload(&id, &pending.file_name, choice.into(), bytes, permit)
        .await?;
    // Imported: the token is spent. (Importing it twice at once would merge the same rows
    // again, changing nothing.)
    api.state
        .store
        .delete_pending_upload(&pending.token)
        .await
        .map_err(unavailable)?;
    Ok(Json(report.into()))
}

#[utoipa::path(
    get,
    path = "/api/contact-lists/{id}/uploads/{upload_id}",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact list id"), ("upload_id" = String, Path, description = "The upload id")),
    responses((status = 200, description = "The upload's report", body = UploadView), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody))
)]
async fn http_get_report(
    State(state): State<AppState>,
    Path((id, upload_id)): Path<(String, String)>,
) -> HttpResult<UploadView> {
    Ok(Json(
        ContactsApi::new(state)
            .report(&id, &upload_id)
            .await?
            .into(),
    ))
}

#[utoipa::path(
    get,
    path = "/api/contact-lists/{id}/uploads/{upload_id}/rejected.csv",
    tag = "contacts",
    params(("id" = String, Path, description = "The contact list id"), ("upload_id" = String, Path, description = "The upload id")),
    responses((status = 200, description = "The rejected rows as CSV (formula-safe)", content_type = "text/csv", body = String), (status = 404, description = "No such list or contact", body = crate::openapi::ErrorBody))
)]
async fn http_report_csv(
    State(state): State<AppState>,
    Path((id, upload_id)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let report = ContactsApi::new(state).report(&id, &upload_id).await?;
    let rows: Vec<RejectedRow> = report.rejected_rows.into_iter().map(rejected_row).collect();
    let disposition = format!("attachment; filename=\"rejected-{upload_id}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        rejected_rows_csv(&rows),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_searches_are_prefixes_with_a_plus_and_substrings_without() {
        assert_eq!(
            phone_search("+1 (415)").unwrap(),
            (Some("+1415".to_owned()), None)
        );
        assert_eq!(
            phone_search("0044 20").unwrap(),
            (Some("+4420".to_owned()), None)
        );
        assert_eq!(
            phone_search("555-0100").unwrap(),
            (None, Some("5550100".to_owned()))
        );
        assert_eq!(phone_search(" ").unwrap(), (None, None));
        assert!(phone_search("abc").is_err());
    }

    #[test]
    fn search_texts_are_capped() {
        assert!(check_search("+1 415", "Ann", "vip").is_ok());
        let long = "a".repeat(MAX_SEARCH_CHARS + 1);
        assert!(check_search("", &long, "").is_err());
        assert!(check_search("", "", &long).is_err());
        assert!(check_search(&"1".repeat(MAX_PHONE_SEARCH_CHARS + 1), "", "").is_err());
        let ApiError::FailedPrecondition(m) = search_failed(StoreError::SearchTimedOut) else {
            panic!("a timed-out search is the caller's to narrow");
        };
        assert!(m.contains("narrow"), "{m}");
    }

    #[test]
    fn contact_fields_are_checked() {
        assert!(check_email("x@example.com").unwrap().is_some());
        assert!(check_email("nope").is_err());
        assert_eq!(check_email(" ").unwrap(), None);
        assert_eq!(check_language("pt_BR").unwrap().as_deref(), Some("pt-BR"));
        assert!(check_time_zone("Mars/Base").is_err());
        assert!(check_variables(BTreeMap::from([("a.b".to_owned(), "1".to_owned())])).is_err());
        assert!(check_variables(BTreeMap::from([("plan_2".to_owned(), "1".to_owned())])).is_ok());
        assert!(list_name("  ").is_err());
        assert_eq!(list_name(" Leads ").unwrap(), "Leads");
    }

    #[test]
    fn whole_file_errors_map_to_clear_http_statuses() {
        let status = |e: ImportError| HttpError::from(e).into_response().status();
        assert_eq!(
            status(ImportError::TooLarge { size: 2, max: 1 }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(ImportError::TooManyRows { max: 1 }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(ImportError::WrongType("PDF".to_owned())),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(status(ImportError::Empty), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            status(ImportError::TooManyCells { max: 1 }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(ImportError::TooMuchText { max: 1 }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(ImportError::CellTooLong {
                row: 1,
                column: "A".to_owned(),
                max: 1
            }),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
