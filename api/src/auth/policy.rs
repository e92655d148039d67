//! Who may call what: one table for the HTTP routes under `/api` and one for the gRPC methods.
//!
//! The auth layer looks every request up here by its matched route, so a route missing from
//! the table is refused for everyone (default deny) and shows up at once in tests; a unit test
//! also compares the table with the `.route(..)` calls in the source, and the e2e test
//! `every_route_and_grpc_method_refuses_missing_bad_and_underprivileged_credentials` walks it.

use voice_agent_store::Role;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in).
    Public,
    /// A signed-in user or an API key with at least this role.
    Role(Role),
}

/// The request body a route takes, for the content-type check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (or no body).
    Json,
    /// `multipart/form-data` (file uploads).
    Multipart,
}

/// One HTTP route.
#[derive(Debug, Clone, Copy)]
pub struct RoutePolicy {
    /// Upper-case HTTP method.
    pub method: &'static str,
    /// The route template, as given to `Router::route`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What body it takes.
    pub body: BodyKind,
}

const fn rule(method: &'static str, path: &'static str, access: Access) -> RoutePolicy {
    RoutePolicy {
        method,
        path,
        access,
        body: BodyKind::Json,
    }
}

const VIEW: Access = Access::Role(Role::Viewer);
const MANAGE: Access = Access::Role(Role::Manager);
const ADMIN: Access = Access::Role(Role::Admin);

/// Every HTTP route under `/api`. Reads need a viewer, changes a manager, access control an
/// admin; the `/api/auth` routes act on the caller's own session.
pub const ROUTES: &[RoutePolicy] = &[
    // auth
    rule("POST", "/api/auth/login", Access::Public),
    rule("POST", "/api/auth/logout", VIEW),
    rule("GET", "/api/auth/me", VIEW),
    rule("POST", "/api/auth/password", VIEW),
    rule("GET", "/api/users", ADMIN),
    rule("POST", "/api/users", ADMIN),
    rule("PATCH", "/api/users/{id}", ADMIN),
    rule("GET", "/api/api-keys", ADMIN),
    rule("POST", "/api/api-keys", ADMIN),
    rule("DELETE", "/api/api-keys/{id}", ADMIN),
    rule("GET", "/api/audit", ADMIN),
    // campaigns
    rule("POST", "/api/campaigns", MANAGE),
    rule("GET", "/api/campaigns", VIEW),
    rule("GET", "/api/campaigns/{id}", VIEW),
    rule("POST", "/api/campaigns/{id}/start", MANAGE),
    rule("POST", "/api/campaigns/{id}/pause", MANAGE),
    rule("POST", "/api/campaigns/{id}/resume", MANAGE),
    rule("POST", "/api/campaigns/{id}/cancel", MANAGE),
    rule("PUT", "/api/campaigns/{id}/rate", MANAGE),
    rule("GET", "/api/campaigns/{id}/progress", VIEW),
    rule("GET", "/api/campaigns/{id}/progress/stream", VIEW),
    rule("GET", "/api/campaigns/{id}/items", VIEW),
    rule("GET", "/api/campaigns/{id}/items/{item_id}", VIEW),
    // contacts
    rule("POST", "/api/contact-lists", MANAGE),
    rule("GET", "/api/contact-lists", VIEW),
    rule("GET", "/api/contact-lists/{id}", VIEW),
    rule("PATCH", "/api/contact-lists/{id}", MANAGE),
    rule("DELETE", "/api/contact-lists/{id}", MANAGE),
    rule("GET", "/api/contact-lists/{id}/contacts", VIEW),
    rule("POST", "/api/contact-lists/{id}/contacts", MANAGE),
    rule("GET", "/api/contact-lists/{id}/contacts/{contact_id}", VIEW),
    rule(
        "GET",
        "/api/contact-lists/{id}/contacts/{contact_id}/history",
        VIEW,
    ),
    rule(
        "PATCH",
        "/api/contact-lists/{id}/contacts/{contact_id}",
        MANAGE,
    ),
    rule(
        "DELETE",
        "/api/contact-lists/{id}/contacts/{contact_id}",
        MANAGE,
    ),
    RoutePolicy {
        method: "POST",
        path: "/api/contact-lists/{id}/uploads",
        access: MANAGE,
        body: BodyKind::Multipart,
    },
    RoutePolicy {
        method: "POST",
        path: "/api/contact-lists/{id}/uploads/preview",
        access: MANAGE,
        body: BodyKind::Multipart,
    },
    rule(
        "POST",
        "/api/contact-lists/{id}/pending-uploads/{token}/preview",
        MANAGE,
    ),
    rule(
        "POST",
        "/api/contact-lists/{id}/pending-uploads/{token}/import",
        MANAGE,
    ),
    rule("GET", "/api/contact-lists/{id}/uploads/{upload_id}", VIEW),
    rule(
        "GET",
        "/api/contact-lists/{id}/uploads/{upload_id}/rejected.csv",
        VIEW,
    ),
    // conversations
    rule("GET", "/api/conversations", VIEW),
    rule("GET", "/api/conversations/{id}", VIEW),
    rule("POST", "/api/conversations/{id}/replies", MANAGE),
    rule("POST", "/api/conversations/{id}/hand-back", MANAGE),
    // calls
    rule("POST", "/api/calls", MANAGE),
    rule("GET", "/api/calls", VIEW),
    rule("GET", "/api/calls/{id}", VIEW),
    // agent profiles (versioned) and the deployment's settings: everyone reads, admins change
    rule("GET", "/api/settings", VIEW),
    rule("GET", "/api/agent-profiles", VIEW),
    rule("POST", "/api/agent-profiles", ADMIN),
    rule("GET", "/api/agent-profiles/{name}", VIEW),
    rule("PUT", "/api/agent-profiles/{name}", ADMIN),
    rule("GET", "/api/agent-profiles/{name}/versions", VIEW),
    // the AI chat: a WebSocket whose turns start and feed conversations, so a manager's role
    rule("GET", "/api/live/chat", MANAGE),
    rule("GET", "/api/live/profiles", VIEW),
    // live updates (server-sent events) and the dashboard's figures
    rule("GET", "/api/events", VIEW),
    rule("GET", "/api/stats", VIEW),
    // the API's own description: like gRPC reflection, only to callers with a credential
    rule("GET", "/api/openapi.json", VIEW),
    rule("GET", "/api/docs", VIEW),
];

/// The policy of `method` on the route template `path`. `HEAD` is answered by the `GET`
/// handler, so it has the `GET` policy.
pub fn route(method: &str, path: &str) -> Option<&'static RoutePolicy> {
    let method = if method.eq_ignore_ascii_case("HEAD") {
        "GET"
    } else {
        method
    };
    ROUTES
        .iter()
        .find(|r| r.path == path && r.method.eq_ignore_ascii_case(method))
}

/// Server reflection: any valid key (the schema is no secret to a caller, but is to the
/// internet).
pub const GRPC_REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/";

/// Every gRPC method and the role it needs.
pub const GRPC_METHODS: &[(&str, Role)] = &[
    ("/voiceagent.v1.MessagingService/SendSms", Role::Manager),
    ("/voiceagent.v1.MessagingService/GetMessage", Role::Viewer),
    ("/voiceagent.v1.MessagingService/ListMessages", Role::Viewer),
    ("/voiceagent.v1.CallService/PlaceCall", Role::Manager),
    ("/voiceagent.v1.CallService/GetCall", Role::Viewer),
    (
        "/voiceagent.v1.CampaignService/CreateCampaign",
        Role::Manager,
    ),
    ("/voiceagent.v1.CampaignService/GetCampaign", Role::Viewer),
    ("/voiceagent.v1.CampaignService/ListCampaigns", Role::Viewer),
    (
        "/voiceagent.v1.CampaignService/StartCampaign",
        Role::Manager,
    ),
    (
        "/voiceagent.v1.CampaignService/PauseCampaign",
        Role::Manager,
    ),
    (
        "/voiceagent.v1.CampaignService/ResumeCampaign",
        Role::Manager,
    ),
    (
        "/voiceagent.v1.CampaignService/CancelCampaign",
        Role::Manager,
    ),
    (
        "/voiceagent.v1.CampaignService/SetCampaignRate",
        Role::Manager,
    ),
    (
        "/voiceagent.v1.CampaignService/GetCampaignProgress",
        Role::Viewer,
    ),
    (
        "/voiceagent.v1.ContactService/CreateContactList",
        Role::Manager,
    ),
    (
        "/voiceagent.v1.ContactService/RenameContactList",
        Role::Manager,
    ),
    (
        "/voiceagent.v1.ContactService/DeleteContactList",
        Role::Manager,
    ),
    ("/voiceagent.v1.ContactService/GetContactList", Role::Viewer),
    (
        "/voiceagent.v1.ContactService/ListContactLists",
        Role::Viewer,
    ),
    ("/voiceagent.v1.ContactService/ListContacts", Role::Viewer),
    ("/voiceagent.v1.ContactService/AddContact", Role::Manager),
    ("/voiceagent.v1.ContactService/UpdateContact", Role::Manager),
    ("/voiceagent.v1.ContactService/RemoveContact", Role::Manager),
    (
        "/voiceagent.v1.ContactService/UploadContacts",
        Role::Manager,
    ),
    (
        "/voiceagent.v1.ContactService/GetImportReport",
        Role::Viewer,
    ),
];

/// The role a gRPC path needs; `None` for an unknown path (refused).
pub fn grpc_method(path: &str) -> Option<Role> {
    if path.starts_with(GRPC_REFLECTION) {
        return Some(Role::Viewer);
    }
    GRPC_METHODS
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| *r)
}

/// Whether a method changes state (and so is audited and, from a browser, needs the CSRF
/// token).
pub fn is_state_changing(method: &str) -> bool {
    !matches!(
        method.to_ascii_uppercase().as_str(),
        "GET" | "HEAD" | "OPTIONS"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;

    /// `(METHOD, path)` of every `.route("/api…", …)` call in the crate's source.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let mut found = BTreeSet::new();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("the source folder is readable") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source is readable");
                    scan(&text, &mut found);
                }
            }
        }
        found
    }

    fn scan(text: &str, found: &mut BTreeSet<(String, String)>) {
        let mut rest = text;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let call = &rest[..end];
            rest = &rest[end..];
            let Some(literal) = call.trim_start().strip_prefix('"') else {
                continue;
            };
            let Some((path, handlers)) = literal.split_once('"') else {
                continue;
            };
            if !path.starts_with("/api") {
                continue;
            }
            for m in ["get", "post", "put", "patch", "delete"] {
                let token = format!("{m}(");
                let used = handlers.match_indices(&token).any(|(i, _)| {
                    !handlers[..i]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if used {
                    found.insert((m.to_ascii_uppercase(), path.to_owned()));
                }
            }
        }
    }

    #[test]
    fn every_api_route_in_the_source_has_a_policy_and_no_policy_is_stale() {
        let in_source = routes_in_source();
        let in_table: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        let missing: Vec<_> = in_source.difference(&in_table).collect();
        let stale: Vec<_> = in_table.difference(&in_source).collect();
        assert!(
            missing.is_empty(),
            "routes without an access policy in api/src/auth/policy.rs: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "policies for routes that do not exist: {stale:?}"
        );
    }

    #[test]
    fn every_grpc_method_in_the_protos_has_a_policy_and_no_policy_is_stale() {
        let set = prost_types::FileDescriptorSet::decode(voice_agent_protos::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut in_protos = BTreeSet::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    in_protos.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        let in_table: BTreeSet<String> =
            GRPC_METHODS.iter().map(|(p, _)| (*p).to_owned()).collect();
        assert_eq!(in_protos, in_table);
    }

    #[test]
    fn reads_need_a_viewer_and_changes_at_least_a_manager() {
        for r in ROUTES {
            match r.access {
                Access::Public => assert_eq!(r.path, "/api/auth/login"),
                Access::Role(role) if r.path.starts_with("/api/auth/") => {
                    assert_eq!(role, Role::Viewer, "{}", r.path);
                }
                Access::Role(role) if is_state_changing(r.method) => {
                    assert!(role >= Role::Manager, "{} {}", r.method, r.path);
                }
                Access::Role(_) => {}
            }
        }
        assert_eq!(
            route("post", "/api/campaigns").map(|r| r.access),
            Some(Access::Role(Role::Manager))
        );
        assert!(route("GET", "/api/nowhere").is_none());
        assert_eq!(
            route("HEAD", "/api/campaigns").map(|r| r.access),
            Some(Access::Role(Role::Viewer))
        );
        assert_eq!(
            grpc_method("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some(Role::Viewer)
        );
        assert_eq!(grpc_method("/voiceagent.v1.Unknown/Do"), None);
    }
}
