#!/usr/bin/python3
"""Cross-library JWT interop vectors for cortex-gateway (issue 14).

The gateway verifies tokens with the Rust `jsonwebtoken` crate. Tests that
only verify tokens the gateway (or the same crate) minted itself cannot catch
an encoding mismatch with the identity providers that really issue tokens:
key formats (SPKI, PKCS#1, X.509 certificate, JWKS), signature encodings
(raw r||s for ECDSA, RSA-PSS salt length, Ed25519), and the classic attacks
(alg=none, RS/HS key confusion, tampered signatures, wrong keys, a rewritten
alg header, JWKS entries a verifier must skip).

This script builds those vectors with an independent implementation, PyJWT
plus pyca/cryptography, and writes them next to itself:

  keys (PKCS8 private / SubjectPublicKeyInfo public PEM, test-only), rsa.cert.pem,
  rsa.pkcs1.pub.pem, jwks.json, tokens.json, README.md

Keys are random on each run; the file layout and the case list are fixed.
After writing, it re-reads the files and checks with PyJWT that every
"accept" case verifies and every "reject" case fails, so a broken vector is
caught here rather than blamed on the gateway.

Run with the system interpreter, which has PyJWT and cryptography:

    /usr/bin/python3 tests/vectors/make_vectors.py
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import sys
import time

import cryptography
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

OUT = os.path.dirname(os.path.abspath(__file__))
HMAC_SECRET = "interop-hmac-secret-0123456789abcdef"
ISSUER = "https://idp.example.com/realms/cortex"
AUDIENCE = "cortex-gateway"
REGEN = "/usr/bin/python3 tests/vectors/make_vectors.py"

# Asymmetric algorithms: (alg, key name, JWKS kid).
ASYMMETRIC = [
    ("RS256", "rsa", "rsa-1"),
    ("RS384", "rsa", "rsa-1"),
    ("RS512", "rsa", "rsa-1"),
    ("PS256", "rsa", "rsa-1"),
    ("PS384", "rsa", "rsa-1"),
    ("PS512", "rsa", "rsa-1"),
    ("ES256", "ec256", "ec256-1"),
    ("ES384", "ec384", "ec384-1"),
    ("EdDSA", "ed25519", "ed-1"),
]
HMAC_ALGS = ["HS256", "HS384", "HS512"]
HMAC_HASH = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


# ---------------------------------------------------------------- helpers

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64json(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


def uint_bytes(n: int, length: int = 0) -> bytes:
    """Big-endian unsigned; minimal length unless a fixed one is given."""
    length = length or max(1, (n.bit_length() + 7) // 8)
    return n.to_bytes(length, "big")


def write(name: str, data) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def read(name: str) -> bytes:
    with open(os.path.join(OUT, name), "rb") as f:
        return f.read()


def private_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key, fmt=serialization.PublicFormat.SubjectPublicKeyInfo) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, fmt)


def flip_signature_bit(token: str) -> str:
    """Flips the lowest bit of the middle byte of the signature."""
    head, payload, sig = token.split(".")
    raw = bytearray(b64url_decode(sig))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


def manual_hmac_token(alg: str, claims: dict, secret: bytes) -> str:
    """An HMAC JWT built by hand: PyJWT refuses a PEM key as HMAC secret."""
    signing_input = f"{b64json({'alg': alg, 'typ': 'JWT'})}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), HMAC_HASH[alg]).digest()
    return f"{signing_input}.{b64url(mac)}"


# ---------------------------------------------------------------- JWKs

def rsa_jwk(key, kid, alg, use="sig"):
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "kid": kid, "use": use, "alg": alg,
            "n": b64url(uint_bytes(numbers.n)), "e": b64url(uint_bytes(numbers.e))}


def ec_jwk(key, kid, alg, crv, size):
    numbers = key.public_key().public_numbers()
    return {"kty": "EC", "kid": kid, "use": "sig", "alg": alg, "crv": crv,
            "x": b64url(uint_bytes(numbers.x, size)), "y": b64url(uint_bytes(numbers.y, size))}


def okp_jwk(key, kid):
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "use": "sig", "alg": "EdDSA", "crv": "Ed25519", "x": b64url(raw)}


def self_signed_cert(key) -> bytes:
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "cortex-gateway interop test key (TEST ONLY)"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2000, 1, 1))
        # RFC 5280 4.1.2.5: 99991231235959Z means no well-defined expiration.
        .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------- generate

def generate():
    keys = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec256": ec.generate_private_key(ec.SECP256R1()),
        "ec384": ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    for name, key in keys.items():
        write(f"{name}.key.pem", private_pem(key))
        write(f"{name}.pub.pem", public_pem(key))
    write("rsa.pkcs1.pub.pem", public_pem(keys["rsa"], serialization.PublicFormat.PKCS1))
    write("rsa.cert.pem", self_signed_cert(keys["rsa"]))

    # JWKS keys that a verifier must skip; only their public halves exist.
    enc_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p521_key = ec.generate_private_key(ec.SECP521R1())
    jwks = {"keys": [
        rsa_jwk(keys["rsa"], "rsa-1", "RS256"),
        ec_jwk(keys["ec256"], "ec256-1", "ES256", "P-256", 32),
        ec_jwk(keys["ec384"], "ec384-1", "ES384", "P-384", 48),
        okp_jwk(keys["ed25519"], "ed-1"),
        # Skip: an encryption key, not for signatures.
        rsa_jwk(enc_key, "enc-1", "RSA-OAEP", use="enc"),
        # Skip: a symmetric key has no place in a published key set.
        {"kty": "oct", "kid": "oct-1", "use": "sig", "alg": "HS256", "k": b64url(os.urandom(32))},
        # Skip: P-521 / ES512 is not an algorithm the gateway verifies.
        ec_jwk(p521_key, "ec521-1", "ES512", "P-521", 66),
    ]}
    write("jwks.json", json.dumps(jwks, indent=2) + "\n")

    now = int(time.time())
    cases = []

    def add(name, alg, kid, key, token, expect, why, **extra):
        case = {"name": name, "alg": alg, "kid": kid, "key": key,
                "token": token, "expect": expect, "why": why}
        case.update(extra)
        cases.append(case)

    def claims(name):
        return {"tenant_id": f"interop-{name.replace('_', '-')}", "version": 1, "iat": now}

    def accept_extra(c):
        return {"tenant_claim": "tenant_id", "tenant": c["tenant_id"]}

    # Accepted asymmetric tokens, with and without kid; then tampered ones.
    signed_with_kid = {}
    for alg, key_name, kid in ASYMMETRIC:
        for with_kid in (True, False):
            name = f"{alg.lower()}_{'kid' if with_kid else 'nokid'}"
            c = claims(name)
            token = jwt.encode(c, keys[key_name], algorithm=alg,
                               headers={"kid": kid} if with_kid else None)
            if with_kid:
                signed_with_kid[alg] = token
            add(name, alg, kid if with_kid else None, f"{key_name}.pub.pem", token, "accept",
                f"{alg} signed by {key_name}" + (f", kid {kid} in the JWKS" if with_kid else ", no kid"),
                **accept_extra(c))

    for alg in HMAC_ALGS:
        name = alg.lower()
        c = claims(name)
        add(name, alg, None, None, jwt.encode(c, HMAC_SECRET, algorithm=alg), "accept",
            f"{alg} with the shared secret", secret=HMAC_SECRET, **accept_extra(c))

    for alg, key_name, kid in ASYMMETRIC:
        add(f"{alg.lower()}_bad_signature", alg, kid, f"{key_name}.pub.pem",
            flip_signature_bit(signed_with_kid[alg]), "reject",
            "bad_signature: the accepted kid token with one bit flipped in the middle signature byte")

    # RS/HS key confusion: the public key file's bytes used as an HMAC secret.
    for pem_name, label in (("rsa.pub.pem", "spki"), ("rsa.pkcs1.pub.pem", "pkcs1")):
        name = f"hs256_key_confusion_{label}"
        add(name, "HS256", None, pem_name, manual_hmac_token("HS256", claims(name), read(pem_name)),
            "reject", f"key confusion: HS256 whose HMAC secret is the exact bytes of {pem_name}; "
            "a public key must never verify an HMAC token")

    add("alg_none", "none", None, "rsa.pub.pem",
        f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims('alg_none'))}.",
        "reject", "alg none with an empty signature")

    add("rs256_unknown_kid_wrong_key", "RS256", "unknown-kid", "rsa.pub.pem",
        jwt.encode(claims("rs256_unknown_kid_wrong_key"), keys["rsa2"], algorithm="RS256",
                   headers={"kid": "unknown-kid"}),
        "reject", "kid not in the JWKS, signed by rsa2 which no configured key matches")

    add("rs256_nokid_wrong_key", "RS256", None, "rsa.pub.pem",
        jwt.encode(claims("rs256_nokid_wrong_key"), keys["rsa2"], algorithm="RS256"),
        "reject", "no kid, signed by rsa2 (unrelated key); verifies only with rsa2.pub.pem")

    # ES256 token whose header alg is rewritten to ES384: the signing input
    # changes, so the signature no longer matches (and the curve is P-256).
    es256 = jwt.encode(claims("es256_alg_rewritten_es384"), keys["ec256"], algorithm="ES256")
    _, payload, sig = es256.split(".")
    add("es256_alg_rewritten_es384", "ES384", None, "ec256.pub.pem",
        f"{b64json({'alg': 'ES384', 'typ': 'JWT'})}.{payload}.{sig}",
        "reject", "signed ES256 by ec256, header alg rewritten to ES384: signature over a different input")

    nested = {"org": {"id": "nested-team"}, "https://example.com/tenant": "url-team", "version": 1}
    add("nested", "RS256", "rsa-1", "rsa.pub.pem",
        jwt.encode(nested, keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"}), "accept",
        "tenant not in tenant_id: /org/id (JSON pointer) gives nested-team, "
        "the claim named https://example.com/tenant gives url-team",
        tenant_claims={"/org/id": "nested-team", "https://example.com/tenant": "url-team"})

    c = dict(claims("issuer"), iss=ISSUER, aud=AUDIENCE)
    add("issuer", "RS256", "rsa-1", "rsa.pub.pem",
        jwt.encode(c, keys["rsa"], algorithm="RS256", headers={"kid": "rsa-1"}), "accept",
        f"iss {ISSUER} and aud {AUDIENCE}", issuer=ISSUER, audience=AUDIENCE, **accept_extra(c))

    generator = {"pyjwt": jwt.__version__, "cryptography": cryptography.__version__,
                 "python": sys.version.split()[0], "command": REGEN}
    tokens = {
        "generator": generator,
        "iat": now,
        "hmac_secret": HMAC_SECRET,
        "jwks": "jwks.json",
        "equivalent_keys": {"rsa.pub.pem": ["rsa.pkcs1.pub.pem", "rsa.cert.pem"]},
        "cases": cases,
    }
    write("tokens.json", json.dumps(tokens, indent=2) + "\n")
    write("README.md", readme(generator))
    print(f"PyJWT {jwt.__version__}, cryptography {cryptography.__version__}: "
          f"wrote {len(cases)} cases to {OUT}")


def readme(gen) -> str:
    return f"""# JWT interop test vectors

These are cross-library JWT test vectors for the gateway's token verification
(issue 14): keys in every format the gateway may be given (PKCS8 private keys,
SubjectPublicKeyInfo and PKCS#1 public keys, a self-signed X.509 certificate,
a JWKS in `jwks.json` with entries a verifier must skip), and in `tokens.json`
tokens for RS256/384/512, PS256/384/512, ES256, ES384, EdDSA and HS256/384/512
that must be accepted, plus tampered, alg=none, key-confusion and wrong-key
tokens that must be rejected, each with the reason. They were made by an
independent implementation, PyJWT {gen['pyjwt']} with cryptography {gen['cryptography']}
(Python {gen['python']}), by `make_vectors.py`, which also checks every case
with PyJWT after writing; regenerate them all (new random keys, same layout)
from the repository root with `{gen['command']}`.
These keys and the HMAC secret are test-only: they are public in this
repository and must never be used to sign or verify anything real.
"""


# ---------------------------------------------------------------- self-check

SUPPORTED_CURVES = {"P-256", "P-384"}


def verifier_jwks():
    """The JWKS keys a verifier may use: use sig, a supported type and curve."""
    usable = {}
    for jwk in json.loads(read("jwks.json"))["keys"]:
        if jwk.get("use", "sig") != "sig":
            continue
        if jwk["kty"] == "RSA":
            usable[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)
        elif jwk["kty"] == "EC" and jwk["crv"] in SUPPORTED_CURVES:
            usable[jwk["kid"]] = ECAlgorithm.from_jwk(jwk)
        elif jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519":
            usable[jwk["kid"]] = OKPAlgorithm.from_jwk(jwk)
    return usable


def check_jwks_encoding(failures):
    """Our hand-made JWKs must match PyJWT's own to_jwk for the same keys."""
    by_kid = {jwk["kid"]: jwk for jwk in json.loads(read("jwks.json"))["keys"]}
    for kid, file, alg in (("rsa-1", "rsa.pub.pem", RSAAlgorithm),
                           ("ec256-1", "ec256.pub.pem", ECAlgorithm),
                           ("ec384-1", "ec384.pub.pem", ECAlgorithm),
                           ("ed-1", "ed25519.pub.pem", OKPAlgorithm)):
        theirs = json.loads(alg.to_jwk(serialization.load_pem_public_key(read(file))))
        ours = by_kid[kid]
        for field, value in theirs.items():
            if field in ("key_ops",):
                continue
            if ours.get(field) != value:
                failures.append(f"jwks {kid}: {field} differs from PyJWT's to_jwk")


def check_key_files(failures):
    spki = serialization.load_pem_public_key(read("rsa.pub.pem"))
    pkcs1 = serialization.load_pem_public_key(read("rsa.pkcs1.pub.pem"))
    cert = x509.load_pem_x509_certificate(read("rsa.cert.pem")).public_key()
    if not (spki.public_numbers() == pkcs1.public_numbers() == cert.public_numbers()):
        failures.append("rsa.pub.pem, rsa.pkcs1.pub.pem and rsa.cert.pem hold different keys")
    if b"BEGIN RSA PUBLIC KEY" not in read("rsa.pkcs1.pub.pem"):
        failures.append("rsa.pkcs1.pub.pem is not PKCS#1")
    for name in ("rsa", "rsa2", "ec256", "ec384", "ed25519"):
        if not read(f"{name}.key.pem").startswith(b"-----BEGIN PRIVATE KEY-----"):
            failures.append(f"{name}.key.pem is not PKCS8")
        if not read(f"{name}.pub.pem").startswith(b"-----BEGIN PUBLIC KEY-----"):
            failures.append(f"{name}.pub.pem is not SubjectPublicKeyInfo")
    if serialization.load_pem_private_key(read("rsa.key.pem"), None).key_size != 2048:
        failures.append("rsa.key.pem is not 2048-bit")


def decode(token, key, algorithms, case):
    kwargs = {}
    if "audience" in case:
        kwargs = {"audience": case["audience"], "issuer": case["issuer"]}
    return jwt.decode(token, key, algorithms=algorithms, **kwargs)


def self_check():
    data = json.loads(read("tokens.json"))
    jwks = verifier_jwks()
    all_algs = [a for a, _, _ in ASYMMETRIC] + HMAC_ALGS
    failures = []
    check_key_files(failures)
    check_jwks_encoding(failures)
    if set(jwks) != {"rsa-1", "ec256-1", "ec384-1", "ed-1"}:
        failures.append(f"usable JWKS kids are {sorted(jwks)}")

    for case in data["cases"]:
        name, token = case["name"], case["token"]
        header = jwt.get_unverified_header(token) if token.count(".") == 2 else {}
        if header.get("alg") != case["alg"] or header.get("kid") != case["kid"]:
            failures.append(f"{name}: header {header} does not match alg/kid of the case")
        # Every key the case could meet: its PEM file (or the secret) and,
        # when it names a kid, that JWKS key.
        candidates = []
        if case.get("secret"):
            candidates.append(("secret", case["secret"]))
        if case["key"]:
            candidates.append((case["key"], read(case["key"])))
        if case["kid"] in jwks:
            candidates.append((f"jwks {case['kid']}", jwks[case["kid"]]))

        if case["expect"] == "accept":
            for label, key in candidates:
                try:
                    claims = decode(token, key, [case["alg"]], case)
                except Exception as e:  # noqa: BLE001 - report any failure
                    failures.append(f"{name}: does not verify with {label}: {e!r}")
                    continue
                wanted = case.get("tenant_claims") or {case["tenant_claim"]: case["tenant"]}
                for claim, tenant in wanted.items():
                    value = claims
                    for part in (claim[1:].split("/") if claim.startswith("/") else [claim]):
                        value = value.get(part) if isinstance(value, dict) else None
                    if value != tenant:
                        failures.append(f"{name}: claim {claim} is {value!r}, not {tenant!r}")
                if "exp" in claims:
                    failures.append(f"{name}: has exp")
        else:
            # Most permissive verifier: every algorithm, every key the case
            # names, plus every usable JWKS key (a verifier that falls back
            # to trying all keys must still refuse).
            candidates += [(f"jwks {kid}", key) for kid, key in jwks.items() if kid != case["kid"]]
            for label, key in candidates:
                for alg in ([case["alg"]] if case["alg"] != "none" else []) + ["ALL"]:
                    algorithms = all_algs + ["none"] if alg == "ALL" else [alg]
                    try:
                        decode(token, key, algorithms, case)
                    except Exception:  # noqa: BLE001 - any refusal is the point
                        continue
                    failures.append(f"{name}: PyJWT ACCEPTED it with {label} and {algorithms}")

    # Controls: the rejections above must be for the stated reason.
    by_name = {c["name"]: c for c in data["cases"]}
    for name, key_file in (("rs256_unknown_kid_wrong_key", "rsa2.pub.pem"),
                           ("rs256_nokid_wrong_key", "rsa2.pub.pem")):
        try:
            jwt.decode(by_name[name]["token"], read(key_file), algorithms=["RS256"])
        except Exception as e:  # noqa: BLE001
            failures.append(f"control {name}: does not verify even with {key_file}: {e!r}")
    for pem_name, label in (("rsa.pub.pem", "spki"), ("rsa.pkcs1.pub.pem", "pkcs1")):
        token = by_name[f"hs256_key_confusion_{label}"]["token"]
        signing_input, _, sig = token.rpartition(".")
        mac = hmac.new(read(pem_name), signing_input.encode(), hashlib.sha256).digest()
        if b64url(mac) != sig:
            failures.append(f"control hs256_key_confusion_{label}: HMAC is not over {pem_name}")
    es = by_name["es256_alg_rewritten_es384"]["token"].split(".")
    original = f"{b64json({'alg': 'ES256', 'typ': 'JWT'})}.{es[1]}.{es[2]}"
    try:
        jwt.decode(original, read("ec256.pub.pem"), algorithms=["ES256"])
    except Exception as e:  # noqa: BLE001
        failures.append(f"control es256_alg_rewritten_es384: original ES256 does not verify: {e!r}")

    accepted = sum(c["expect"] == "accept" for c in data["cases"])
    if failures:
        print("SELF-CHECK FAILED:")
        for failure in failures:
            print("  " + failure)
        sys.exit(1)
    print(f"self-check ok: {accepted} accepted, {len(data['cases']) - accepted} rejected, "
          f"by PyJWT {jwt.__version__}")


if __name__ == "__main__":
    generate()
    self_check()
