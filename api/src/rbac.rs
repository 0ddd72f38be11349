//! Who may call what: one table of every route and the roles allowed on it, enforced by one
//! middleware before any handler runs (handlers still check ownership: a resource of another
//! user is a 404, never a 403, so its existence does not leak). A route missing from the table
//! is refused, and a test checks the table against the OpenAPI document.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use codex32_shared::domain::Role;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::limits;
use crate::state::AppState;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials (log in, refresh, health, the API's documents).
    Public,
    /// Any authenticated caller; reads return only what the caller may see.
    Read,
    /// Creating, changing, running, cancelling: not viewers.
    Write,
    /// Users, the audit log, pools and workers' drains.
    Admin,
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::Read => true,
            Access::Write => role.can_write(),
            Access::Admin => role == Role::Admin,
        }
    }

    fn denial(self) -> &'static str {
        match self {
            Access::Admin => "only admins may do this",
            _ => "this role is read-only: viewers cannot create, change or run anything",
        }
    }
}

use Access::{Admin, Public, Read, Write};

/// Every route: method, path template, access.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/refresh", Public),
    ("POST", "/api/v1/auth/logout", Public),
    ("POST", "/api/v1/auth/password", Read),
    ("POST", "/api/v1/auth/register", Public),
    ("POST", "/api/v1/auth/password-reset", Public),
    ("POST", "/api/v1/auth/password-reset/confirm", Public),
    ("GET", "/api/v1/auth/oauth/providers", Public),
    ("GET", "/api/v1/auth/oauth/{provider}/start", Public),
    ("GET", "/api/v1/auth/oauth/{provider}/callback", Public),
    ("POST", "/api/v1/invites", Admin),
    ("GET", "/api/v1/auth/me", Read),
    ("GET", "/api/v1/users", Admin),
    ("POST", "/api/v1/users", Admin),
    ("GET", "/api/v1/audit", Admin),
    ("GET", "/api/v1/api-keys", Read),
    ("POST", "/api/v1/api-keys", Write),
    ("DELETE", "/api/v1/api-keys/{id}", Write),
    ("GET", "/api/v1/bots", Read),
    ("POST", "/api/v1/bots", Write),
    ("GET", "/api/v1/bots/{id}", Read),
    ("PATCH", "/api/v1/bots/{id}", Write),
    ("DELETE", "/api/v1/bots/{id}", Write),
    ("GET", "/api/v1/bots/{id}/versions", Read),
    ("POST", "/api/v1/bots/{id}/pause", Write),
    ("POST", "/api/v1/bots/{id}/resume", Write),
    ("POST", "/api/v1/bots/{id}/run-now", Write),
    ("GET", "/api/v1/bots/{id}/service", Read),
    ("POST", "/api/v1/bots/{id}/service/start", Write),
    ("POST", "/api/v1/bots/{id}/service/stop", Write),
    ("POST", "/api/v1/bots/{id}/service/restart", Write),
    ("POST", "/api/v1/bots/{id}/executions", Write),
    ("GET", "/api/v1/bots/{id}/webhooks", Read),
    ("POST", "/api/v1/bots/{id}/webhooks", Write),
    ("DELETE", "/api/v1/bots/{id}/webhooks/{hook_id}", Write),
    ("POST", "/api/v1/hooks/{id}/{token}", Public),
    ("GET", "/api/v1/bots/{id}/secrets", Read),
    ("PUT", "/api/v1/bots/{id}/secrets/{name}", Write),
    ("DELETE", "/api/v1/bots/{id}/secrets/{name}", Write),
    ("GET", "/api/v1/secrets", Read),
    ("PUT", "/api/v1/secrets/{name}", Write),
    ("DELETE", "/api/v1/secrets/{name}", Write),
    ("POST", "/api/v1/bots/{id}/executions/batch", Write),
    ("GET", "/api/v1/executions", Read),
    ("GET", "/api/v1/executions/{id}", Read),
    ("GET", "/api/v1/executions/{id}/logs", Read),
    ("GET", "/api/v1/executions/{id}/timeline", Read),
    ("POST", "/api/v1/executions/{id}/cancel", Write),
    ("POST", "/api/v1/executions/{id}/replay", Write),
    ("GET", "/api/v1/workers", Read),
    ("POST", "/api/v1/workers/{id}/drain", Admin),
    ("GET", "/api/v1/queues", Read),
    ("GET", "/api/v1/pools", Read),
    ("PUT", "/api/v1/pools/{name}", Admin),
    ("GET", "/api/v1/ws", Read),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/api/v1/docs", Public),
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Public),
];

/// Probed by orchestrators and scrapers many times a minute: never rate-limited.
const UNLIMITED: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The access a route needs; None for a route the table does not know. (Looked up on every
/// request: the table is indexed once.)
pub fn access_for(method: &Method, path: &str) -> Option<Access> {
    static INDEX: std::sync::LazyLock<std::collections::HashMap<(&str, &str), Access>> =
        std::sync::LazyLock::new(|| ROUTES.iter().map(|(m, p, a)| ((*m, *p), *a)).collect());
    INDEX.get(&(method.as_str(), path)).copied()
}

/// Authenticates the caller of a non-public route and checks the table; the caller is kept in
/// the request for the handler.
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    let Some(access) = access_for(req.method(), &path) else {
        let method = req.method().clone();
        return ApiError::internal(format!("{method} {path} has no entry in the access table"))
            .into_response();
    };
    let (mut parts, body) = req.into_parts();
    let ip = limits::client_ip(&parts);
    if access == Access::Public {
        if !UNLIMITED.contains(&path.as_str())
            && let Err(limited) = limits::check_request(&state, None, ip.as_deref()).await
        {
            return limited;
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if !access.allows(caller.role) {
        return ApiError::forbidden(access.denial()).into_response();
    }
    if let Err(limited) = limits::check_request(&state, Some(&caller), ip.as_deref()).await {
        return limited;
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented route is in the table, and the table names no route that does not exist.
    #[test]
    fn the_table_and_the_openapi_document_list_the_same_routes() {
        let (_, doc) = crate::openapi::router().split_for_parts();
        let mut documented = vec![];
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ];
            for (method, present) in methods {
                if present {
                    documented.push(format!("{method} {path}"));
                }
            }
        }
        let tabled: Vec<String> = ROUTES.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
        let missing: Vec<_> = documented.iter().filter(|r| !tabled.contains(r)).collect();
        let stale: Vec<_> = tabled.iter().filter(|r| !documented.contains(r)).collect();
        assert!(
            missing.is_empty(),
            "routes without access rules: {missing:?}"
        );
        assert!(
            stale.is_empty(),
            "rules for routes that do not exist: {stale:?}"
        );
    }

    #[test]
    fn viewers_only_read_and_only_admins_administer() {
        for (method, path, access) in ROUTES {
            let viewer = access.allows(Role::Viewer);
            assert_eq!(viewer, matches!(access, Public | Read), "{method} {path}");
            assert!(access.allows(Role::Admin), "{method} {path}");
            assert_eq!(
                access.allows(Role::User),
                access.allows(Role::ApiUser),
                "{method} {path}"
            );
        }
    }
}
