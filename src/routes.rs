//! The route table: which path prefixes are forwarded, to which upstream,
//! and what kind of access each one gives.
//!
//! Only what this table lists is ever forwarded. Prefixes match whole path
//! segments and the most specific prefix wins, so `/api/v1/push` goes to the
//! distributor while the rest of `/api` goes to the query-frontend, and
//! admin pages such as `/ring` or `/all_user_stats` are simply not reachable.
//! This module knows nothing of HTTP responses or settings files: the
//! pipeline asks it, `config` hands it the `[[routes]]` entries.

use serde::{Deserialize, Serialize};

/// The upstream names the default table routes to.
pub const DISTRIBUTOR: &str = "distributor";
pub const QUERY_FRONTEND: &str = "query_frontend";
pub const RULER: &str = "ruler";
pub const ALERTMANAGER: &str = "alertmanager";

/// Why a path is refused before routing.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Refused with 400: the upstream might read the path differently from us.
    #[error("path is not canonical: {0}")]
    NotCanonical(&'static str),
    /// Refused with 404: nothing is routed there.
    #[error("no route for this path")]
    NotFound,
    /// Refused with 405: `CONNECT` would open a tunnel past the route
    /// table, `TRACE` would echo the client's credentials back.
    #[error("method {0} is not allowed")]
    MethodNotAllowed(&'static str),
}

/// The methods [`check_method`] lets through, for the `Allow` header of a 405.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Refuses the methods that must never be forwarded, whatever the path.
pub fn check_method(method: &actix_web::http::Method) -> Result<(), RouteError> {
    match method.as_str() {
        "CONNECT" => Err(RouteError::MethodNotAllowed("CONNECT")),
        "TRACE" => Err(RouteError::MethodNotAllowed("TRACE")),
        _ => Ok(()),
    }
}

/// What a route gives access to, named as the `scope` word a token needs
/// for it: the unit that authorization decides on (a token scoped to
/// `read` may query but not push).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Pushes samples: remote_write and OTLP.
    Write,
    /// Queries.
    Read,
    /// The ruler's configuration and evaluated rules.
    Rules,
    /// The Alertmanager's configuration, alerts and silences.
    Alerts,
}

impl Access {
    /// The `scope` word that grants it.
    pub fn scope(self) -> &'static str {
        match self {
            Access::Write => "write",
            Access::Read => "read",
            Access::Rules => "rules",
            Access::Alerts => "alerts",
        }
    }

    /// The route family, for a refusal's text.
    pub fn family(self) -> &'static str {
        match self {
            Access::Write => "push routes",
            Access::Read => "query routes",
            Access::Rules => "ruler routes",
            Access::Alerts => "alertmanager routes",
        }
    }
}

/// A `[[routes]]` entry: requests under `prefix` go to upstream `upstream`;
/// a token with a `scope` claim may use it only when `scope` is set and
/// among the token's scopes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRoute {
    pub prefix: String,
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Access>,
}

/// One forwarding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Canonical path prefix, without trailing slash (`/api/v1/push`).
    pub prefix: String,
    /// Name of the upstream it goes to.
    pub upstream: String,
    /// What it gives access to; `None` for a custom route that declares no
    /// scope, which scoped tokens may not use.
    pub access: Option<Access>,
}

const DISTRIBUTOR_PREFIXES: &[&str] = &[
    "/api/v1/push",
    "/api/prom/push",
    "/otlp/v1/metrics",
    "/api/v1/otlp/v1/metrics",
];

const RULER_PREFIXES: &[&str] = &[
    "/prometheus/config/v1/rules",
    "/prometheus/api/v1/rules",
    "/prometheus/api/v1/alerts",
    "/api/v1/rules",
    "/api/prom/rules",
    "/api/prom/api/v1/rules",
    "/api/prom/api/v1/alerts",
    // Tenant-scoped; the rest of `/ruler/` (`rule_groups`, `ring`) lists
    // every tenant and is never routed.
    "/ruler/delete_tenant_config",
];

const ALERTMANAGER_PREFIXES: &[&str] = &[
    "/alertmanager",
    "/api/v1/alerts",
    "/api/prom/alertmanager",
    // Tenant-scoped; the rest of `/multitenant_alertmanager/` (`configs`,
    // `status`, `ring`) lists or changes every tenant and is never routed.
    "/multitenant_alertmanager/delete_tenant_config",
];

const QUERY_FRONTEND_PREFIXES: &[&str] = &["/api", "/prometheus"];

/// Paths the gateway answers itself; no route may shadow them.
pub const SERVICE_PATHS: &[&str] = &["/health", "/ready", "/metrics"];

/// The routes of the default table and the `[[routes]]` entries, most
/// specific first. `configured` says whether an optional upstream (ruler,
/// Alertmanager) has an address; without one its routes go to the
/// query-frontend.
pub fn routes(custom: &[CustomRoute], configured: impl Fn(&str) -> bool) -> Vec<Route> {
    let or_query_frontend = |name: &'static str| -> &'static str {
        if configured(name) {
            name
        } else {
            QUERY_FRONTEND
        }
    };
    let defaults = [
        (DISTRIBUTOR_PREFIXES, DISTRIBUTOR, Access::Write),
        (RULER_PREFIXES, or_query_frontend(RULER), Access::Rules),
        (
            ALERTMANAGER_PREFIXES,
            or_query_frontend(ALERTMANAGER),
            Access::Alerts,
        ),
        (QUERY_FRONTEND_PREFIXES, QUERY_FRONTEND, Access::Read),
    ];

    // Custom routes come first so that, at equal specificity, they replace
    // the default for the same prefix.
    let mut routes: Vec<Route> = custom
        .iter()
        .map(|r| Route {
            prefix: r.prefix.trim_end_matches('/').to_owned(),
            upstream: r.upstream.clone(),
            access: r.scope,
        })
        .collect();
    for (prefixes, upstream, access) in defaults {
        for prefix in prefixes {
            if !routes.iter().any(|r| r.prefix == *prefix) {
                routes.push(Route {
                    prefix: (*prefix).to_owned(),
                    upstream: upstream.to_owned(),
                    access: Some(access),
                });
            }
        }
    }
    // Stable: equal segment counts keep custom-before-default order.
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.matches('/').count()));
    routes
}

/// The routes, each with what the gateway resolved for it once (its
/// upstream connection details and metric handles, in the server).
pub struct RouteTable<T> {
    entries: Vec<(Route, T)>,
}

impl<T> RouteTable<T> {
    /// `routes` most specific first, as [`routes`] returns them.
    pub fn new(routes: Vec<Route>, mut resolve: impl FnMut(&Route) -> T) -> Self {
        Self {
            entries: routes
                .into_iter()
                .map(|route| {
                    let target = resolve(&route);
                    (route, target)
                })
                .collect(),
        }
    }

    /// The first (most specific) route whose prefix is the path or a
    /// whole-segment prefix of it.
    pub fn resolve(&self, path: &str) -> Option<&(Route, T)> {
        self.entries.iter().find(|(route, _)| {
            path.strip_prefix(route.prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    pub fn routes(&self) -> impl Iterator<Item = &(Route, T)> {
        self.entries.iter()
    }
}

/// Refuses paths that an upstream could resolve differently from our
/// segment-wise matching: dot segments, empty segments, encoded separators,
/// encoded dots, NUL and backslashes. A single trailing slash is allowed
/// (`/alertmanager/` is the Alertmanager UI's own address).
pub fn check_canonical(path: &str) -> Result<(), RouteError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(RouteError::NotCanonical("does not start with /"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(());
    }
    for segment in rest.split('/') {
        match segment {
            "" => return Err(RouteError::NotCanonical("empty segment")),
            "." | ".." => return Err(RouteError::NotCanonical("dot segment")),
            _ => {}
        }
    }
    let bytes = path.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'\\' => return Err(RouteError::NotCanonical("backslash")),
            0..=0x20 | 0x7f.. => return Err(RouteError::NotCanonical("control or non-ASCII byte")),
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(RouteError::NotCanonical("bad percent-encoding"))?;
                if matches!(hex, b'.' | b'/' | b'\\' | 0) {
                    return Err(RouteError::NotCanonical("encoded separator or dot"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks the `[[routes]]` entries: each names a configured upstream and a
/// usable prefix.
pub fn validate_custom_routes(
    custom: &[CustomRoute],
    upstreams: &[&str],
) -> Result<(), crate::settings::ConfigError> {
    use crate::settings::ConfigError;
    for (index, route) in custom.iter().enumerate() {
        if !upstreams.contains(&route.upstream.as_str()) {
            return Err(ConfigError::invalid(
                format!("routes[{index}].upstream"),
                format!(
                    "unknown upstream `{}` (configured: {})",
                    route.upstream,
                    upstreams.join(", ")
                ),
            ));
        }
        validate_custom_prefix(&route.prefix)
            .map_err(|message| ConfigError::invalid(format!("routes[{index}].prefix"), message))?;
    }
    Ok(())
}

/// Checks a `[[routes]]` prefix: canonical, not the root, not a path the
/// gateway serves itself.
pub fn validate_custom_prefix(prefix: &str) -> Result<(), String> {
    check_canonical(prefix).map_err(|e| format!("`{prefix}`: {e}"))?;
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err("`/` would forward every path, admin pages included".to_owned());
    }
    if trimmed.contains(['?', '#', '%', '{', '}', '*']) {
        return Err(format!("`{prefix}` must be a plain path"));
    }
    let shadows = |service: &&str| {
        service.starts_with(trimmed) && service[trimmed.len()..].is_empty()
            || trimmed.starts_with(&format!("{service}/"))
    };
    if let Some(service) = SERVICE_PATHS.iter().find(|s| shadows(s)) {
        return Err(format!(
            "`{prefix}` would shadow the gateway's own {service}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table for these optional upstreams and `[[routes]]` entries.
    fn table(configured: &[&str], custom: &[(&str, &str)]) -> RouteTable<()> {
        let custom: Vec<CustomRoute> = custom
            .iter()
            .map(|(prefix, upstream)| CustomRoute {
                prefix: prefix.to_string(),
                upstream: upstream.to_string(),
                scope: None,
            })
            .collect();
        RouteTable::new(routes(&custom, |name| configured.contains(&name)), |_| ())
    }

    fn target(table: &RouteTable<()>, path: &str) -> Option<String> {
        table.resolve(path).map(|(route, _)| route.upstream.clone())
    }

    #[test]
    fn each_route_family_has_its_access_class() {
        let table = table(&[RULER, ALERTMANAGER], &[("/loki/api/v1/push", "loki")]);
        let access = |path| table.resolve(path).and_then(|(route, _)| route.access);
        assert_eq!(access("/api/v1/push"), Some(Access::Write));
        assert_eq!(access("/otlp/v1/metrics"), Some(Access::Write));
        assert_eq!(access("/api/v1/query"), Some(Access::Read));
        assert_eq!(access("/prometheus/api/v1/series"), Some(Access::Read));
        assert_eq!(access("/api/v1/rules/ns"), Some(Access::Rules));
        assert_eq!(access("/prometheus/api/v1/alerts"), Some(Access::Rules));
        assert_eq!(access("/api/v1/alerts"), Some(Access::Alerts));
        assert_eq!(
            access("/alertmanager/api/v2/silences"),
            Some(Access::Alerts)
        );
        // A custom route declares its scope, or has none.
        assert_eq!(access("/loki/api/v1/push"), None);
        // The access class follows the route, not the upstream it falls back to.
        let fallback = super::tests::table(&[], &[]);
        assert_eq!(
            fallback
                .resolve("/api/v1/rules")
                .map(|(r, _)| (r.access, r.upstream.as_str())),
            Some((Some(Access::Rules), QUERY_FRONTEND))
        );
    }

    #[test]
    fn default_table_sends_each_path_to_its_service() {
        let routes = table(&[], &[]);
        let t = |p| target(&routes, p);
        assert_eq!(t("/api/v1/push").as_deref(), Some("distributor"));
        assert_eq!(t("/api/prom/push").as_deref(), Some("distributor"));
        assert_eq!(t("/otlp/v1/metrics").as_deref(), Some("distributor"));
        assert_eq!(t("/api/v1/otlp/v1/metrics").as_deref(), Some("distributor"));
        assert_eq!(t("/api/v1/query").as_deref(), Some("query_frontend"));
        assert_eq!(
            t("/prometheus/api/v1/query_range").as_deref(),
            Some("query_frontend")
        );
        // Without ruler/alertmanager upstreams, their routes fall back.
        assert_eq!(
            t("/prometheus/api/v1/rules").as_deref(),
            Some("query_frontend")
        );
        assert_eq!(
            t("/alertmanager/api/v2/status").as_deref(),
            Some("query_frontend")
        );
        assert_eq!(t("/api"), Some("query_frontend".into()));
        for unrouted in [
            "/",
            "/ring",
            "/all_user_stats",
            "/apifoo",
            "/api-v1",
            "/config",
            "/flush",
        ] {
            assert_eq!(t(unrouted), None, "{unrouted}");
        }
    }

    #[test]
    fn optional_upstreams_take_their_routes() {
        let routes = table(&[RULER, ALERTMANAGER], &[]);
        let t = |p| target(&routes, p);
        assert_eq!(
            t("/prometheus/config/v1/rules/ns").as_deref(),
            Some("ruler")
        );
        assert_eq!(t("/api/prom/api/v1/alerts").as_deref(), Some("ruler"));
        assert_eq!(t("/prometheus/api/v1/alerts").as_deref(), Some("ruler"));
        assert_eq!(t("/api/v1/alerts").as_deref(), Some("alertmanager"));
        assert_eq!(t("/alertmanager").as_deref(), Some("alertmanager"));
        assert_eq!(
            t("/multitenant_alertmanager/delete_tenant_config").as_deref(),
            Some("alertmanager")
        );
        assert_eq!(t("/ruler/delete_tenant_config").as_deref(), Some("ruler"));
        // Everything else below them lists or changes every tenant.
        for admin in [
            "/multitenant_alertmanager/status",
            "/multitenant_alertmanager/configs",
            "/multitenant_alertmanager/ring",
            "/multitenant_alertmanager",
            "/ruler/rule_groups",
            "/ruler/ring",
            "/ruler",
        ] {
            assert_eq!(t(admin), None, "{admin}");
        }
        assert_eq!(t("/api/v1/alertsfoo").as_deref(), Some("query_frontend"));
    }

    #[test]
    fn custom_routes_win_at_equal_or_greater_specificity() {
        let routes = table(
            &["loki"],
            &[
                ("/loki/api/v1/push", "loki"),
                ("/api/v1/push", "loki"),
                ("/api/v1/write/", "loki"),
            ],
        );
        let t = |p| target(&routes, p);
        assert_eq!(t("/loki/api/v1/push").as_deref(), Some("loki"));
        assert_eq!(t("/api/v1/push").as_deref(), Some("loki"));
        assert_eq!(t("/api/v1/write").as_deref(), Some("loki"));
        assert_eq!(t("/loki/api/v1/query"), None);
        assert_eq!(
            routes
                .routes()
                .filter(|(r, _)| r.prefix == "/api/v1/push")
                .count(),
            1
        );
    }

    #[test]
    fn canonical_paths_pass() {
        for ok in [
            "/",
            "/api/v1/push",
            "/alertmanager/",
            "/api/v1/label/job/values",
            "/a%20b",
            "/api/v1/query%3Fx",
        ] {
            assert_eq!(check_canonical(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn non_canonical_paths_are_refused() {
        for bad in [
            "",
            "api",
            "//api",
            "/api//v1",
            "/api/./v1",
            "/api/../ring",
            "/..",
            "/api/v1/..",
            "/api/%2e%2e/ring",
            "/api%2Fv1",
            "/api%2fv1",
            "/api/%2E/x",
            "/a%00b",
            "/a%5cb",
            "/a\\b",
            "/a%zz",
            "/a%4",
            "/a b",
            "/api/v1/push//",
        ] {
            assert!(
                matches!(check_canonical(bad), Err(RouteError::NotCanonical(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn custom_prefixes_are_checked() {
        assert!(validate_custom_prefix("/loki/api/v1/push").is_ok());
        assert!(validate_custom_prefix("/healthz").is_ok());
        for bad in ["/", "", "loki", "/health", "/metrics/x", "/a/../b", "/a{b}"] {
            assert!(validate_custom_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
