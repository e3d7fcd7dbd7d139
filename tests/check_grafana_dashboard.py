#!/usr/bin/env python3
"""Keeps examples/grafana_dashboard.json from rotting.

Checks that the dashboard is valid JSON with the data source variable and the service variable
it promises; that every metric its queries name is one of the families below (a histogram's
_bucket, _sum and _count included); that every family is charted; and that each family is
still spelled out in a header under include/ (a renamed metric fails here, not on a dashboard).
With --promtool, every query is also parsed by Prometheus itself (as a recording rule).
Standard library only.

usage: check_grafana_dashboard.py DASHBOARD INCLUDE_DIR [--promtool PATH]
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

# The metric families sendgrid_backend exports: prometheus.hpp (sending and webhook) and
# redis/prometheus.hpp (the queue, sendgrid-worker --metrics).
FAMILIES = {
    "sendgrid_messages_total", "sendgrid_requests_total", "sendgrid_rate_limited_total",
    "sendgrid_send_duration_seconds", "sendgrid_send_tries", "sendgrid_webhook_events_total",
    "sendgrid_webhook_requests_total", "sendgrid_webhook_duplicate_events_total",
    "sendgrid_queue_waiting_entries", "sendgrid_queue_pending_entries",
    "sendgrid_queue_oldest_pending_age_seconds", "sendgrid_queue_messages_total",
    "sendgrid_queue_up",
}
HISTOGRAMS = {"sendgrid_send_duration_seconds", "sendgrid_send_tries"}
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# Grafana's variables, replaced by values Prometheus can parse.
VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$service": ".*"}


def family_of(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def main(dashboard_path, include_dir, promtool=None):
    errors = []
    dashboard = json.loads(pathlib.Path(dashboard_path).read_text())  # raises on invalid JSON

    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    if variables.get("DS_PROMETHEUS", {}).get("type") != "datasource":
        errors.append("no data source variable DS_PROMETHEUS")
    service = variables.get("service", {})
    if service.get("definition") != "label_values(sendgrid_messages_total, service)":
        errors.append("the service variable is not label_values(sendgrid_messages_total, service)")

    queries = [service.get("definition", "")]
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "?")
        if panel.get("datasource") != DATASOURCE:
            errors.append(f"panel {title!r}: its data source is not ${{DS_PROMETHEUS}}")
        if not panel.get("targets"):
            errors.append(f"panel {title!r}: no queries")
        for target in panel.get("targets", []):
            if target.get("datasource") != DATASOURCE:
                errors.append(f"panel {title!r}: a query's data source is not ${{DS_PROMETHEUS}}")
            queries.append(target.get("expr", ""))

    charted = set()
    for query in queries:
        for name in re.findall(r"\bsendgrid_[a-zA-Z0-9_:]*", query):
            if family_of(name) not in FAMILIES:
                errors.append(f"{name}: no such metric (in {query!r})")
            charted.add(family_of(name))
    for family in sorted(FAMILIES - charted):
        errors.append(f"{family}: exported but charted by no panel")

    headers = "\n".join(p.read_text() for p in pathlib.Path(include_dir).rglob("*.hpp"))
    for family in sorted(FAMILIES):
        if family not in headers:
            errors.append(f"{family}: named in no header under {include_dir} (renamed? update "
                          "the dashboard and this script's list)")

    if promtool:
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:query_{i}", "expr": expand(query)}
            for i, query in enumerate(queries[1:])]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".json") as file:  # JSON is YAML
            json.dump(rules, file)
            file.flush()
            check = subprocess.run([promtool, "check", "rules", file.name],
                                   capture_output=True, text=True)
        if check.returncode != 0:
            errors.append("promtool check rules: " + check.stdout + check.stderr)

    for error in errors:
        print(error, file=sys.stderr)
    print(f"{dashboard_path}: {len(queries) - 1} queries over {len(charted)} metric families"
          + (", parsed by promtool" if promtool else "") + ("" if errors else ": ok"))
    return 1 if errors else 0


def expand(query):
    for variable, value in VARIABLES.items():
        query = query.replace(variable, value)
    return query


if __name__ == "__main__":
    arguments = sys.argv[1:]
    tool = None
    if "--promtool" in arguments:
        at = arguments.index("--promtool")
        tool = arguments[at + 1]
        del arguments[at:at + 2]
    if len(arguments) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    sys.exit(main(*arguments, promtool=tool))
