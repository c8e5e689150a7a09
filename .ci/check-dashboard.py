#!/usr/bin/env python3
"""Checks the Grafana dashboard shipped in deploy/ (Python 3 standard library only).

Usage: .ci/check-dashboard.py [DASHBOARD.json] [--metrics FILE]

DASHBOARD.json defaults to deploy/grafana-dashboard.json next to this script.
Checks, all reported at once:
  - valid JSON without duplicate keys, with the top-level keys Grafana's import
    needs (title, uid, panels, schemaVersion, templating, __inputs) and a
    prometheus datasource input;
  - the template variables the panels use: `datasource` (a prometheus
    datasource variable), `job`, `targetname`; every $variable in a query is
    defined (Grafana's own $__... are allowed);
  - panel ids unique (collapsed rows' panels included); gridPos within the
    24-column grid and not overlapping at the top level (a row counts as
    height 1) nor inside a collapsed row;
  - every non-row panel has a title, a description, the datasource
    ${datasource}, and targets, each with a non-empty expr and (if it names
    one) the datasource ${datasource};
  - every metric name in an expr (cortex_gateway_* and process_*, with
    _bucket/_count/_sum stripped) is a series the gateway exports;
  - with --metrics FILE (a Prometheus text exposition, e.g. a scrape of
    /metrics after some traffic): every such metric the dashboard uses
    appears in FILE.
Exits 0 and prints one summary line when all pass; otherwise prints each
problem to stderr and exits 1 (2 for usage errors).
"""

import argparse
import json
import os
import re
import sys

PROG = "check-dashboard"
GRID_COLUMNS = 24
DATASOURCE_REF = "${datasource}"

# The series the gateway exports (see README.md, Telemetry > Metrics).
ALLOWED_METRICS = frozenset([
    "cortex_gateway_request_duration_seconds",
    "cortex_gateway_failed_authentications_total",
    "cortex_gateway_succeeded_authentications_total",
    "cortex_gateway_proxy_requests_total",
    "cortex_gateway_upstream_request_duration_seconds",
    "cortex_gateway_upstream_errors_total",
    "cortex_gateway_inflight_requests",
    "cortex_gateway_request_body_bytes_total",
    "cortex_gateway_response_body_bytes_total",
    "cortex_gateway_rejected_requests_total",
    "cortex_gateway_build_info",
    "cortex_gateway_http_requests_total",
    "cortex_gateway_http_requests_duration_seconds",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_start_time_seconds",
])
REQUIRED_TOP_LEVEL = ("title", "uid", "panels", "schemaVersion", "templating", "__inputs")
REQUIRED_VARIABLES = ("datasource", "job", "targetname")
METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])(cortex_gateway_[a-z_]+|process_[a-z_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# $name, ${name}, ${name:format}, [[name]]
VARIABLE_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def metric_base(token):
    """The exported series a token of an expr refers to."""
    if token in ALLOWED_METRICS:
        return token
    for suffix in HISTOGRAM_SUFFIXES:
        if token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def reject_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError("duplicate key %r" % key)
        obj[key] = value
    return obj


def datasource_uid(ds):
    """The uid of a datasource reference, either a string or {type, uid}."""
    if isinstance(ds, dict):
        return ds.get("uid")
    return ds


def label(panel):
    return "panel id=%s %r" % (panel.get("id"), panel.get("title", "<untitled>"))


def rect(panel, errors):
    """The [x0, x1) x [y0, y1) rectangle of a panel, or None if its gridPos is invalid."""
    pos = panel.get("gridPos")
    if not isinstance(pos, dict):
        errors.append("%s: no gridPos" % label(panel))
        return None
    values = {}
    for key in ("x", "y", "w", "h"):
        value = pos.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append("%s: gridPos.%s is %r, not an integer" % (label(panel), key, value))
            return None
        values[key] = value
    x, y, w, h = values["x"], values["y"], values["w"], values["h"]
    if panel.get("type") == "row":
        h = 1
    if x < 0 or y < 0 or w < 1 or h < 1 or x + w > GRID_COLUMNS:
        errors.append("%s: gridPos %s is outside the %d-column grid"
                      % (label(panel), json.dumps(pos, sort_keys=True), GRID_COLUMNS))
        return None
    return (x, x + w, y, y + h)


def check_overlaps(panels, where, errors):
    placed = []
    for panel in panels:
        r = rect(panel, errors)
        if r is None:
            continue
        for other, o in placed:
            if r[0] < o[1] and o[0] < r[1] and r[2] < o[3] and o[2] < r[3]:
                errors.append("%s overlaps %s%s (gridPos %s vs %s)" % (
                    label(panel), label(other), where,
                    json.dumps(panel["gridPos"], sort_keys=True),
                    json.dumps(other["gridPos"], sort_keys=True)))
        placed.append((panel, r))


def check_panel(panel, errors, exprs):
    if not panel.get("title"):
        errors.append("%s: no title" % label(panel))
    if panel.get("type") == "row":
        return
    if not panel.get("description"):
        errors.append("%s: no description" % label(panel))
    if datasource_uid(panel.get("datasource")) != DATASOURCE_REF:
        errors.append("%s: datasource is %s, not %s"
                      % (label(panel), json.dumps(panel.get("datasource")), DATASOURCE_REF))
    targets = panel.get("targets")
    if not isinstance(targets, list) or not targets:
        errors.append("%s: no targets" % label(panel))
        return
    for target in targets:
        ref = target.get("refId", "?") if isinstance(target, dict) else "?"
        if not isinstance(target, dict):
            errors.append("%s: target %r is not an object" % (label(panel), target))
            continue
        expr = target.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            errors.append("%s: target %s has no expr" % (label(panel), ref))
            continue
        if "datasource" in target and datasource_uid(target["datasource"]) != DATASOURCE_REF:
            errors.append("%s: target %s datasource is %s, not %s" % (
                label(panel), ref, json.dumps(target["datasource"]), DATASOURCE_REF))
        exprs.append(("%s target %s" % (label(panel), ref), expr))


def check_variables(dashboard, errors):
    """Returns the names of the dashboard's template variables."""
    templating = dashboard.get("templating")
    variables = templating.get("list") if isinstance(templating, dict) else None
    if not isinstance(variables, list):
        errors.append("templating.list is missing or not a list")
        return set()
    by_name = {v.get("name"): v for v in variables if isinstance(v, dict)}
    for name in REQUIRED_VARIABLES:
        if name not in by_name:
            errors.append("templating: no variable %r" % name)
    ds = by_name.get("datasource")
    if ds is not None and (ds.get("type") != "datasource" or ds.get("query") != "prometheus"):
        errors.append("templating: variable 'datasource' must have type 'datasource' and "
                      "query 'prometheus' (has type %r, query %r)"
                      % (ds.get("type"), ds.get("query")))
    for name, var in by_name.items():
        if var.get("type") == "query":
            if datasource_uid(var.get("datasource")) != DATASOURCE_REF:
                errors.append("templating: variable %r datasource is %s, not %s"
                              % (name, json.dumps(var.get("datasource")), DATASOURCE_REF))
            query = var.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            for token in METRIC_RE.findall(query or ""):
                if metric_base(token) not in ALLOWED_METRICS:
                    errors.append("templating: variable %r uses %s, which the gateway does "
                                  "not export" % (name, token))
    return set(by_name)


def check_inputs(dashboard, errors):
    inputs = dashboard.get("__inputs")
    if not isinstance(inputs, list):
        errors.append("__inputs is not a list")
        return
    if not any(isinstance(i, dict) and i.get("type") == "datasource"
               and i.get("pluginId") == "prometheus" and i.get("name") for i in inputs):
        errors.append("__inputs has no datasource input with pluginId 'prometheus'")


def exposition_names(path):
    """Metric names in a Prometheus text exposition (samples and # TYPE/# HELP lines)."""
    names = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("TYPE", "HELP"):
                    names.add(parts[2])
                continue
            match = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
            if match:
                names.add(match.group(0))
    return names


def in_exposition(metric, names):
    return metric in names or any(metric + s in names for s in HISTOGRAM_SUFFIXES)


def main():
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dashboard", nargs="?",
                        default=os.path.join(repo_root, "deploy", "grafana-dashboard.json"),
                        help="dashboard JSON (default: deploy/grafana-dashboard.json)")
    parser.add_argument("--metrics", metavar="FILE",
                        help="Prometheus text exposition; every metric used must appear in it")
    args = parser.parse_args()
    shown = os.path.relpath(args.dashboard)
    if shown.startswith(".."):
        shown = args.dashboard

    def fail(errors):
        for error in errors:
            print("%s: %s: %s" % (PROG, shown, error), file=sys.stderr)
        print("%s: %s: FAILED, %d problem(s)" % (PROG, shown, len(errors)), file=sys.stderr)
        return 1

    try:
        with open(args.dashboard, encoding="utf-8") as f:
            dashboard = json.load(f, object_pairs_hook=reject_duplicate_keys)
    except OSError as e:
        print("%s: cannot read %s: %s" % (PROG, args.dashboard, e.strerror), file=sys.stderr)
        return 2
    except ValueError as e:
        return fail(["not valid JSON: %s" % e])
    if not isinstance(dashboard, dict):
        return fail(["the top level is not a JSON object"])

    errors = []
    missing = [k for k in REQUIRED_TOP_LEVEL if k not in dashboard]
    if missing:
        errors.append("missing top-level key(s) for Grafana import: %s" % ", ".join(missing))
    for key in ("title", "uid"):
        if key in dashboard and not (isinstance(dashboard[key], str) and dashboard[key]):
            errors.append("%s must be a non-empty string" % key)
    if "schemaVersion" in dashboard and not isinstance(dashboard["schemaVersion"], int):
        errors.append("schemaVersion must be an integer")
    if "__inputs" in dashboard:
        check_inputs(dashboard, errors)
    variables = check_variables(dashboard, errors) if "templating" in dashboard else set()

    panels = dashboard.get("panels", [])
    if not isinstance(panels, list) or not panels:
        errors.append("panels is empty or not a list")
        return fail(errors)
    panels = [p for p in panels if isinstance(p, dict)] if isinstance(panels, list) else []

    # Every panel, collapsed rows' nested panels included.
    everything = []
    for panel in panels:
        everything.append(panel)
        if panel.get("type") == "row":
            nested = panel.get("panels") or []
            if nested and not panel.get("collapsed"):
                errors.append("%s: an expanded row must not hold panels" % label(panel))
            everything.extend(p for p in nested if isinstance(p, dict))
            check_overlaps(nested, " inside %s" % label(panel), errors)
    check_overlaps(panels, "", errors)

    seen_ids = {}
    for panel in everything:
        pid = panel.get("id")
        if not isinstance(pid, int) or isinstance(pid, bool):
            errors.append("%s: id is not an integer" % label(panel))
        elif pid in seen_ids:
            errors.append("panel id %d is used by both %r and %r"
                          % (pid, seen_ids[pid].get("title"), panel.get("title")))
        else:
            seen_ids[pid] = panel

    exprs = []
    for panel in everything:
        check_panel(panel, errors, exprs)

    used = {}
    for where, expr in exprs:
        for token in METRIC_RE.findall(expr):
            metric = metric_base(token)
            used.setdefault(metric, where)
            if metric not in ALLOWED_METRICS:
                errors.append("%s: %s is not a series the gateway exports" % (where, token))
        for groups in VARIABLE_RE.findall(expr):
            name = next(g for g in groups if g)
            if not name.startswith("__") and name not in variables:
                errors.append("%s: uses $%s, which is not a template variable" % (where, name))

    checked_against = ""
    if args.metrics:
        try:
            names = exposition_names(args.metrics)
        except OSError as e:
            print("%s: cannot read %s: %s" % (PROG, args.metrics, e.strerror), file=sys.stderr)
            return 2
        if not names:
            errors.append("--metrics %s holds no metric" % args.metrics)
        else:
            for metric in sorted(used):
                if metric in ALLOWED_METRICS and not in_exposition(metric, names):
                    errors.append(
                        "%s (used by %s) does not appear in %s; a histogram or labelled "
                        "series appears only once observed, so scrape after some traffic"
                        % (metric, used[metric], args.metrics))
            checked_against = ", all present in %s" % args.metrics

    if errors:
        return fail(errors)
    rows = sum(1 for p in everything if p.get("type") == "row")
    print("%s: %s OK: %r (uid %s), %d panels + %d rows, %d queries, %d metrics, all exported%s"
          % (PROG, shown, dashboard["title"], dashboard["uid"], len(everything) - rows, rows,
             len(exprs), len(used), checked_against))
    return 0


if __name__ == "__main__":
    sys.exit(main())
