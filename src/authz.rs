//! Authorization: whether a principal may use a route, decided from the
//! two alone, after authentication and before any limit or upstream is
//! touched.
//!
//! Today every authenticated tenant may use every route, as with the Go
//! gateway. Scoped tokens and tenant federation (issue 15) are rules of
//! this one function: a refusal becomes a variant of [`AuthzError`],
//! answered 403 by `error`.

use actix_web::http::header::HeaderValue;

use crate::auth::Principal;
use crate::routes::Route;

/// Why a principal may not use a route. No rule refuses anything yet.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {}

/// What authorization grants one request: the `X-Scope-OrgID` it is
/// forwarded with.
#[derive(Debug, Clone)]
pub struct Permit {
    pub org_id: HeaderValue,
}

/// Decides whether `principal` may use `route`.
pub fn authorize(principal: &Principal, _route: &Route) -> Result<Permit, AuthzError> {
    Ok(Permit {
        org_id: principal.tenant.header_value().clone(),
    })
}
