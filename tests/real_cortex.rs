//! The real `cortex-gateway` binary in front of the real Cortex (1.15,
//! single process, `target: all,alertmanager`, multi-tenant): its
//! distributor, query-frontend, ruler and Alertmanager are all that one
//! Cortex. Every check is on data Cortex holds, and isolation is checked
//! both through the gateway and straight at Cortex (with `X-Scope-OrgID`
//! set by the test, bypassing the gateway).
//!
//! Needs the Cortex binary: `CORTEX_BIN`, else `../shared/bin/cortex` beside
//! the project. Without it the test prints why it is skipped and passes,
//! unless `CI` is set: then it fails. The Prometheus step also needs
//! Debian's `prometheus` (see `tests/real_peers.rs`; skipped alone without
//! it, outside CI).
//!
//!     cargo test --test real_cortex -- --nocapture
//!
//! One Cortex and one gateway serve every step; the slow steps (a real
//! Prometheus remote-writing, rules being evaluated and alerts routed) run
//! on threads of their own while the quick ones run, and every step runs
//! even when another fails: the test fails at the end naming each failed
//! step.

mod common;
mod peers;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use peers::*;
use serde_json::{json, Value};

const TEAM_A: &str = "team-a";
const TEAM_B: &str = "team-b";
/// A tenant with a valid token and no data, rules or Alertmanager config.
const TEAM_C: &str = "team-c";

/// How long a rule may take to be loaded and evaluated, and its alert to
/// reach the tenant's Alertmanager (typically 3-8 s with the 1 s polls of
/// [`cortex_config`]).
const RULES: Duration = Duration::from_secs(60);
/// How long a pushed sample may take to become queryable (at once, in
/// practice: the ingester answers from memory).
const VISIBLE: Duration = Duration::from_secs(10);

/// Ids Cortex accepts (`..` it refuses itself) but the gateway must refuse.
fn invalid_tenants() -> Vec<String> {
    vec!["a b".into(), "t".repeat(151), "a|b".into(), "..".into()]
}

struct Stack {
    cortex: Cortex,
    gateway: Gateway,
    token_a: String,
    token_b: String,
    token_c: String,
}

impl Stack {
    fn gw(&self, path: &str) -> String {
        self.gateway.url(path)
    }

    /// The gateway as a Grafana datasource URL sees it.
    fn prom(&self) -> String {
        self.gateway.url("/prometheus")
    }

    fn token(&self, tenant: &str) -> &str {
        match tenant {
            TEAM_A => &self.token_a,
            TEAM_B => &self.token_b,
            TEAM_C => &self.token_c,
            other => panic!("no token for {other}"),
        }
    }

    fn bearer(&self, tenant: &str) -> Cred {
        Cred::Bearer(self.token(tenant).to_owned())
    }

    fn context(&self) -> String {
        format!("{}\n{}", self.gateway.tail(), self.cortex.tail())
    }

    /// An instant query through the gateway (`GET`, or form `POST` as
    /// Grafana sends it), with `headers` added.
    fn query_via_gateway(
        &self,
        method: &str,
        promql: &str,
        cred: &Cred,
        headers: &[(&str, &str)],
    ) -> Result<Vec<Value>, String> {
        let data = prom_api_with(
            &self.prom(),
            "/api/v1/query",
            method,
            &[("query", promql)],
            cred,
            headers,
        )?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }
}

/// The value of label `name` in each of `series` (label sets or query
/// results), sorted.
fn label_values(series: &[Value], name: &str) -> Vec<String> {
    let mut values: Vec<String> = series
        .iter()
        .map(|s| {
            let labels = if s["metric"].is_object() {
                &s["metric"]
            } else {
                s
            };
            labels[name].as_str().unwrap_or("<absent>").to_owned()
        })
        .collect();
    values.sort();
    values
}

// ---- the steps -------------------------------------------------------------

/// What each tenant configures: names no other tenant uses.
struct Fixture {
    tenant: &'static str,
    group: String,
    record: String,
    alert: String,
    receiver: String,
}

fn fixture(tenant: &'static str) -> Fixture {
    let snake = tenant.replace('-', "_");
    Fixture {
        tenant,
        group: format!("cg-group-{tenant}"),
        record: format!("cg_recorded_{snake}"),
        alert: format!("cg_always_firing_{snake}"),
        receiver: format!("cg-receiver-{tenant}"),
    }
}

impl Fixture {
    fn rule_group(&self) -> String {
        format!(
            "name: {}\ninterval: 1s\nrules:\n  - record: {}\n    expr: vector(7)\n  - alert: {}\n    expr: vector(1) > 0\n    labels:\n      cg_tenant: {}\n",
            self.group, self.record, self.alert, self.tenant
        )
    }

    fn alertmanager_config(&self) -> String {
        format!(
            "alertmanager_config: |\n  route:\n    receiver: {0}\n    group_wait: 0s\n    group_interval: 1s\n  receivers:\n    - name: {0}\ntemplate_files: {{}}\n",
            self.receiver
        )
    }
}

/// Step: each tenant writes its rule group (`POST /api/v1/rules/{ns}`) and
/// Alertmanager config (`POST /api/v1/alerts`) through the gateway, and
/// reads back its own only.
fn configs_are_written_and_read_per_tenant(stack: &Stack) {
    let tenants = [fixture(TEAM_A), fixture(TEAM_B)];
    for f in &tenants {
        let cred = stack.bearer(f.tenant);
        let posted = http(
            "POST",
            &stack.gw("/api/v1/rules/cg-ns"),
            &cred,
            &[],
            Some(("application/yaml", f.rule_group().as_bytes())),
        )
        .unwrap();
        assert_eq!(
            posted.status,
            202,
            "{}: POST /api/v1/rules/cg-ns: {}\n{}",
            f.tenant,
            posted.text(),
            stack.context()
        );
        let posted = http(
            "POST",
            &stack.gw("/api/v1/alerts"),
            &cred,
            &[],
            Some(("application/yaml", f.alertmanager_config().as_bytes())),
        )
        .unwrap();
        assert_eq!(
            posted.status,
            201,
            "{}: POST /api/v1/alerts: {}\n{}",
            f.tenant,
            posted.text(),
            stack.context()
        );
    }
    for (own, other) in [(&tenants[0], &tenants[1]), (&tenants[1], &tenants[0])] {
        let cred = stack.bearer(own.tenant);
        for path in ["/api/v1/rules/cg-ns", "/api/v1/rules"] {
            let rules = get(&stack.gw(path), &cred).unwrap();
            let text = rules.text();
            assert_eq!(rules.status, 200, "{}: GET {path}: {text}", own.tenant);
            assert!(
                text.contains(&own.group) && text.contains(&own.record),
                "{}: GET {path} lacks its own group: {text}",
                own.tenant
            );
            assert!(
                !text.contains(&other.group) && !text.contains(&other.record),
                "{}: GET {path} shows {}'s rules: {text}",
                own.tenant,
                other.tenant
            );
        }
        let config = get(&stack.gw("/api/v1/alerts"), &cred).unwrap();
        let text = config.text();
        assert_eq!(
            config.status, 200,
            "{}: GET /api/v1/alerts: {text}",
            own.tenant
        );
        assert!(text.contains(&own.receiver), "{}: {text}", own.tenant);
        assert!(
            !text.contains(&other.receiver),
            "{}: GET /api/v1/alerts shows {}'s config: {text}",
            own.tenant,
            other.tenant
        );
        // They landed in the token's tenant at Cortex, not just somewhere.
        let direct = stack
            .cortex
            .as_tenant("GET", "/api/v1/rules/cg-ns", own.tenant, None)
            .unwrap();
        assert!(
            direct.status == 200 && direct.text().contains(&own.group),
            "direct {}: {} {}",
            own.tenant,
            direct.status,
            direct.text()
        );
        let direct = stack
            .cortex
            .as_tenant("GET", "/api/v1/alerts", own.tenant, None)
            .unwrap();
        assert!(
            direct.status == 200 && direct.text().contains(&own.receiver),
            "direct {}: {} {}",
            own.tenant,
            direct.status,
            direct.text()
        );
    }
    // A tenant that configured nothing sees nothing of theirs.
    let cred = stack.bearer(TEAM_C);
    for path in ["/api/v1/rules", "/api/v1/alerts"] {
        let response = get(&stack.gw(path), &cred).unwrap();
        let text = response.text();
        assert_eq!(response.status, 404, "{TEAM_C}: GET {path}: {text}");
        assert!(!text.contains("cg-"), "{TEAM_C}: GET {path}: {text}");
    }
}

/// Step: each tenant's recording rule output is queryable in that tenant
/// only, and its always-firing alert reaches that tenant's Alertmanager
/// only (`/alertmanager/api/v2/alerts` through the gateway).
fn rules_evaluate_and_alert_per_tenant(stack: &Stack) {
    let tenants = [fixture(TEAM_A), fixture(TEAM_B)];
    let context = || stack.context();
    for f in &tenants {
        let result = wait_for(
            &format!("{}'s recorded series through the gateway", f.tenant),
            RULES,
            || {
                let result =
                    stack.query_via_gateway("GET", &f.record, &stack.bearer(f.tenant), &[])?;
                if result.is_empty() {
                    Err(format!("{} still empty", f.record))
                } else {
                    Ok(result)
                }
            },
            context,
        );
        assert_eq!(result.len(), 1, "{result:?}");
        assert_eq!(result[0]["value"][1], "7", "{result:?}");
    }
    for f in &tenants {
        let alerts = wait_for(
            &format!(
                "{}'s alert in its Alertmanager through the gateway",
                f.tenant
            ),
            RULES,
            || {
                let response = get(
                    &stack.gw("/alertmanager/api/v2/alerts"),
                    &stack.bearer(f.tenant),
                )
                .map_err(|e| e.to_string())?;
                if response.status != 200 {
                    return Err(format!("{}: {}", response.status, response.text()));
                }
                let alerts = response.json()?;
                let list = alerts.as_array().cloned().unwrap_or_default();
                if list.iter().any(|a| a["labels"]["alertname"] == f.alert) {
                    Ok(list)
                } else {
                    Err(format!("no {} yet: {alerts}", f.alert))
                }
            },
            context,
        );
        for alert in &alerts {
            assert_eq!(alert["labels"]["alertname"], f.alert, "{alerts:?}");
            assert_eq!(alert["labels"]["cg_tenant"], f.tenant, "{alerts:?}");
            assert_eq!(alert["receivers"][0]["name"], f.receiver, "{alerts:?}");
        }
    }
    // Only now that both exist: neither crossed over.
    for (own, other) in [(&tenants[0], &tenants[1]), (&tenants[1], &tenants[0])] {
        for method in ["GET", "POST"] {
            let leaked = stack
                .query_via_gateway(method, &other.record, &stack.bearer(own.tenant), &[])
                .unwrap();
            assert!(
                leaked.is_empty(),
                "{} sees {}'s recorded series through the gateway ({method}): {leaked:?}",
                own.tenant,
                other.tenant
            );
        }
        let direct = stack
            .cortex
            .series(own.tenant, r#"{__name__=~"cg_recorded_.+"}"#)
            .unwrap();
        assert_eq!(
            label_values(&direct, "__name__"),
            [own.record.as_str()],
            "recorded series in {} at Cortex",
            own.tenant
        );
        // The evaluated state, as Grafana's alerting view reads it.
        let rules = prom_api(
            &stack.prom(),
            "/api/v1/rules",
            "GET",
            &[],
            &stack.bearer(own.tenant),
        )
        .unwrap();
        let groups: Vec<&str> = rules["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert_eq!(groups, [own.group.as_str()], "{}: {rules}", own.tenant);
        let alerts = get(
            &stack.gw("/alertmanager/api/v2/alerts"),
            &stack.bearer(own.tenant),
        )
        .unwrap()
        .text();
        assert!(
            !alerts.contains(&other.alert) && !alerts.contains(&other.receiver),
            "{}'s Alertmanager holds {}'s alert: {alerts}",
            own.tenant,
            other.tenant
        );
    }
    let alerts = get(
        &stack.gw("/alertmanager/api/v2/alerts"),
        &stack.bearer(TEAM_C),
    )
    .unwrap()
    .text();
    assert!(
        !alerts.contains("cg_always_firing"),
        "{TEAM_C} (no Alertmanager config) sees alerts: {alerts}"
    );
}

/// Step: Debian's Prometheus remote-writes through the gateway with the
/// token in `authorization.credentials_file`; its series are queryable
/// through the gateway as that tenant (GET and form POST, instant and
/// range), and as no other tenant, through the gateway or at Cortex.
fn prometheus_writes_as_its_tenant(stack: &Stack, tools: &Tools, dir: &Path) {
    const JOB: &str = "cg-prometheus";
    let token_file = dir.join("team-a.token");
    std::fs::write(&token_file, format!("{}\n", stack.token_a)).unwrap();
    let writer = Prometheus::writer(
        tools,
        dir,
        JOB,
        &[RemoteWrite::new(
            "cortex-via-gateway",
            &stack.gw("/api/v1/push"),
            WriteAuth::AuthorizationFile(token_file),
        )],
    );
    let context = || format!("{}\n{}", writer.proc.tail(), stack.context());
    let selector = format!("up{{job=\"{JOB}\"}}");
    let cred_a = stack.bearer(TEAM_A);

    let up = wait_for(
        &format!("{selector} through the gateway as {TEAM_A}"),
        ARRIVAL,
        || query_nonempty(&stack.prom(), &selector, &cred_a),
        context,
    );
    let instance = format!("127.0.0.1:{}", writer.port);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["metric"]["instance"], instance.as_str());
    assert_eq!(up[0]["value"][1], "1");
    // Grafana's form POST, and the basic-auth form of the credential.
    for cred in [cred_a.clone(), Cred::basic("grafana", &stack.token_a)] {
        let result = stack
            .query_via_gateway("POST", &selector, &cred, &[])
            .unwrap();
        assert_eq!(label_values(&result, "instance"), [instance.as_str()]);
    }
    // A whole scrape arrives, not just `up`.
    wait_for(
        "a whole scrape of the writer through the gateway",
        ARRIVAL,
        || {
            query_nonempty(
                &stack.prom(),
                &format!("count({{job=\"{JOB}\"}}) > 100"),
                &cred_a,
            )
        },
        context,
    );
    let now = unix_now();
    let range = prom_api(
        &stack.prom(),
        "/api/v1/query_range",
        "POST",
        &[
            ("query", &selector),
            ("start", &(now - 120).to_string()),
            ("end", &(now + 5).to_string()),
            ("step", "1"),
        ],
        &cred_a,
    )
    .unwrap();
    assert_eq!(range["resultType"], "matrix", "{range}");
    assert_eq!(range["result"].as_array().map(Vec::len), Some(1), "{range}");

    // Not as another tenant: through the gateway, nor at Cortex.
    for tenant in [TEAM_B, TEAM_C] {
        for method in ["GET", "POST"] {
            let leaked = stack
                .query_via_gateway(
                    method,
                    &format!("{{job=\"{JOB}\"}}"),
                    &stack.bearer(tenant),
                    &[],
                )
                .unwrap();
            assert!(
                leaked.is_empty(),
                "{tenant} sees {TEAM_A}'s Prometheus ({method}): {} series",
                leaked.len()
            );
        }
        let direct = stack
            .cortex
            .series(tenant, &format!("{{job=\"{JOB}\"}}"))
            .unwrap();
        assert!(
            direct.is_empty(),
            "{TEAM_A}'s Prometheus wrote into {tenant}: {} series",
            direct.len()
        );
    }
    let direct = stack.cortex.series(TEAM_A, &selector).unwrap();
    assert_eq!(label_values(&direct, "instance"), [instance]);
    assert_eq!(
        metric_sum(
            &writer.own_metrics(),
            "prometheus_remote_storage_samples_failed_total",
            &[]
        ),
        0.0,
        "the writer lost samples\n{}",
        context()
    );
    // `writer` is stopped here, before the gateway and Cortex.
}

/// Step: a second tenant's pushes stay invisible to the first, and a
/// client-sent `X-Scope-OrgID` (or a look-alike) with team-a's token never
/// moves a series out of team-a: checked at Cortex directly.
fn pushes_stay_in_the_token_tenant_whatever_the_client_claims(stack: &Stack) {
    const METRIC: &str = "cg_pushed";
    let push_url = stack.gw("/api/v1/push");
    let push_as = |cred: &Cred, headers: &[(&str, &str)], writer: &str| {
        let body = remote_write_body(&[WriteSeries::now(
            &[("__name__", METRIC), ("writer", writer)],
            1.0,
        )]);
        let response = push(&push_url, cred, headers, &body).unwrap();
        assert!(
            (200..300).contains(&response.status),
            "push {writer}: {} {}\n{}",
            response.status,
            response.text(),
            stack.context()
        );
    };
    push_as(&stack.bearer(TEAM_B), &[], "team-b-own");
    push_as(&stack.bearer(TEAM_A), &[], "team-a-own");

    // (header name, value): the real name, other letter cases, `_` for `-`;
    // naming team-b, or a tenant of their own.
    let names = [
        "X-Scope-OrgID",
        "x-scope-orgid",
        "X_Scope_OrgID",
        "X-Scope-OrgId",
        "X-SCOPE-ORGID",
    ];
    let mut spoofs: Vec<(String, &str, String)> = Vec::new(); // (writer label, name, value)
    for (i, name) in names.iter().enumerate() {
        spoofs.push((format!("spoof-{i}-team-b"), name, TEAM_B.to_owned()));
        spoofs.push((format!("spoof-{i}-own"), name, format!("cg-spoofed-{i}")));
    }
    spoofs.push((
        "spoof-federated".into(),
        "X-Scope-OrgID",
        format!("{TEAM_A}|{TEAM_B}"),
    ));
    let cred_a = stack.bearer(TEAM_A);
    for (writer, name, value) in &spoofs {
        push_as(&cred_a, &[(name, value)], writer);
    }
    // All at once, and the real header twice.
    let mut all: Vec<(&str, &str)> = names.iter().map(|n| (*n, TEAM_B)).collect();
    all.push(("X-Scope-OrgID", "cg-spoofed-second"));
    push_as(&cred_a, &all, "spoof-all");

    let mut expected_a: Vec<String> = spoofs.iter().map(|(w, _, _)| w.clone()).collect();
    expected_a.extend(["team-a-own".to_owned(), "spoof-all".to_owned()]);
    expected_a.sort();
    // Straight at Cortex: team-b holds its own push and nothing else, no
    // tenant named by a header holds anything, and team-a holds every push
    // made with its token.
    let in_b = wait_for(
        "team-b's own push to be in team-b at Cortex",
        VISIBLE,
        || {
            let writers = label_values(&stack.cortex.series(TEAM_B, METRIC)?, "writer");
            if writers.iter().any(|w| w == "team-b-own") {
                Ok(writers)
            } else {
                Err(format!("{TEAM_B} holds {writers:?}"))
            }
        },
        || stack.context(),
    );
    assert_eq!(
        in_b,
        ["team-b-own"],
        "pushes made with {TEAM_A}'s token landed in {TEAM_B}"
    );
    let mut elsewhere: BTreeSet<String> = spoofs.iter().map(|(_, _, v)| v.clone()).collect();
    elsewhere.insert("cg-spoofed-second".into());
    elsewhere.remove(TEAM_B);
    for tenant in &elsewhere {
        let found = stack.cortex.series(tenant, METRIC).unwrap();
        assert!(
            found.is_empty(),
            "a client-sent header put a series into tenant {tenant:?}: {found:?}"
        );
    }
    wait_for(
        "every series pushed with team-a's token to be in team-a at Cortex",
        VISIBLE,
        || {
            let writers = label_values(&stack.cortex.series(TEAM_A, METRIC)?, "writer");
            if writers == expected_a {
                Ok(())
            } else {
                Err(format!("{TEAM_A} holds {writers:?}, want {expected_a:?}"))
            }
        },
        || stack.context(),
    );

    // Reads: each tenant sees its own through the gateway, whatever header
    // the client adds.
    for method in ["GET", "POST"] {
        let b = stack
            .query_via_gateway(method, METRIC, &stack.bearer(TEAM_B), &[])
            .unwrap();
        assert_eq!(label_values(&b, "writer"), ["team-b-own"], "{method}");
        for name in names {
            let a = stack
                .query_via_gateway(method, METRIC, &cred_a, &[(name, TEAM_B)])
                .unwrap();
            assert_eq!(
                label_values(&a, "writer"),
                expected_a,
                "{TEAM_A}'s token with `{name}: {TEAM_B}` ({method})"
            );
        }
        let a = stack
            .query_via_gateway(
                method,
                METRIC,
                &stack.bearer(TEAM_C),
                &[("X-Scope-OrgID", TEAM_A)],
            )
            .unwrap();
        assert!(a.is_empty(), "{TEAM_C} read {TEAM_A}'s series: {a:?}");
    }
}

/// Step: no token, a forged signature, an expired token, and tenants Cortex
/// would take but the gateway must not get `401`, and no sample of theirs
/// reaches any tenant (checked at Cortex under each claimed tenant id, and
/// team-a).
fn refused_credentials_write_nothing(stack: &Stack) {
    const METRIC: &str = "cg_refused";
    const WRONG_KEY: &[u8] = b"not-the-gateway-secret-0123456789abcdef";
    let exp = unix_now() + 3600;
    let mut cases: Vec<(String, Cred, String, &str)> = vec![
        ("no-token".into(), Cred::None, TEAM_A.into(), "no_token"),
        (
            "forged".into(),
            Cred::Bearer(sign(json!({ "tenant_id": TEAM_A, "exp": exp }), WRONG_KEY)),
            TEAM_A.into(),
            "bad_signature",
        ),
        (
            "forged-basic".into(),
            Cred::basic(
                "prometheus",
                &sign(json!({ "tenant_id": TEAM_A, "exp": exp }), WRONG_KEY),
            ),
            TEAM_A.into(),
            "bad_signature",
        ),
        (
            "expired".into(),
            Cred::Bearer(sign(
                json!({ "tenant_id": TEAM_A, "exp": unix_now() - 3600 }),
                SECRET.as_bytes(),
            )),
            TEAM_A.into(),
            "expired",
        ),
    ];
    for (i, tenant) in invalid_tenants().into_iter().enumerate() {
        let token = sign(
            json!({ "tenant_id": tenant, "exp": exp }),
            SECRET.as_bytes(),
        );
        cases.push((format!("tenant-{i}"), Cred::Bearer(token), tenant, "tenant"));
    }
    let reasons: BTreeSet<&str> = cases.iter().map(|c| c.3).collect();
    let before: Vec<(&str, f64)> = reasons
        .iter()
        .map(|r| (*r, stack.gateway.failed_auth(r)))
        .collect();

    for (case, cred, claimed, _) in &cases {
        let body = remote_write_body(&[WriteSeries::now(
            &[("__name__", METRIC), ("case", case)],
            1.0,
        )]);
        // The client names its tenant itself, too.
        for path in ["/api/v1/push", "/api/prom/push"] {
            let response = push(
                &stack.gw(path),
                cred,
                &[("X-Scope-OrgID", claimed.as_str())],
                &body,
            )
            .unwrap();
            let text = response.text();
            assert_eq!(response.status, 401, "{case} {path}: {text}");
            assert!(
                text.starts_with("No bearer token provided")
                    || text.starts_with("Invalid bearer token"),
                "{case} {path}: {text}"
            );
            assert!(
                response
                    .header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{case} {path}: {}",
                response.head
            );
        }
        let response = get(
            &format!("{}/api/v1/query?query={METRIC}", stack.prom()),
            cred,
        )
        .unwrap();
        assert_eq!(response.status, 401, "{case} query: {}", response.text());
    }
    for (reason, was) in before {
        let now = stack.gateway.failed_auth(reason);
        assert!(
            now > was,
            "cortex_gateway_failed_authentications_total{{reason=\"{reason}\"}} {was} -> {now}"
        );
    }

    // Cortex itself takes these ids (only `..` it refuses): so it is the
    // gateway that kept the samples out.
    for tenant in invalid_tenants() {
        let body =
            remote_write_body(&[WriteSeries::now(&[("__name__", "cg_control_direct")], 1.0)]);
        let direct = push(
            &stack.cortex.url("/api/v1/push"),
            &Cred::None,
            &[("X-Scope-OrgID", &tenant)],
            &body,
        )
        .unwrap();
        if tenant == ".." {
            assert_eq!(direct.status, 500, "{tenant}: {}", direct.text());
            assert!(
                direct.text().contains("invalid tenant ID"),
                "{}",
                direct.text()
            );
        } else {
            assert_eq!(
                direct.status,
                200,
                "direct push as {tenant:?}: {}",
                direct.text()
            );
            let control = stack.cortex.series(&tenant, "cg_control_direct").unwrap();
            assert_eq!(control.len(), 1, "control series in {tenant:?}");
        }
    }
    let mut tenants: Vec<String> = vec![TEAM_A.into(), TEAM_B.into(), TEAM_C.into()];
    tenants.extend(invalid_tenants());
    for tenant in &tenants {
        match stack.cortex.series(tenant, METRIC) {
            Ok(found) => assert!(
                found.is_empty(),
                "a refused request put samples into tenant {tenant:?}: {found:?}"
            ),
            // Cortex refuses to read (and write) this id at all.
            Err(e) if tenant == ".." => assert!(e.contains("invalid tenant ID"), "{e}"),
            Err(e) => panic!("{tenant:?}: {e}"),
        }
    }
}

/// Cortex's admin pages: unauthenticated at Cortex, and about every tenant.
const ADMIN_PATHS: &[&str] = &[
    "/multitenant_alertmanager/configs",
    "/multitenant_alertmanager/status",
    "/multitenant_alertmanager/ring",
    "/ruler/rule_groups",
    "/ruler/ring",
    "/ring",
    "/config",
    "/services",
    "/all_user_stats",
];

/// Step: Cortex's admin endpoints answer `404` through the gateway, even
/// with a valid token, while straight at Cortex they answer and show every
/// tenant's configuration.
fn admin_endpoints_are_not_reachable(stack: &Stack) {
    let (a, b) = (fixture(TEAM_A), fixture(TEAM_B));
    // What they would leak, seen at Cortex directly.
    let leaks = [
        (
            "/multitenant_alertmanager/configs",
            vec![a.receiver.clone(), b.receiver.clone()],
        ),
        (
            "/ruler/rule_groups",
            vec![a.record.clone(), b.record.clone(), a.alert.clone()],
        ),
        ("/all_user_stats", vec![TEAM_A.into(), TEAM_B.into()]),
    ];
    for path in ADMIN_PATHS {
        let secrets: &[String] = leaks
            .iter()
            .find(|(p, _)| p == path)
            .map_or(&[], |(_, s)| s.as_slice());
        wait_for(
            &format!("{path} to answer at Cortex, without a tenant"),
            VISIBLE,
            || {
                let response =
                    get(&stack.cortex.url(path), &Cred::None).map_err(|e| e.to_string())?;
                let text = response.text();
                match secrets.iter().find(|s| !text.contains(s.as_str())) {
                    None if response.status == 200 => Ok(()),
                    missing => Err(format!(
                        "{} (missing {missing:?}): {}",
                        response.status,
                        text.chars().take(300).collect::<String>()
                    )),
                }
            },
            || stack.context(),
        );
    }
    let mut failures = Vec::new();
    for path in ADMIN_PATHS {
        for (method, cred) in [
            ("GET", stack.bearer(TEAM_A)),
            ("GET", Cred::basic("grafana", &stack.token_b)),
            ("POST", stack.bearer(TEAM_A)),
        ] {
            let response = http(method, &stack.gw(path), &cred, &[], None).unwrap();
            let text = response.text();
            let leaked = leaks
                .iter()
                .flat_map(|(_, secrets)| secrets)
                .any(|s| s.len() > 6 && text.contains(s.as_str()));
            if response.status != 404 || leaked {
                failures.push(format!(
                    "{method} {path} with {}: {} {}",
                    cred.describe(),
                    response.status,
                    text.chars().take(200).collect::<String>()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "admin endpoints reachable through the gateway:\n{}",
        failures.join("\n")
    );
}

/// Final step, after every writer: the only tenants Cortex has samples of
/// are team-a, team-b and the direct controls of the refusal step.
fn no_other_tenant_got_samples(stack: &Stack) {
    let stats = http(
        "GET",
        &stack.cortex.url("/all_user_stats"),
        &Cred::None,
        &[("Accept", "application/json")],
        None,
    )
    .unwrap()
    .json()
    .unwrap();
    let users: BTreeSet<String> = stats
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["userID"].as_str().map(str::to_owned))
        .collect();
    let controls: BTreeSet<String> = invalid_tenants()
        .into_iter()
        .filter(|t| t != "..")
        .collect();
    let mut allowed: BTreeSet<String> = [TEAM_A.to_owned(), TEAM_B.to_owned()].into();
    allowed.extend(controls.iter().cloned());
    let unexpected: Vec<&String> = users.difference(&allowed).collect();
    assert!(
        unexpected.is_empty(),
        "Cortex holds samples of tenants nobody may write as: {unexpected:?}\n{stats}"
    );
    assert!(users.contains(TEAM_A) && users.contains(TEAM_B), "{stats}");
    for user in stats.as_array().unwrap() {
        if controls.contains(user["userID"].as_str().unwrap_or_default()) {
            assert_eq!(
                user["numSeries"], 1,
                "only the direct control series is in {user}"
            );
        }
    }
}

// ---- the test ----------------------------------------------------------------

/// Runs steps (some on threads of their own), timing each and collecting
/// failures instead of stopping at the first.
#[derive(Default)]
struct Steps {
    outcomes: Mutex<Vec<(String, Duration, Option<String>)>>,
}

impl Steps {
    fn run(&self, name: &str, step: impl FnOnce()) {
        let start = Instant::now();
        let failure = catch_unwind(AssertUnwindSafe(step)).err().map(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".into())
        });
        let took = start.elapsed();
        eprintln!(
            "[real_cortex] step `{name}`: {} in {:.1}s",
            if failure.is_none() { "ok" } else { "FAILED" },
            took.as_secs_f64()
        );
        self.outcomes
            .lock()
            .unwrap()
            .push((name.to_owned(), took, failure));
    }

    fn finish(self) {
        let outcomes = self.outcomes.into_inner().unwrap();
        let failed: Vec<String> = outcomes
            .iter()
            .filter_map(|(name, _, failure)| failure.as_ref().map(|f| format!("== {name}:\n{f}")))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} steps failed:\n{}",
            failed.len(),
            outcomes.len(),
            failed.join("\n")
        );
    }
}

#[test]
fn gateway_in_front_of_real_cortex_keeps_tenants_apart() {
    const NAME: &str = "gateway_in_front_of_real_cortex_keeps_tenants_apart";
    let Some(binary) = cortex_binary(NAME) else {
        return;
    };
    let started = Instant::now();
    let dir = TestDir::new("cortex");
    let cortex = Cortex::start(&binary, &dir.path);
    let c = cortex.base();
    let gateway = Gateway::start(
        &dir.path,
        &format!(
            "[upstreams]\ndistributor = \"{c}\"\nquery_frontend = \"{c}\"\nruler = \"{c}\"\nalertmanager = \"{c}\"\n"
        ),
    );
    let stack = Stack {
        token_a: gateway.mint(TEAM_A),
        token_b: gateway.mint(TEAM_B),
        token_c: gateway.mint(TEAM_C),
        cortex,
        gateway,
    };
    eprintln!(
        "[real_cortex] cortex and gateway up after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let steps = Steps::default();
    steps.run("ruler and Alertmanager configs are per tenant", || {
        configs_are_written_and_read_per_tenant(&stack)
    });
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let Some(tools) = tools(&format!("{NAME} (step: Prometheus remote_write)")) else {
                return;
            };
            steps.run("Prometheus writes as its tenant only", || {
                prometheus_writes_as_its_tenant(&stack, &tools, &dir.path)
            });
        });
        scope.spawn(|| {
            steps.run("rules and alerts stay in their tenant", || {
                rules_evaluate_and_alert_per_tenant(&stack)
            });
        });
        steps.run(
            "pushes stay in the token's tenant, whatever the client claims",
            || pushes_stay_in_the_token_tenant_whatever_the_client_claims(&stack),
        );
        steps.run("refused credentials write nothing", || {
            refused_credentials_write_nothing(&stack)
        });
        steps.run("admin endpoints are not reachable", || {
            admin_endpoints_are_not_reachable(&stack)
        });
    });
    steps.run("no other tenant got samples", || {
        no_other_tenant_got_samples(&stack)
    });
    eprintln!(
        "[real_cortex] all steps done after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    steps.finish();
    drop(stack); // gateway and Cortex; the Prometheus step stopped its writer
}

#[test]
fn hand_made_remote_write_bodies_decode() {
    let small = [WriteSeries::now(&[("__name__", "m")], 1.5)];
    let large = [
        WriteSeries::now(&[("job", "j"), ("__name__", "cg_metric"), ("a", "b")], 2.0),
        WriteSeries::now(
            &[
                ("__name__", "other"),
                ("instance", "x".repeat(300).as_str()),
            ],
            -1.0,
        ),
    ];
    for series in [&small[..], &large[..], &[]] {
        let raw = encode_write_request(series);
        let body = remote_write_body(series);
        assert_eq!(snappy_decode(&body).unwrap(), raw);
        let decoded = write_request(&raw).unwrap();
        let expected: Vec<Vec<(String, String)>> = series
            .iter()
            .map(|s| {
                let mut labels = s.labels.clone();
                labels.sort();
                labels
            })
            .collect();
        assert_eq!(decoded, expected);
    }
    assert!(
        encode_write_request(&small).len() < 60,
        "covers the short literal"
    );
}
