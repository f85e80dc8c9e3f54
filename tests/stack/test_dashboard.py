"""The dashboard file: every query uses only known variables, and substitution works as Grafana's."""

from __future__ import annotations

import re

from glassbox.stack import dashboard


def test_substitute_handles_grafana_variable_forms():
    expr = 'rate(x{namespace="$namespace", d="${deployment}-explainer", p="[[pod]]"}[$__rate_interval])'
    out = dashboard.substitute(expr, {"namespace": "default", "deployment": "loanclassifier", "pod": "p-1"})
    assert out == 'rate(x{namespace="default", d="loanclassifier-explainer", p="p-1"}[1m])'


def test_substitute_leaves_unknown_variables_visible():
    assert dashboard.substitute('up{a="$nope"}', {}) == 'up{a="$nope"}'


def test_every_query_uses_only_the_dashboards_own_variables():
    board = dashboard.load()
    defined = {v["name"] for v in board["templating"]["list"]} | set(dashboard.BUILTINS)
    for query in dashboard.panel_queries(board):
        used = set(re.findall(r"\$\{?(\w+)", query.expr))
        assert used <= defined, f"{query.panel}: undefined {used - defined}"


def test_the_dashboard_has_the_panels_operators_need():
    titles = " | ".join(q.panel for q in dashboard.panel_queries(dashboard.load())).lower()
    for needed in ("request rate", "error", "predict latency", "explain latency", "class mix", "certainty",
                   "forwarding", "outbox", "explainer cost", "cache hit", "queue depth", "review rate",
                   "live accuracy", "agreement", "drift p-value", "drift flags", "outlier rate",
                   "window fill"):  # fmt: skip
        assert needed in titles, needed
