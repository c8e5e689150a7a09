//! Tokens minted by an independent implementation (PyJWT with
//! `cryptography`, vectors in `tests/vectors/`, made by `make_vectors.py`)
//! through the real binary: every algorithm accepted from PEM public keys
//! (SubjectPublicKeyInfo, PKCS#1 and a certificate) and from a JWKS; each
//! with one flipped signature bit refused; an RSA public key used as an
//! HS256 secret refused; `alg: none` and an unknown `kid` refused; nested
//! and namespaced tenant claims, issuer, audience and `require_exp` checks. Nothing
//! refused reaches the upstream.

mod common;

use common::{raw_http, GatewayBuilder, Reply, Upstream};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

fn vectors() -> Value {
    let text = std::fs::read_to_string(format!("{VECTORS}/tokens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn cases(vectors: &Value) -> &Vec<Value> {
    vectors["cases"].as_array().unwrap()
}

fn field<'a>(case: &'a Value, name: &str) -> &'a str {
    case[name].as_str().unwrap_or_default()
}

/// The query frontend, and a gateway in front of it with `auth` as the
/// `[auth]` section (and no other key source).
struct Setup {
    upstream: Upstream,
    gateway: common::Gateway,
}

impl Setup {
    fn start(auth: &str) -> Self {
        let upstream = Upstream::start("q");
        let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
            .without_secret()
            .config(&format!("[auth]\n{auth}\n"))
            .start();
        Self { upstream, gateway }
    }

    /// The status of a query with `token`, and the tenant the upstream saw
    /// (`None`: nothing was forwarded).
    fn query(&self, token: &str) -> (u16, Option<String>) {
        let before = self.upstream.requests().len();
        let request = format!(
            "GET /api/v1/query?query=up HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        let response = raw_http(self.gateway.addr(), request.as_bytes()).unwrap();
        let requests = self.upstream.requests();
        let tenant = (requests.len() > before)
            .then(|| requests.last()?.header("x-scope-orgid").map(str::to_owned))
            .flatten();
        (response.status, tenant)
    }
}

fn pem_list(names: &[&str]) -> String {
    let paths: Vec<String> = names
        .iter()
        .map(|name| format!("\"{VECTORS}/{name}\""))
        .collect();
    format!("[{}]", paths.join(", "))
}

#[test]
fn every_algorithm_from_pem_keys_and_every_forgery_refused() {
    let vectors = vectors();
    let setup = Setup::start(&format!(
        "jwt_secret = \"{}\"\npublic_keys = {}",
        vectors["hmac_secret"].as_str().unwrap(),
        pem_list(&[
            "rsa.pub.pem",
            "ec256.pub.pem",
            "ec384.pub.pem",
            "ed25519.pub.pem"
        ]),
    ));
    let mut checked = 0;
    for case in cases(&vectors) {
        if field(case, "name") == "nested" || field(case, "name") == "issuer" {
            continue;
        }
        let (status, tenant) = setup.query(field(case, "token"));
        if field(case, "expect") == "accept" {
            assert_eq!(status, 200, "{}", field(case, "name"));
            assert_eq!(
                tenant.as_deref(),
                Some(field(case, "tenant")),
                "{}",
                field(case, "name")
            );
        } else {
            assert_eq!(
                status,
                401,
                "{} ({})",
                field(case, "name"),
                field(case, "why")
            );
            assert_eq!(tenant, None, "{} reached the upstream", field(case, "name"));
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} vectors checked");
    let confusion = cases(&vectors)
        .iter()
        .filter(|case| field(case, "name").contains("key_confusion"))
        .count();
    assert_eq!(confusion, 2, "the HS/RS confusion vectors are there");
}

#[test]
fn rsa_keys_in_pkcs1_and_certificate_form_verify_the_same_tokens() {
    let vectors = vectors();
    let rs256 = cases(&vectors)
        .iter()
        .find(|case| field(case, "name") == "rs256_nokid")
        .unwrap();
    for form in ["rsa.pkcs1.pub.pem", "rsa.cert.pem"] {
        let setup = Setup::start(&format!("public_keys = {}", pem_list(&[form])));
        let (status, tenant) = setup.query(field(rs256, "token"));
        assert_eq!(status, 200, "{form}");
        assert_eq!(tenant.as_deref(), Some(field(rs256, "tenant")), "{form}");
    }
}

#[test]
fn jwks_keys_verify_tokens_of_their_kid_and_alg() {
    let vectors = vectors();
    let keys = Upstream::start("idp");
    keys.set_reply(Reply {
        headers: vec![("content-type".into(), "application/json".into())],
        body: std::fs::read(format!("{VECTORS}/jwks.json")).unwrap(),
        ..Reply::default()
    });
    let setup = Setup::start(&format!("jwks_url = [\"{}/keys\"]", keys.url()));
    setup.gateway.wait_until_ready();
    let jwks: Value =
        serde_json::from_slice(&std::fs::read(format!("{VECTORS}/jwks.json")).unwrap()).unwrap();
    let published_alg = |kid: &str| {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["kid"] == kid)
            .map(|key| key["alg"].as_str().unwrap_or_default().to_owned())
    };
    let mut accepted = 0;
    for case in cases(&vectors) {
        if field(case, "name") == "nested" {
            continue;
        }
        let kid = field(case, "kid");
        let expected = match field(case, "expect") {
            "accept"
                if !kid.is_empty() && published_alg(kid).as_deref() == Some(field(case, "alg")) =>
            {
                200
            }
            "reject" => 401,
            _ => continue,
        };
        let (status, tenant) = setup.query(field(case, "token"));
        assert_eq!(status, expected, "{}", field(case, "name"));
        if expected == 200 {
            assert_eq!(tenant.as_deref(), Some(field(case, "tenant")));
            accepted += 1;
        } else {
            assert_eq!(tenant, None, "{} reached the upstream", field(case, "name"));
        }
    }
    assert_eq!(
        accepted, 5,
        "RS256, ES256, ES384, EdDSA and the issuer vector, by kid"
    );
}

#[test]
fn nested_and_namespaced_tenant_claims_issuer_and_audience() {
    let vectors = vectors();
    let case = |name: &str| {
        cases(&vectors)
            .iter()
            .find(|case| field(case, "name") == name)
            .unwrap()
            .clone()
    };
    let nested = case("nested");
    let keys = pem_list(&["rsa.pub.pem"]);
    for (claim, tenant) in nested["tenant_claims"].as_object().unwrap() {
        let setup = Setup::start(&format!("public_keys = {keys}\ntenant_claim = \"{claim}\""));
        let (status, seen) = setup.query(field(&nested, "token"));
        assert_eq!(status, 200, "{claim}");
        assert_eq!(seen.as_deref(), tenant.as_str(), "{claim}");
    }

    let issued = case("issuer");
    let strict = Setup::start(&format!(
        "public_keys = {keys}\nissuer = [\"{}\"]\naudience = \"{}\"",
        field(&issued, "issuer"),
        field(&issued, "audience"),
    ));
    assert_eq!(strict.query(field(&issued, "token")).0, 200);
    let other_issuer = Setup::start(&format!(
        "public_keys = {keys}\nissuer = [\"https://someone-else.example.com\"]"
    ));
    assert_eq!(other_issuer.query(field(&issued, "token")), (401, None));
    let no_issuer_claim = case("rs256_nokid");
    assert_eq!(strict.query(field(&no_issuer_claim, "token")), (401, None));

    // The vectors are long-lived (no `exp`): refused once `exp` is required.
    let long_lived = field(&no_issuer_claim, "token");
    assert_eq!(
        Setup::start(&format!("public_keys = {keys}"))
            .query(long_lived)
            .0,
        200
    );
    let require_exp = Setup::start(&format!("public_keys = {keys}\nrequire_exp = true"));
    assert_eq!(require_exp.query(long_lived), (401, None));
}
