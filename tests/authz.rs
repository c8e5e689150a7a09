//! Scoped tokens through the real binary: every route family × every form of
//! the `scope` claim, with and without `auth.require_scope`; a refusal is
//! 403 with the missing scope named, and nothing is forwarded.

mod common;

use common::{raw_http, token, GatewayBuilder, Upstream};
use serde_json::{json, Value};

/// One path of each route family, with the scope it needs (`None`: a custom
/// route that declares no scope).
const ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("POST", "/api/v1/push", Some("write")),
    ("POST", "/api/prom/push", Some("write")),
    ("POST", "/otlp/v1/metrics", Some("write")),
    ("GET", "/api/v1/query", Some("read")),
    ("GET", "/prometheus/api/v1/query_range", Some("read")),
    ("GET", "/api/v1/rules", Some("rules")),
    ("POST", "/prometheus/config/v1/rules/ns", Some("rules")),
    ("GET", "/prometheus/api/v1/rules", Some("rules")),
    ("GET", "/api/v1/alerts", Some("alerts")),
    ("GET", "/alertmanager/api/v2/alerts", Some("alerts")),
    ("POST", "/loki/api/v1/push", Some("write")),
    ("GET", "/custom/thing", None),
];

const SCOPES: [&str; 4] = ["write", "read", "rules", "alerts"];

/// The forms a `scope` claim comes in, all granting `scope`.
fn scope_forms(scope: &str) -> [Value; 3] {
    [
        json!(scope),
        json!(format!("openid {scope} profile")),
        json!(["unknown", scope]),
    ]
}

struct Setup {
    upstreams: Vec<Upstream>,
    gateway: common::Gateway,
}

impl Setup {
    fn start(require_scope: bool) -> Self {
        Self::with_auth(&format!("require_scope = {require_scope}"))
    }

    /// Every route family's upstream, and a gateway with these `[auth]` lines.
    fn with_auth(auth: &str) -> Self {
        let upstreams: Vec<Upstream> = ["d", "q", "ruler", "am", "loki"]
            .into_iter()
            .map(Upstream::start)
            .collect();
        let config = format!(
            "[auth]\n{auth}\n\n[upstreams]\nloki = \"{}\"\n\n\
             [[routes]]\nprefix = \"/loki/api/v1/push\"\nupstream = \"loki\"\nscope = \"write\"\n\n\
             [[routes]]\nprefix = \"/custom\"\nupstream = \"loki\"\n",
            upstreams[4].url()
        );
        let gateway = GatewayBuilder::new(&upstreams[0].url(), &upstreams[1].url())
            .arg(&format!("-gateway.ruler.address={}", upstreams[2].url()))
            .arg(&format!(
                "-gateway.alertmanager.address={}",
                upstreams[3].url()
            ))
            .config(&config)
            .start();
        Self { upstreams, gateway }
    }

    /// The `X-Scope-OrgID` of the last request upstream `index` received
    /// (0: distributor, 1: query-frontend).
    fn last_org_id(&self, index: usize) -> Option<String> {
        self.upstreams[index]
            .last()
            .header("x-scope-orgid")
            .map(str::to_owned)
    }

    fn forwarded(&self) -> usize {
        self.upstreams.iter().map(|u| u.requests().len()).sum()
    }

    /// Sends `method path` with a token of these claims; returns the status,
    /// the body, and whether anything reached an upstream.
    fn send(&self, method: &str, path: &str, claims: Value) -> (u16, String, bool) {
        let before = self.forwarded();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            token(claims)
        );
        let response = raw_http(self.gateway.addr(), request.as_bytes()).unwrap();
        (response.status, response.text(), self.forwarded() > before)
    }
}

fn claims(scope: Option<Value>) -> Value {
    let mut claims = json!({ "tenant_id": "team-a", "version": 1 });
    if let Some(scope) = scope {
        claims["scope"] = scope;
    }
    claims
}

/// Every route × every scope × every form: allowed exactly when the route's
/// scope is the token's.
fn check_scoped_tokens(setup: &Setup) {
    for (method, path, needs) in ROUTES {
        for scope in SCOPES {
            for form in scope_forms(scope) {
                let (status, body, forwarded) =
                    setup.send(method, path, claims(Some(form.clone())));
                if *needs == Some(scope) {
                    assert_eq!(status, 200, "{method} {path} with scope {form}: {body}");
                    assert!(forwarded);
                } else {
                    assert_eq!(status, 403, "{method} {path} with scope {form}: {body}");
                    assert!(body.starts_with("Forbidden: "), "{body}");
                    if let Some(needed) = needs {
                        assert!(
                            body.contains(&format!("token lacks scope {needed}")),
                            "{body}"
                        );
                    }
                    assert!(
                        !forwarded,
                        "{method} {path} with scope {form} was forwarded"
                    );
                }
            }
        }
    }
}

#[test]
fn scoped_tokens_reach_only_their_route_families() {
    let setup = Setup::start(false);
    check_scoped_tokens(&setup);
    // Without a scope claim, a token keeps full access.
    for (method, path, _) in ROUTES {
        let (status, body, forwarded) = setup.send(method, path, claims(None));
        assert_eq!(status, 200, "{method} {path} unscoped: {body}");
        assert!(forwarded);
    }
    let (status, body, _) = setup.send("POST", "/api/v1/push", claims(Some(json!("read"))));
    assert_eq!(
        (status, body.as_str()),
        (403, "Forbidden: token lacks scope write for push routes")
    );
}

#[test]
fn require_scope_refuses_unscoped_tokens() {
    let setup = Setup::start(true);
    for (method, path, _) in ROUTES {
        let (status, body, forwarded) = setup.send(method, path, claims(None));
        assert_eq!(status, 403, "{method} {path} unscoped: {body}");
        assert!(body.contains("auth.require_scope"), "{body}");
        assert!(!forwarded);
    }
    check_scoped_tokens(&setup);
}

/// Federated tokens read across tenants (sorted, de-duplicated
/// `X-Scope-OrgID`), and are refused (403, nothing forwarded) on every
/// route that writes or belongs to one tenant.
#[test]
fn federated_tokens_only_read_and_only_where_allowed() {
    let setup = Setup::with_auth("allow_federation = true");
    let federated = json!({ "tenant_ids": ["team-c", "team-a", "team-c", "team-b"], "version": 1 });
    for (method, path, needs) in ROUTES {
        let (status, body, forwarded) = setup.send(method, path, federated.clone());
        if *needs == Some("read") {
            assert_eq!(status, 200, "{method} {path}: {body}");
            assert_eq!(
                setup.last_org_id(1).as_deref(),
                Some("team-a|team-b|team-c")
            );
        } else {
            assert_eq!(status, 403, "{method} {path}: {body}");
            assert!(
                body.contains("a token for several tenants may only read"),
                "{body}"
            );
            assert!(!forwarded, "{method} {path} was forwarded");
        }
    }
    // A list of one tenant is a plain tenant, and may push.
    let single = json!({ "tenant_ids": ["team-a", "team-a"] });
    let (status, body, _) = setup.send("POST", "/api/v1/push", single);
    assert_eq!(status, 200, "{body}");
    assert_eq!(setup.last_org_id(0).as_deref(), Some("team-a"));
    // A `|` inside one id would smuggle in another tenant.
    for bad in [
        json!({ "tenant_ids": ["team-a|team-z"] }),
        json!({ "tenant_ids": [] }),
    ] {
        let (status, _, forwarded) = setup.send("GET", "/api/v1/query", bad);
        assert_eq!(status, 401);
        assert!(!forwarded);
    }

    let closed = Setup::with_auth("");
    let only_list = json!({ "tenant_ids": ["team-a", "team-b"] });
    let (status, body, forwarded) = closed.send("GET", "/api/v1/query", only_list);
    assert_eq!(status, 401, "{body}");
    assert!(!forwarded);
}
