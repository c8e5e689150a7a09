//! Authorization: whether a principal may use a route, decided from the
//! two alone, after authentication and before any limit or upstream is
//! touched.
//!
//! A token with a `scope` claim may use only the routes of its scopes
//! (`write`, `read`, `rules`, `alerts`); a custom route that declares no
//! scope is closed to scoped tokens. A token without `scope` may use every
//! route, unless `auth.require_scope` is set. Unknown scope words are
//! ignored, so tokens can carry scopes of other systems. Tenant federation
//! (issue 15) is another rule of this one function.

use actix_web::http::header::HeaderValue;

use crate::auth::Principal;
use crate::routes::{Access, Route};

/// Why a principal may not use a route: answered 403, since the credential
/// itself is valid (Prometheus must not take it for a bad token).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    #[error("token lacks scope {} for {}", .0.scope(), .0.family())]
    MissingScope(Access),
    #[error("token has no scope claim, which auth.require_scope requires")]
    NoScope,
    #[error("route declares no scope, so scoped tokens may not use it")]
    RouteWithoutScope,
    /// Cortex, Mimir and Loki refuse multi-tenant writes, and a rule group
    /// or alertmanager configuration belongs to one tenant.
    #[error("a token for several tenants may only read; {} need a single-tenant token", .0.map_or("custom routes", Access::family))]
    Federated(Option<Access>),
}

/// What authorization grants one request: the `X-Scope-OrgID` it is
/// forwarded with.
#[derive(Debug, Clone)]
pub struct Permit {
    pub org_id: HeaderValue,
}

/// Decides whether `principal` may use `route`; `require_scope` is
/// `auth.require_scope`.
pub fn authorize(
    principal: &Principal,
    route: &Route,
    require_scope: bool,
) -> Result<Permit, AuthzError> {
    match (&principal.scopes, route.access) {
        (None, _) if require_scope => return Err(AuthzError::NoScope),
        (None, _) => {}
        (Some(_), None) => return Err(AuthzError::RouteWithoutScope),
        (Some(scopes), Some(access)) => {
            if !scopes.iter().any(|word| word == access.scope()) {
                return Err(AuthzError::MissingScope(access));
            }
        }
    }
    if principal.tenant.count() > 1 && route.access != Some(Access::Read) {
        return Err(AuthzError::Federated(route.access));
    }
    Ok(Permit {
        org_id: principal.tenant.header_value().clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Tenant;

    fn principal(scopes: Option<&[&str]>) -> Principal {
        Principal {
            tenant: Tenant::new("team-a").unwrap(),
            version: 1,
            expires_at: None,
            scopes: scopes.map(|words| words.iter().map(|w| w.to_string()).collect()),
        }
    }

    fn route(access: Option<Access>) -> Route {
        Route {
            prefix: "/x".to_owned(),
            upstream: "u".to_owned(),
            access,
        }
    }

    #[test]
    fn scopes_open_their_route_families_only() {
        let reader = principal(Some(&["read", "unknown-word"]));
        assert!(authorize(&reader, &route(Some(Access::Read)), false).is_ok());
        assert_eq!(
            authorize(&reader, &route(Some(Access::Write)), false).unwrap_err(),
            AuthzError::MissingScope(Access::Write)
        );
        assert_eq!(
            authorize(&reader, &route(None), false).unwrap_err(),
            AuthzError::RouteWithoutScope
        );
        let unscoped = principal(None);
        for access in [Some(Access::Write), Some(Access::Alerts), None] {
            assert!(authorize(&unscoped, &route(access), false).is_ok());
            assert_eq!(
                authorize(&unscoped, &route(access), true).unwrap_err(),
                AuthzError::NoScope
            );
        }
        let empty = principal(Some(&[]));
        assert!(authorize(&empty, &route(Some(Access::Read)), false).is_err());
    }

    #[test]
    fn several_tenants_only_read() {
        let federated = Principal {
            tenant: Tenant::federated(&["team-b", "team-a", "team-b"]).unwrap(),
            ..principal(None)
        };
        let permit = authorize(&federated, &route(Some(Access::Read)), false).unwrap();
        assert_eq!(permit.org_id, "team-a|team-b");
        for access in [
            Some(Access::Write),
            Some(Access::Rules),
            Some(Access::Alerts),
            None,
        ] {
            assert_eq!(
                authorize(&federated, &route(access), false).unwrap_err(),
                AuthzError::Federated(access)
            );
        }
        let one = Principal {
            tenant: Tenant::federated(&["solo", "solo"]).unwrap(),
            ..principal(None)
        };
        assert!(authorize(&one, &route(Some(Access::Write)), false).is_ok());
        assert!(Tenant::federated(&["a|b"]).is_err());
    }

    #[test]
    fn the_refusal_names_the_scope_and_the_family() {
        assert_eq!(
            AuthzError::MissingScope(Access::Write).to_string(),
            "token lacks scope write for push routes"
        );
    }
}
