//! End to end with real peers: Debian's Prometheus (as remote_write client,
//! and with `--web.enable-remote-write-receiver` as receiver with the full
//! query API) and Alertmanager, on both sides of the real `cortex-gateway`
//! binary. Every check is on data that arrived, not on a request being seen.
//!
//! Needs `prometheus`, `promtool` and `prometheus-alertmanager` (or
//! `alertmanager`) on PATH, or PROMETHEUS_BIN, PROMTOOL_BIN, ALERTMANAGER_BIN:
//!
//!     apt-get install -y prometheus prometheus-alertmanager
//!
//! Without them each test prints why it is skipped and passes, unless CI is
//! set: then it fails. Run with `cargo test --test real_peers -- --nocapture`
//! to see how long each arrival took.
//!
//! The tests running at the same time share one receiving Prometheus; each
//! uses its own job names, tenants, gateway and writers.

mod common;
mod peers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use peers::*;
use serde_json::{json, Value};

/// A gateway config that sends Prometheus's remote_write path
/// (`/api/v1/write`) and the query API (`/api/…`, the query-frontend's
/// routes) to the receiving Prometheus, and Cortex's push path
/// (`/api/v1/push`) to `distributor`.
fn routes_to(receiver: &str, distributor: &str) -> String {
    format!(
        r#"[upstreams]
distributor = "{distributor}"
query_frontend = "{receiver}"
receiver = "{receiver}"

[[routes]]
prefix = "/api/v1/write"
upstream = "receiver"
"#
    )
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_output(command: &mut Command) -> (bool, String) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn example_configs_are_valid_for_promtool_and_show_every_credential_form() {
    let Some(tools) =
        tools("example_configs_are_valid_for_promtool_and_show_every_credential_form")
    else {
        return;
    };
    let examples = manifest_dir().join("examples");
    let mut configs: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("prometheus") && name.ends_with(".yml")
        })
        .collect();
    configs.sort();
    assert!(
        configs.len() >= 3,
        "example Prometheus configs: {configs:?}"
    );

    let mut all = String::new();
    for config in &configs {
        let (ok, output) = run_output(
            Command::new(&tools.promtool)
                .args(["check", "config"])
                .arg(config),
        );
        assert!(ok, "promtool check config {}:\n{output}", config.display());
        all.push_str(&std::fs::read_to_string(config).unwrap());
    }
    for form in [
        "authorization:",
        "credentials:",
        "bearer_token:",
        "basic_auth:",
        "password:",
    ] {
        assert!(all.contains(form), "no example uses `{form}`");
    }

    let grafana = std::fs::read_to_string(examples.join("grafana-datasource.yml")).unwrap();
    for line in [
        "httpHeaderName1: Authorization",
        "httpHeaderValue1: Bearer ",
        "basicAuthPassword:",
    ] {
        assert!(
            grafana.contains(line),
            "grafana-datasource.yml lacks `{line}`"
        );
    }

    let script = examples.join("run-local-stack.sh");
    let (ok, output) = run_output(Command::new("bash").arg("-n").arg(&script));
    assert!(ok, "bash -n {}: {output}", script.display());
}

#[test]
fn remote_write_with_bearer_legacy_bearer_token_and_basic_auth_becomes_queryable() {
    let Some(tools) =
        tools("remote_write_with_bearer_legacy_bearer_token_and_basic_auth_becomes_queryable")
    else {
        return;
    };
    let dir = TestDir::new("write-path");
    let receiver = Receiver::shared(&tools);
    let gateway = Gateway::start(&dir.path, &routes_to(&receiver.base(), &receiver.base()));
    let token = gateway.mint("write-path-tenant");

    // One Prometheus, three queues, one per credential form; each queue tags
    // what it sends, so the receiver shows which form delivered what.
    let url = gateway.url("/api/v1/write");
    let variants = [
        ("authorization", WriteAuth::Authorization(token.clone())),
        ("bearer_token", WriteAuth::BearerToken(token.clone())),
        (
            "basic_auth",
            WriteAuth::BasicAuth {
                username: "write-path-prometheus".into(),
                password: token.clone(),
            },
        ),
    ];
    let writes: Vec<RemoteWrite> = variants
        .iter()
        .map(|(variant, auth)| {
            RemoteWrite::new(variant, &url, auth.clone()).tag("auth_variant", variant)
        })
        .collect();
    let writer = Prometheus::writer(&tools, &dir.path, "write-path", &writes);
    let context = || {
        format!(
            "{}\n{}\n{}",
            writer.proc.tail(),
            gateway.tail(),
            receiver.tail()
        )
    };

    for (variant, _) in &variants {
        let up = wait_for(
            &format!("up{{job=\"write-path\"}} sent with {variant} to be queryable"),
            ARRIVAL,
            || {
                query_nonempty(
                    &receiver.base(),
                    &format!("up{{job=\"write-path\",auth_variant=\"{variant}\"}}"),
                    &Cred::None,
                )
            },
            context,
        );
        assert_eq!(up.len(), 1, "{variant}: {up:?}");
        assert_eq!(
            up[0]["metric"]["instance"],
            format!("127.0.0.1:{}", writer.port),
            "{variant}"
        );
        assert_eq!(up[0]["value"][1], "1", "{variant}");
        // Whole scrapes arrive, not just `up`: Prometheus exposes hundreds
        // of series about itself.
        wait_for(
            &format!("a whole scrape sent with {variant} to be queryable"),
            ARRIVAL,
            || {
                query_nonempty(
                    &receiver.base(),
                    &format!("count({{job=\"write-path\",auth_variant=\"{variant}\"}}) > 100"),
                    &Cred::None,
                )
            },
            context,
        );
    }

    let metrics = gateway.metrics();
    assert_eq!(
        metric_sum(&metrics, "cortex_gateway_failed_authentications_total", &[]),
        0.0,
        "no write was refused:\n{metrics}"
    );
    assert!(
        metric_sum(
            &metrics,
            "cortex_gateway_succeeded_authentications_total",
            &["tenant=\"write-path-tenant\""]
        ) >= 3.0,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(
            &writer.own_metrics(),
            "prometheus_remote_storage_samples_failed_total",
            &[]
        ),
        0.0,
        "the writer dropped no samples"
    );
}

#[test]
fn tenants_stay_isolated_and_rejected_writers_never_arrive() {
    let Some(tools) = tools("tenants_stay_isolated_and_rejected_writers_never_arrive") else {
        return;
    };
    let dir = TestDir::new("isolation");
    let receiver = Receiver::shared(&tools);
    // `/api/v1/push` goes to the recorder, which decodes every batch.
    let recorder = Recorder::start();
    let gateway = Gateway::start(&dir.path, &routes_to(&receiver.base(), &recorder.url()));
    let token_a = gateway.mint("iso-tenant-a");
    let token_b = gateway.mint("iso-tenant-b");
    let write_url = gateway.url("/api/v1/write");
    let push_url = |writer: &str| gateway.url(&format!("/api/v1/push?writer={writer}"));

    let writer_a = Prometheus::writer(
        &tools,
        &dir.path,
        "iso-a",
        &[
            RemoteWrite::new(
                "to-receiver",
                &write_url,
                WriteAuth::Authorization(token_a.clone()),
            ),
            RemoteWrite::new(
                "to-recorder",
                &push_url("iso-a"),
                WriteAuth::Authorization(token_a.clone()),
            ),
        ],
    );
    // Writer B also claims to be tenant A in a header of its own. A control
    // queue sends the same straight to the recorder, to show whether the
    // header really leaves Prometheus (Debian's 2.42 sends no `headers`).
    let writer_b = Prometheus::writer(
        &tools,
        &dir.path,
        "iso-b",
        &[
            RemoteWrite::new(
                "to-receiver",
                &write_url,
                WriteAuth::BearerToken(token_b.clone()),
            )
            .header("X-Scope-OrgID", "iso-tenant-a"),
            RemoteWrite::new(
                "to-recorder",
                &push_url("iso-b"),
                WriteAuth::BasicAuth {
                    username: "iso-b".into(),
                    password: token_b.clone(),
                },
            )
            .header("X-Scope-OrgID", "iso-tenant-a"),
            RemoteWrite::new(
                "control-straight-to-recorder",
                &format!("{}/api/v1/push?writer=control-iso-b", recorder.url()),
                WriteAuth::None,
            )
            .header("X-Scope-OrgID", "iso-tenant-a"),
        ],
    );
    // The intruder has only bad credentials: a token of the right key that
    // expired an hour ago, and one for tenant A signed with another key.
    let expired = sign(
        json!({ "tenant_id": "iso-intruder", "version": 1, "exp": unix_now() - 3600 }),
        SECRET.as_bytes(),
    );
    let forged = sign(
        json!({ "tenant_id": "iso-tenant-a", "version": 1, "exp": unix_now() + 3600 }),
        b"not-the-gateway-secret-0123456789abcdef",
    );
    let intruder = Prometheus::writer(
        &tools,
        &dir.path,
        "iso-intruder",
        &[
            RemoteWrite::new(
                "expired-to-receiver",
                &write_url,
                WriteAuth::Authorization(expired.clone()),
            )
            .tag("credential", "expired"),
            RemoteWrite::new(
                "forged-to-receiver",
                &write_url,
                WriteAuth::BearerToken(forged.clone()),
            )
            .tag("credential", "bad_signature"),
            RemoteWrite::new(
                "expired-to-recorder",
                &push_url("iso-intruder"),
                WriteAuth::Authorization(expired.clone()),
            ),
            RemoteWrite::new(
                "forged-to-recorder",
                &push_url("iso-intruder"),
                WriteAuth::BasicAuth {
                    username: "iso-intruder".into(),
                    password: forged.clone(),
                },
            ),
        ],
    );
    let context = || {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            writer_a.proc.tail(),
            writer_b.proc.tail(),
            intruder.proc.tail(),
            gateway.tail(),
            receiver.tail()
        )
    };

    // The good writers' samples arrive at the receiver...
    for job in ["iso-a", "iso-b"] {
        wait_for(
            &format!("up{{job=\"{job}\"}} to be queryable"),
            ARRIVAL,
            || {
                query_nonempty(
                    &receiver.base(),
                    &format!("up{{job=\"{job}\"}}"),
                    &Cred::None,
                )
            },
            context,
        );
    }
    // ...and at the recorder, where the batches can be looked into.
    let with_series = |writer: &str| {
        recorder
            .batches_with(&format!("writer={writer}"))
            .into_iter()
            .filter(|b| !b.series.is_empty())
            .count()
    };
    for writer in ["iso-a", "iso-b", "control-iso-b"] {
        wait_for(
            &format!("batches of {writer} at the recording upstream"),
            ARRIVAL,
            || match with_series(writer) {
                0 => Err(format!("{} batches in all", recorder.batches().len())),
                n => Ok(n),
            },
            context,
        );
    }
    // The intruder is refused, for the right reasons, and Prometheus sees it.
    wait_for(
        "the gateway to count the expired and the forged token",
        ARRIVAL,
        || {
            let (expired, forged) = (
                gateway.failed_auth("expired"),
                gateway.failed_auth("bad_signature"),
            );
            if expired >= 1.0 && forged >= 1.0 {
                Ok(())
            } else {
                Err(format!("expired={expired} bad_signature={forged}"))
            }
        },
        context,
    );
    wait_for(
        "the intruder Prometheus to count failed samples",
        ARRIVAL,
        || {
            let failed = metric_sum(
                &intruder.own_metrics(),
                "prometheus_remote_storage_samples_failed_total",
                &[],
            );
            if failed > 0.0 {
                Ok(failed)
            } else {
                Err("prometheus_remote_storage_samples_failed_total is 0".into())
            }
        },
        context,
    );
    // Let the good writers deliver once more after that: whatever the
    // intruder sent by now would have landed too, had it been let through.
    let (seen_a, seen_b) = (with_series("iso-a"), with_series("iso-b"));
    wait_for(
        "another batch from each good writer",
        ARRIVAL,
        || {
            let (a, b) = (with_series("iso-a"), with_series("iso-b"));
            if a > seen_a && b > seen_b {
                Ok(())
            } else {
                Err(format!("iso-a {seen_a} -> {a}, iso-b {seen_b} -> {b}"))
            }
        },
        context,
    );

    let intruder_series = series(&receiver.base(), r#"{job="iso-intruder"}"#, 900)
        .unwrap_or_else(|e| panic!("{e}\n{}", context()));
    assert!(
        intruder_series.is_empty(),
        "the intruder's series reached the receiver: {intruder_series:?}"
    );

    let batches = recorder.batches();
    assert!(
        batches
            .iter()
            .all(|b| !b.uri.contains("writer=iso-intruder")),
        "a batch of the intruder reached the upstream"
    );
    for batch in &batches {
        assert!(batch.decode_error.is_none(), "undecodable batch: {batch:?}");
        assert!(batch.authorization.is_none(), "Authorization was forwarded");
        if batch.uri.contains("writer=control-iso-b") {
            // Not through the gateway: whatever Prometheus sent.
            assert!(batch.jobs().iter().all(|job| job == "iso-b"));
            continue;
        }
        let (writer, tenant) = if batch.uri.contains("writer=iso-a") {
            ("iso-a", "iso-tenant-a")
        } else if batch.uri.contains("writer=iso-b") {
            ("iso-b", "iso-tenant-b")
        } else {
            panic!("unexpected batch at the recorder: {}", batch.uri);
        };
        assert_eq!(
            batch.org_ids,
            [tenant],
            "a batch of {writer} must carry exactly its own tenant"
        );
        let jobs = batch.jobs();
        assert!(
            jobs.iter().all(|job| job == writer),
            "batch of {writer} ({tenant}) carried series of jobs {jobs:?}"
        );
    }
    eprintln!(
        "[real_peers] recorder: {} batches, {} series of iso-a, {} of iso-b, none of the intruder",
        batches.len(),
        batches
            .iter()
            .filter(|b| b.uri.contains("writer=iso-a"))
            .map(|b| b.series.len())
            .sum::<usize>(),
        batches
            .iter()
            .filter(|b| b.uri.contains("writer=iso-b"))
            .map(|b| b.series.len())
            .sum::<usize>(),
    );

    let control = recorder.batches_with("writer=control-iso-b");
    if control.iter().any(|b| b.org_ids == ["iso-tenant-a"]) {
        eprintln!("[real_peers] Prometheus sent its own X-Scope-OrgID; the gateway replaced it");
    } else {
        eprintln!(
            "[real_peers] this Prometheus does not send remote_write `headers` (control batches \
             carried {:?}); the claim is made with a replayed batch instead",
            control.first().map(|b| &b.org_ids)
        );
    }
    // Replay one of writer B's real batches with its token and a claim to be
    // tenant A, in two letter cases: only the token's tenant arrives.
    let original = batches
        .iter()
        .find(|b| b.uri.contains("writer=iso-b") && !b.series.is_empty())
        .unwrap();
    let replayed = http(
        "POST",
        &push_url("replay-iso-b"),
        &Cred::Bearer(token_b.clone()),
        &[
            ("X-Scope-OrgID", "iso-tenant-a"),
            ("x-scope-orgid", "iso-tenant-a"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        Some(("application/x-protobuf", &original.body)),
    )
    .unwrap();
    assert_eq!(replayed.status, 204, "{}", replayed.text());
    let replay = recorder.batches_with("writer=replay-iso-b");
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].org_ids, ["iso-tenant-b"]);
    assert_eq!(replay[0].body, original.body, "body bytes unchanged");
    assert_eq!(replay[0].series, original.series);

    let logs = std::fs::read_to_string(&gateway.proc.log).unwrap();
    for token in [&token_a, &token_b, &expired, &forged] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(signature),
            "a token reached the gateway's log"
        );
    }
}

#[test]
fn grafana_style_queries_through_the_gateway_return_the_written_data() {
    let Some(tools) = tools("grafana_style_queries_through_the_gateway_return_the_written_data")
    else {
        return;
    };
    let dir = TestDir::new("read-path");
    let receiver = Receiver::shared(&tools);
    let gateway = Gateway::start(&dir.path, &routes_to(&receiver.base(), &receiver.base()));
    let token = gateway.mint("read-path-tenant");
    let writer = Prometheus::writer(
        &tools,
        &dir.path,
        "read-path",
        &[RemoteWrite::new(
            "gateway",
            &gateway.url("/api/v1/write"),
            WriteAuth::Authorization(token.clone()),
        )],
    );
    let context = || {
        format!(
            "{}\n{}\n{}",
            writer.proc.tail(),
            gateway.tail(),
            receiver.tail()
        )
    };
    let selector = r#"up{job="read-path"}"#;
    let instance = format!("127.0.0.1:{}", writer.port);
    // Prometheus sends only what it scrapes after replaying its WAL, so the
    // first arrival is a single, current sample; wait for a few, so that a
    // range ending at the current whole second is certain to hold some.
    wait_for(
        "three samples written to be queryable at the receiver",
        ARRIVAL,
        || {
            query_nonempty(
                &receiver.base(),
                &format!("count_over_time({selector}[5m]) >= 3"),
                &Cred::None,
            )
        },
        context,
    );

    let base = gateway.base();
    for cred in [Cred::Bearer(token.clone()), Cred::basic("grafana", &token)] {
        for method in ["GET", "POST"] {
            let how = format!("{method} with {}", cred.describe());
            let call = |endpoint: &str, params: &[(&str, &str)]| {
                prom_api(&base, endpoint, method, params, &cred)
                    .unwrap_or_else(|e| panic!("{how}: {e}\n{}", context()))
            };
            let now = unix_now();
            let (start, end) = ((now - 300).to_string(), now.to_string());

            let data = call("/api/v1/query", &[("query", selector)]);
            assert_eq!(data["resultType"], "vector", "{how}: {data}");
            let result = data["result"].as_array().unwrap();
            assert_eq!(result.len(), 1, "{how}: {data}");
            assert_eq!(result[0]["metric"]["job"], "read-path", "{how}");
            assert_eq!(result[0]["metric"]["instance"], instance.as_str(), "{how}");
            assert_eq!(result[0]["value"][1], "1", "{how}");

            let data = call(
                "/api/v1/query_range",
                &[
                    ("query", selector),
                    ("start", &start),
                    ("end", &end),
                    ("step", "1"),
                ],
            );
            assert_eq!(data["resultType"], "matrix", "{how}: {data}");
            let result = data["result"].as_array().unwrap();
            assert_eq!(result.len(), 1, "{how}: {data}");
            let values = result[0]["values"].as_array().unwrap();
            assert!(!values.is_empty(), "{how}: {data}");
            assert!(values.iter().all(|v| v[1] == "1"), "{how}: {data}");

            let data = call(
                "/api/v1/series",
                &[("match[]", selector), ("start", &start), ("end", &end)],
            );
            let found = data.as_array().unwrap();
            assert_eq!(found.len(), 1, "{how}: {data}");
            assert_eq!(
                found[0],
                json!({ "__name__": "up", "job": "read-path", "instance": instance }),
                "{how}"
            );

            let data = call(
                "/api/v1/labels",
                &[("match[]", selector), ("start", &start), ("end", &end)],
            );
            let names: Vec<&str> = data
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(names, ["__name__", "instance", "job"], "{how}");
        }
    }

    // The label-values call behind Grafana's query editor.
    let jobs = prom_api(
        &base,
        "/api/v1/label/job/values",
        "GET",
        &[("match[]", selector)],
        &Cred::Bearer(token.clone()),
    )
    .unwrap();
    assert_eq!(jobs, json!(["read-path"]));

    // Without a credential, or with a forged one: 401 and nothing else.
    let refused = get(&gateway.url("/api/v1/query?query=up"), &Cred::None).unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.text(), "No bearer token provided");
    assert!(refused
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let forged = sign(
        json!({ "tenant_id": "read-path-tenant", "version": 1 }),
        b"not-the-gateway-secret-0123456789abcdef",
    );
    let refused = post_form(
        &gateway.url("/api/v1/query"),
        &Cred::Bearer(forged),
        &form(&[("query", selector)]),
    )
    .unwrap();
    assert_eq!(refused.status, 401);
    assert!(
        refused.text().starts_with("Invalid bearer token"),
        "{}",
        refused.text()
    );
    assert!(gateway.failed_auth("no_token") >= 1.0);
    assert!(gateway.failed_auth("bad_signature") >= 1.0);

    promtool_queries_through_the_gateway(&tools, &dir.path, &gateway, &token, selector);
}

/// `promtool query instant` through the gateway: with `--http.config.file`
/// where this promtool has it, else (Debian's 2.42 has not) with the token
/// as basic-auth password in the URL, which Go's HTTP client sends as
/// `Authorization: Basic`.
fn promtool_queries_through_the_gateway(
    tools: &Tools,
    dir: &Path,
    gateway: &Gateway,
    token: &str,
    selector: &str,
) {
    let (_, help) = run_output(Command::new(&tools.promtool).args(["query", "instant", "--help"]));
    let (ok, output) = if help.contains("--http.config.file") {
        let http_config = dir.join("promtool-http.yml");
        std::fs::write(
            &http_config,
            format!("authorization:\n  type: Bearer\n  credentials: \"{token}\"\n"),
        )
        .unwrap();
        run_output(
            Command::new(&tools.promtool)
                .args(["query", "instant"])
                .arg(format!("--http.config.file={}", http_config.display()))
                .arg(gateway.base())
                .arg(selector),
        )
    } else {
        notice(&format!(
            "SKIPPED sub-check `promtool query instant --http.config.file`: this promtool \
             ({}) has no --http.config.file flag; querying with basic auth in the URL instead",
            tools.promtool
        ));
        run_output(
            Command::new(&tools.promtool)
                .args(["query", "instant"])
                .arg(format!(
                    "http://promtool:{token}@127.0.0.1:{}",
                    gateway.port
                ))
                .arg(selector),
        )
    };
    assert!(
        ok,
        "promtool query instant failed:\n{output}\n{}",
        gateway.tail()
    );
    assert!(
        output.contains(r#"job="read-path""#) && output.contains("=> 1 @["),
        "promtool printed no sample of read-path:\n{output}"
    );
}

#[test]
fn alertmanager_api_answers_through_the_gateway() {
    let Some(tools) = tools("alertmanager_api_answers_through_the_gateway") else {
        return;
    };
    let dir = TestDir::new("alertmanager");
    let alertmanager = Alertmanager::start(&tools, &dir.path, "real-peers-null");
    let am = alertmanager.url("");
    let gateway = Gateway::start(
        &dir.path,
        &format!(
            "[upstreams]\ndistributor = \"{am}\"\nquery_frontend = \"{am}\"\nalertmanager = \"{am}\"\n"
        ),
    );
    let token = gateway.mint("am-tenant");
    let context = || format!("{}\n{}", alertmanager.proc.tail(), gateway.tail());

    let direct = get(
        &alertmanager.url("/alertmanager/api/v2/status"),
        &Cred::None,
    )
    .unwrap()
    .json()
    .unwrap();
    for cred in [Cred::Bearer(token.clone()), Cred::basic("grafana", &token)] {
        let response = get(&gateway.url("/alertmanager/api/v2/status"), &cred).unwrap();
        assert_eq!(
            response.status,
            200,
            "{}: {}\n{}",
            cred.describe(),
            response.text(),
            context()
        );
        assert!(
            response
                .header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "{}",
            response.head
        );
        let status = response.json().unwrap();
        assert_eq!(status["cluster"]["status"], "disabled", "{status}");
        assert!(
            status["versionInfo"]["version"]
                .as_str()
                .is_some_and(|v| !v.is_empty()),
            "{status}"
        );
        assert!(
            status["config"]["original"]
                .as_str()
                .is_some_and(|c| c.contains("real-peers-null")),
            "{status}"
        );
        // The very Alertmanager process we started.
        assert_eq!(status["uptime"], direct["uptime"]);
        assert_eq!(status["config"], direct["config"]);
    }

    // An alert posted through the gateway is stored, and read back through it.
    let alert = json!([{
        "labels": { "alertname": "RealPeersGatewayCheck", "severity": "none" },
        "annotations": { "summary": "posted through cortex-gateway" }
    }]);
    let posted = http(
        "POST",
        &gateway.url("/alertmanager/api/v2/alerts"),
        &Cred::Bearer(token.clone()),
        &[],
        Some(("application/json", alert.to_string().as_bytes())),
    )
    .unwrap();
    assert_eq!(posted.status, 200, "{}\n{}", posted.text(), context());
    let filter = form(&[("filter", "alertname=\"RealPeersGatewayCheck\"")]);
    let alerts = wait_for(
        "the posted alert to be listed through the gateway",
        Duration::from_secs(30),
        || {
            let response = get(
                &gateway.url(&format!("/alertmanager/api/v2/alerts?{filter}")),
                &Cred::basic("grafana", &token),
            )
            .map_err(|e| e.to_string())?;
            let alerts = response.json()?;
            match alerts.as_array() {
                Some(list) if !list.is_empty() => Ok(list.clone()),
                _ => Err(format!("{}: {}", response.status, response.text())),
            }
        },
        context,
    );
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["labels"]["alertname"], "RealPeersGatewayCheck");
    assert_eq!(
        alerts[0]["annotations"]["summary"],
        "posted through cortex-gateway"
    );
    assert_eq!(alerts[0]["status"]["state"], "active");

    let refused = get(&gateway.url("/alertmanager/api/v2/status"), &Cred::None).unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(refused.text(), "No bearer token provided");
}

// ---- the quickstart ----------------------------------------------------------

/// Runs `examples/run-local-stack.sh COMMAND`, for at most `timeout`.
fn run_stack(
    env: &[(String, String)],
    command: &str,
    timeout: Duration,
    dir: &Path,
) -> (bool, String, String) {
    let script = manifest_dir().join("examples/run-local-stack.sh");
    let stdout_path = dir.join(format!("script-{command}.stdout"));
    let stderr_path = dir.join(format!("script-{command}.stderr"));
    let mut child = Command::new("bash")
        .arg(&script)
        .arg(command)
        // The mode is the test's choice, not the caller's environment's.
        .env_remove("CORTEX_BIN")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        // Files, not pipes: the processes it leaves running must not hold
        // our end open.
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "run-local-stack.sh {command} still running after {timeout:?}\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.success(),
        std::fs::read_to_string(stdout_path).unwrap(),
        std::fs::read_to_string(stderr_path).unwrap(),
    )
}

/// Gone, or a zombie nobody has reaped yet (its parent was the script).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Stops the stack if the test ends before it does.
struct StackGuard<'a> {
    env: &'a [(String, String)],
    dir: &'a Path,
    armed: bool,
}

impl Drop for StackGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let (_, out, err) = run_stack(self.env, "stop", Duration::from_secs(60), self.dir);
            eprintln!("stopped the quickstart stack after a failure:\n{out}{err}");
        }
    }
}

fn distinct_free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

#[test]
fn quickstart_script_starts_a_stack_whose_samples_arrive_and_stops_it() {
    const NAME: &str = "quickstart_script_starts_a_stack_whose_samples_arrive_and_stops_it";
    let Some(tools) = tools(NAME) else {
        return;
    };
    if !Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(!in_ci(), "{NAME}: curl is missing under CI");
        notice(&format!(
            "SKIPPED {NAME}: the script needs curl (apt-get install curl)"
        ));
        return;
    }
    let dir = TestDir::new("quickstart");
    let state = dir.join("stack");
    let ports = distinct_free_ports(3);
    let (receiver_port, gateway_port, tenant_port) = (ports[0], ports[1], ports[2]);
    let env: Vec<(String, String)> = [
        ("STACK_DIR", state.display().to_string()),
        ("STACK_RECEIVER_PORT", receiver_port.to_string()),
        ("STACK_GATEWAY_PORT", gateway_port.to_string()),
        ("STACK_TENANT_PORT", tenant_port.to_string()),
        ("STACK_TENANT", "quickstart-tenant".to_owned()),
        ("STACK_TIMEOUT", ARRIVAL.as_secs().to_string()),
        ("CORTEX_GATEWAY_BIN", gateway_binary().to_owned()),
        ("PROMETHEUS_BIN", tools.prometheus.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut guard = StackGuard {
        env: &env,
        dir: &dir.path,
        armed: true,
    };
    let logs = || {
        ["receiver", "gateway", "tenant"]
            .iter()
            .map(|name| {
                format!(
                    "---- {name}.log ----\n{}",
                    tail(&state.join(format!("{name}.log")), 25)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    let started = Instant::now();
    let (ok, stdout, stderr) =
        run_stack(&env, "start", ARRIVAL + Duration::from_secs(90), &dir.path);
    assert!(
        ok,
        "run-local-stack.sh failed:\n{stdout}\n{stderr}\n{}",
        logs()
    );
    eprintln!(
        "[real_peers] run-local-stack.sh: samples arrived after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let pids: Vec<(&str, u32)> = ["receiver", "gateway", "tenant"]
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(state.join(format!("{name}.pid")))
                .unwrap_or_else(|e| panic!("{name}.pid: {e}"));
            (name, text.trim().parse().unwrap())
        })
        .collect();
    for (name, pid) in &pids {
        assert!(
            !process_gone(*pid),
            "{name} (pid {pid}) is not running\n{}",
            logs()
        );
    }

    // The walkthrough's query, exactly as printed, answers with the samples.
    let curl = stdout
        .lines()
        .find(|line| line.starts_with("curl "))
        .unwrap_or_else(|| panic!("no curl line printed:\n{stdout}"));
    assert!(
        curl.contains(&format!("127.0.0.1:{gateway_port}")),
        "{curl}"
    );
    let (ok, answer) = run_output(Command::new("bash").arg("-c").arg(curl));
    assert!(ok, "{curl}\n{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
    let result = answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(result.len(), 1, "{answer}");
    assert_eq!(result[0]["metric"]["job"], "tenant-prometheus");
    assert_eq!(
        result[0]["metric"]["instance"],
        format!("127.0.0.1:{tenant_port}")
    );
    // They are in the receiver, and the gateway wants the token.
    let receiver = format!("http://127.0.0.1:{receiver_port}");
    query_nonempty(&receiver, r#"up{job="tenant-prometheus"}"#, &Cred::None)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let refused = get(
        &format!("http://127.0.0.1:{gateway_port}/api/v1/query?query=up"),
        &Cred::None,
    )
    .unwrap();
    assert_eq!(refused.status, 401);

    let (ok, stdout, stderr) = run_stack(&env, "stop", Duration::from_secs(60), &dir.path);
    assert!(ok, "run-local-stack.sh stop failed:\n{stdout}\n{stderr}");
    guard.armed = false;
    for (name, pid) in &pids {
        wait_for(
            &format!("{name} (pid {pid}) to be stopped"),
            Duration::from_secs(20),
            || {
                if process_gone(*pid) {
                    Ok(())
                } else {
                    Err("still running".into())
                }
            },
            || stderr.clone(),
        );
        assert!(
            !state.join(format!("{name}.pid")).exists(),
            "{name}.pid left behind"
        );
    }
}

#[test]
fn quickstart_script_in_cortex_mode_keeps_two_tenants_apart() {
    const NAME: &str = "quickstart_script_in_cortex_mode_keeps_two_tenants_apart";
    let (Some(tools), Some(cortex)) = (tools(NAME), cortex_binary(NAME)) else {
        return;
    };
    if !Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(!in_ci(), "{NAME}: curl is missing under CI");
        notice(&format!("SKIPPED {NAME}: the script needs curl"));
        return;
    }
    let dir = TestDir::new("quickstart-cortex");
    let state = dir.join("stack");
    let ports = distinct_free_ports(5);
    let (cortex_port, gateway_port, port_a, port_b) = (ports[0], ports[2], ports[3], ports[4]);
    let env: Vec<(String, String)> = [
        ("CORTEX_BIN", cortex.display().to_string()),
        ("STACK_DIR", state.display().to_string()),
        ("STACK_CORTEX_PORT", cortex_port.to_string()),
        ("STACK_CORTEX_GRPC_PORT", ports[1].to_string()),
        ("STACK_GATEWAY_PORT", gateway_port.to_string()),
        ("STACK_TENANT_PORT", port_a.to_string()),
        ("STACK_TENANT_B_PORT", port_b.to_string()),
        ("STACK_TIMEOUT", ARRIVAL.as_secs().to_string()),
        ("CORTEX_GATEWAY_BIN", gateway_binary().to_owned()),
        ("PROMETHEUS_BIN", tools.prometheus.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut guard = StackGuard {
        env: &env,
        dir: &dir.path,
        armed: true,
    };
    let names = ["tenant", "tenant-b", "gateway", "cortex"];
    let logs = || {
        names
            .iter()
            .map(|n| {
                format!(
                    "---- {n}.log ----\n{}",
                    tail(&state.join(format!("{n}.log")), 25)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (ok, stdout, stderr) =
        run_stack(&env, "start", ARRIVAL + Duration::from_secs(90), &dir.path);
    assert!(
        ok,
        "run-local-stack.sh (Cortex mode) failed:\n{stdout}\n{stderr}\n{}",
        logs()
    );
    let pids: Vec<(&str, u32)> = names
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(state.join(format!("{n}.pid"))).unwrap();
            (*n, text.trim().parse().unwrap())
        })
        .collect();
    assert!(
        pids.iter().all(|(_, pid)| !process_gone(*pid)),
        "{pids:?}\n{}",
        logs()
    );

    // What the script says each tenant sees, what its curl lines return, and
    // what Cortex holds under each tenant (asked directly): its own only.
    let (instance_a, instance_b) = (format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}"));
    for (tenant, instance) in [("team-a", &instance_a), ("team-b", &instance_b)] {
        let line = format!("{tenant} sees {instance} (its own Prometheus)");
        assert!(stdout.contains(&line), "no `{line}` in:\n{stdout}");
    }
    let curls: Vec<&str> = stdout.lines().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(curls.len(), 2, "{stdout}");
    let instances = |result: &Value| -> Vec<String> {
        let mut found: Vec<String> = result
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["metric"]["instance"].as_str().unwrap_or("").to_owned())
            .collect();
        found.sort();
        found
    };
    let cortex_base = format!("http://127.0.0.1:{cortex_port}/prometheus");
    for ((curl, tenant), instance) in curls
        .iter()
        .zip(["team-a", "team-b"])
        .zip([&instance_a, &instance_b])
    {
        let (ok, answer) = run_output(Command::new("bash").arg("-c").arg(curl));
        assert!(ok, "{curl}\n{answer}");
        let answer: Value =
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert_eq!(
            instances(&answer["data"]["result"]),
            [instance.as_str()],
            "{curl}"
        );
        let direct = prom_api_with(
            &cortex_base,
            "/api/v1/query",
            "GET",
            &[("query", r#"up{job="tenant-prometheus"}"#)],
            &Cred::None,
            &[("X-Scope-OrgID", tenant)],
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
        assert_eq!(
            instances(&direct["result"]),
            [instance.as_str()],
            "{tenant} at Cortex"
        );
    }
    let refused = get(
        &format!("http://127.0.0.1:{gateway_port}/prometheus/api/v1/query?query=up"),
        &Cred::None,
    )
    .unwrap();
    assert_eq!(refused.status, 401);

    let (ok, stdout, stderr) = run_stack(&env, "stop", Duration::from_secs(60), &dir.path);
    assert!(ok, "run-local-stack.sh stop failed:\n{stdout}\n{stderr}");
    guard.armed = false;
    for (name, pid) in &pids {
        wait_for(
            &format!("{name} (pid {pid}) to be stopped"),
            Duration::from_secs(20),
            || {
                if process_gone(*pid) {
                    Ok(())
                } else {
                    Err("still running".into())
                }
            },
            || stderr.clone(),
        );
        assert!(
            !state.join(format!("{name}.pid")).exists(),
            "{name}.pid left behind"
        );
    }
}
