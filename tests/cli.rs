//! The commands and the configuration sources, through the real binary.

mod common;

use std::process::Output;

use common::*;

const UPSTREAMS: [(&str, &str); 2] = [
    (
        "CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR",
        "http://distributor:8080",
    ),
    (
        "CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND",
        "http://query-frontend:8080",
    ),
];

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    command()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("cortex-gateway-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

#[actix_rt::test]
async fn token_prints_only_a_token_the_gateway_accepts() {
    let output = run(
        &[
            "token",
            "--tenant",
            "team-z",
            "--version",
            "3",
            "--expires-in",
            "1h",
            "--algorithm",
            "HS512",
        ],
        &[
            UPSTREAMS[0],
            UPSTREAMS[1],
            ("CORTEX_GATEWAY__AUTH__JWT_SECRET", SECRET),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let token = printed.trim_end();
    assert_eq!(printed.lines().count(), 1);
    assert_eq!(token.split('.').count(), 3);

    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS512);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["tenant_id"], "team-z");
    assert_eq!(claims["version"], 3);
    let exp = claims["exp"].as_u64().unwrap();
    assert!((now() + 3500..=now() + 3700).contains(&exp), "exp {exp}");

    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let response = client()
        .get(gateway.url("/api/v1/labels"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("team-z"));
}

#[test]
fn token_refuses_an_invalid_tenant() {
    let output = run(
        &["token", "--tenant", "a/b", "-gateway.auth.jwt-secret=s"],
        &UPSTREAMS,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("--tenant: "),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn check_config_redacts_secrets_and_shows_the_effective_values() {
    let output = run(
        &[
            "check-config",
            "-gateway.auth.jwt-secret=hunter2-very-secret",
            "-server.http-listen-port",
            "9999",
        ],
        &UPSTREAMS,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("jwt_secret = \"<redacted>\""), "{text}");
    assert!(text.contains("http_listen_port = 9999"), "{text}");
    assert!(
        text.contains("distributor = \"http://distributor:8080\""),
        "{text}"
    );
}

#[test]
fn check_config_names_the_secret_file_in_use_without_its_keys() {
    let secrets = temp_file(
        "secrets",
        "new-key-0123456789abcdef\nold-key-0123456789abcdef\n",
    );
    let output = run(
        &["check-config"],
        &[
            UPSTREAMS[0],
            UPSTREAMS[1],
            (
                "CORTEX_GATEWAY__AUTH__JWT_SECRET_FILE",
                secrets.to_str().unwrap(),
            ),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(&format!("jwt_secret_file = \"{}\"", secrets.display())),
        "{text}"
    );
    assert!(
        !text.contains("jwt_secret = "),
        "no secret of its own: {text}"
    );
    assert!(!text.contains("-key-0123456789abcdef"), "{text}");
    let _ = std::fs::remove_file(secrets);
}

#[test]
fn precedence_is_flags_then_env_then_file_then_defaults() {
    let file = temp_file(
        "precedence.toml",
        "[server]\nhttp_listen_port = 1111\ngraceful_shutdown_timeout = \"7s\"\n[auth]\njwt_secret = \"file-secret\"\n",
    );
    let file = file.to_str().unwrap();
    let port_of = |output: &Output| {
        stdout(output)
            .lines()
            .find_map(|l| l.strip_prefix("http_listen_port = ").map(str::to_owned))
            .unwrap()
    };
    let env_port = [
        UPSTREAMS[0],
        UPSTREAMS[1],
        ("CORTEX_GATEWAY__SERVER__HTTP_LISTEN_PORT", "2222"),
    ];
    let flag = run(
        &[
            "check-config",
            "--config",
            file,
            "--server.http-listen-port=3333",
        ],
        &env_port,
    );
    assert_eq!(port_of(&flag), "3333");
    let env = run(&["check-config", "--config", file], &env_port);
    assert_eq!(port_of(&env), "2222");
    let from_file = run(&["check-config", "--config", file], &UPSTREAMS);
    assert_eq!(port_of(&from_file), "1111");
    assert!(stdout(&from_file).contains("graceful_shutdown_timeout = \"7s\""));
    let via_env_var = run(
        &["check-config"],
        &[UPSTREAMS[0], UPSTREAMS[1], ("CORTEX_GATEWAY_CONFIG", file)],
    );
    assert_eq!(port_of(&via_env_var), "1111");
    let defaults = run(&["check-config", "-gateway.auth.jwt-secret=s"], &UPSTREAMS);
    assert_eq!(port_of(&defaults), "80");
}

#[test]
fn configuration_errors_are_one_line_naming_the_key_and_exit_1() {
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], UPSTREAMS.to_vec(), "auth.jwt_secret: must be set (flag -gateway.auth.jwt-secret, env CORTEX_GATEWAY__AUTH__JWT_SECRET"),
        (vec!["-gateway.auth.jwt-secret="], UPSTREAMS.to_vec(), "auth.jwt_secret: must be set"),
        (vec!["-gateway.auth.jwt-secret=s"], vec![UPSTREAMS[1]], "upstreams.distributor: must be set"),
        (vec!["-gateway.auth.jwt-secret=s", "-gateway.distributor.address=distributor:8080"], vec![UPSTREAMS[1]], "upstreams.distributor: "),
        (vec!["-gateway.auth.jwt-secret=s", "-gateway.ruler.address=ftp://r"], UPSTREAMS.to_vec(), "upstreams.ruler: "),
        (vec!["-gateway.auth.jwt-secret=s", "-server.graceful-shutdown-timeout=soon"], UPSTREAMS.to_vec(), "server.graceful_shutdown_timeout: "),
        (vec!["-gateway.auth.jwt-secret=s", "-log.level=loud"], UPSTREAMS.to_vec(), "log.level: "),
    ];
    for (args, env, expected) in cases {
        let mut full = vec!["check-config"];
        full.extend(args.iter().copied());
        let output = run(&full, &env);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with(expected), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }

    let routes = temp_file(
        "routes.toml",
        "[[routes]]\nprefix = \"/loki/api/v1/push\"\nupstream = \"loki\"\n",
    );
    let output = run(
        &[
            "--config",
            routes.to_str().unwrap(),
            "-gateway.auth.jwt-secret=s",
        ],
        &UPSTREAMS,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("routes[0].upstream: unknown upstream `loki`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_gateway_serves_with_go_flags_only() {
    let upstream = Upstream::start("d");
    let port = free_port();
    let mut child = command()
        .args([
            &format!("-gateway.distributor.address={}", upstream.url()),
            "--gateway.query-frontend.address",
            &upstream.url(),
            "-gateway.auth.jwt-secret",
            SECRET,
            "-server.http-listen-address=127.0.0.1",
            &format!("--server.http-listen-port={port}"),
            "-server.grpc-listen-port=9095",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let request = format!(
        "POST /api/v1/push HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        tenant_token("flags")
    );
    let mut status = 0;
    for _ in 0..200 {
        if let Ok(response) = raw_http(addr, request.as_bytes()) {
            status = response.status;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert_eq!(status, 200);
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("flags"));
    assert!(
        stderr(&output).contains("server.grpc-listen-port"),
        "ignored Go flags are reported"
    );
}

#[test]
fn help_lists_the_go_flags_and_version_prints() {
    let help = run(&["--help"], &[]);
    assert!(help.status.success());
    let text = stdout(&help);
    for flag in [
        "--gateway.distributor.address",
        "--gateway.query-frontend.address",
        "--gateway.auth.jwt-secret",
        "token",
        "check-config",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let version = run(&["--version"], &[]);
    assert_eq!(
        stdout(&version).trim(),
        format!("cortex-gateway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[actix_rt::test]
async fn no_log_level_ever_prints_a_secret_or_a_token() {
    for level in ["trace", "debug", "info"] {
        let upstream = Upstream::start("q");
        let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
            .arg(&format!("-log.level={level}"))
            .start();
        let good = tenant_token("team-a");
        let forged = token_with(
            jsonwebtoken::Algorithm::HS256,
            serde_json::json!({"tenant_id": "x"}),
            b"forged-secret",
        );
        for token in [&good, &forged] {
            let _ = client()
                .get(gateway.url("/api/v1/query"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let _ = client()
                .post(gateway.url("/api/v1/push"))
                .insert_header(("Authorization", token.as_str()))
                .send_body("x")
                .await
                .unwrap();
        }
        let _ = client()
            .get(gateway.url("/api/v1/query"))
            .insert_header(("X-Scope-OrgID", "x"))
            .send()
            .await
            .unwrap();
        let logs = gateway.logs();
        assert!(logs.contains("authentication failed"), "{level}: {logs}");
        assert!(!logs.contains(SECRET), "{level}: the secret leaked");
        for token in [&good, &forged] {
            for part in token.split('.') {
                assert!(!logs.contains(part), "{level}: a token part leaked");
            }
        }
    }
}

#[actix_rt::test]
async fn demo_prints_a_working_token_and_curl_line() {
    use std::io::BufRead;
    let port = free_port();
    let mut child = command()
        .args(["demo", "--port", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines: Vec<String> = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|line| !line.starts_with("stop with"))
        .collect();
    let curl = lines
        .iter()
        .find(|l| l.starts_with("curl -sS"))
        .expect("a curl line");
    let token = curl
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert_eq!(lines[2], token, "the token is printed on its own line");

    let url = format!("http://127.0.0.1:{port}/api/v1/query?query=up");
    let mut status = 0;
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        if let Ok(mut response) = client()
            .get(&url)
            .bearer_auth(token)
            .insert_header(("X-Scope-OrgID", "someone-else"))
            .send()
            .await
        {
            status = response.status().as_u16();
            body = response.json().await.unwrap();
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let unauthenticated = client().get(&url).send().await.unwrap().status();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    assert_eq!(body["x_scope_orgid"], serde_json::json!(["demo-tenant"]));
    assert_eq!(body["authorization_forwarded"], false);
    assert_eq!(unauthenticated, 401);
}

#[test]
fn token_scope_words_become_the_scope_claim() {
    let output = run(
        &["token", "--tenant", "grafana", "--scope", "read,rules"],
        &[
            UPSTREAMS[0],
            UPSTREAMS[1],
            ("CORTEX_GATEWAY__AUTH__JWT_SECRET", SECRET),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim_end().to_owned();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["scope"], "read rules");
}

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

/// `token --key-file --kid` signs as an identity provider would; `verify`
/// reports what verified it. Neither needs an upstream to be configured.
#[test]
fn token_signs_with_a_private_key_and_verify_reports_the_key_without_upstreams() {
    let config = temp_file(
        "public-keys.toml",
        &format!(
            "[auth]\npublic_keys = [\"{VECTORS}/ed25519.pub.pem\", \"{VECTORS}/rsa.pub.pem\"]\n"
        ),
    );
    let config = config.to_str().unwrap();
    let minted = run(
        &[
            "--config",
            config,
            "token",
            "--tenant",
            "team-idp",
            "--key-file",
            &format!("{VECTORS}/ed25519.key.pem"),
            "--kid",
            "ed-1",
            "--scope",
            "read",
        ],
        &[],
    );
    assert!(minted.status.success(), "{}", stderr(&minted));
    let token = stdout(&minted).trim().to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some("ed-1"));

    let verified = run(&["--config", config, "verify", &token], &[]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let report = stdout(&verified);
    for line in [
        "valid\n",
        "tenant: team-idp\n",
        "scopes: read\n",
        "algorithm: EdDSA\n",
        "ed25519.pub.pem\n",
    ] {
        assert!(report.contains(line), "{line:?} missing in:\n{report}");
    }
    assert!(!report.contains(&token), "the token is never printed");

    let mut piped = command()
        .args(["--config", config, "verify", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    writeln!(piped.stdin.take().unwrap(), "{token}").unwrap();
    let from_stdin = piped.wait_with_output().unwrap();
    assert!(from_stdin.status.success());
    assert!(stdout(&from_stdin).contains("tenant: team-idp"));
}

/// A refused token: exit 1, the reason the client would get, never the token.
#[test]
fn verify_names_the_reason_and_exits_1() {
    let signed_elsewhere = run(
        &[
            "token",
            "--tenant",
            "t",
            "-gateway.auth.jwt-secret=another-secret",
        ],
        &[],
    );
    let forged = stdout(&signed_elsewhere).trim().to_owned();
    let expired = run(
        &[
            "token",
            "--tenant",
            "t",
            "--expires-in",
            "1s",
            "-gateway.auth.jwt-secret=s3cret-for-verify",
        ],
        &[],
    );
    let expired = stdout(&expired).trim().to_owned();
    std::thread::sleep(std::time::Duration::from_secs(2));
    for (token, reason) in [
        (forged.as_str(), "bad signature (reason bad_signature)"),
        ("not-a-token", "(reason malformed)"),
        (expired.as_str(), "token expired (reason expired)"),
    ] {
        let output = run(
            &[
                "verify",
                token,
                "-gateway.auth.jwt-secret=s3cret-for-verify",
            ],
            &[("CORTEX_GATEWAY__AUTH__LEEWAY", "0s")],
        );
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let error = stderr(&output);
        assert!(error.starts_with("Invalid bearer token: "), "{error}");
        assert!(error.trim_end().ends_with(reason), "{error}");
        assert!(!error.contains(token) || token == "not-a-token", "{error}");
        assert!(output.stdout.is_empty());
    }
}
