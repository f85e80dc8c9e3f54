"""Check the Grafana dashboard against a Prometheus without Grafana.

Every panel query of ``charts/glassbox/dashboards/glassbox.json`` has its template variables
substituted the way Grafana would, then goes to Prometheus's HTTP API (``/api/v1/query``). A query
that fails to parse comes back as an error; one whose series do not exist comes back empty.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import requests

DASHBOARD = Path(__file__).resolve().parents[3] / "charts" / "glassbox" / "dashboards" / "glassbox.json"

# Grafana's built-in interval variables, given values that suit a 5 s scrape interval.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str


@dataclass(frozen=True)
class QueryCheck:
    query: PanelQuery
    expr: str  # after substitution
    error: str | None
    series: int

    @property
    def ok(self) -> bool:
        return self.error is None and self.series > 0


def load(path: Path = DASHBOARD) -> dict:
    return json.loads(Path(path).read_text())


def panel_queries(dashboard: dict) -> list[PanelQuery]:
    """Every target expression of every panel (rows' nested panels included)."""
    found = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            found.extend(
                PanelQuery(panel["title"], t.get("refId", "?"), t["expr"])
                for t in panel.get("targets", [])
                if t.get("expr")
            )

    walk(dashboard.get("panels", []))
    return found


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace ``$name``, ``${name}`` and ``[[name]]`` as Grafana does; unknown names are left alone."""
    values = {**BUILTINS, **variables}

    def repl(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


def check(prometheus_url: str, variables: dict[str, str], path: Path = DASHBOARD) -> list[QueryCheck]:
    """Run every panel query against Prometheus; one result per query."""
    results = []
    for query in panel_queries(load(path)):
        expr = substitute(query.expr, variables)
        reply = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
        body = reply.json()
        if body.get("status") != "success":
            results.append(QueryCheck(query, expr, f"{body.get('errorType')}: {body.get('error')}", 0))
        else:
            results.append(QueryCheck(query, expr, None, len(body["data"]["result"])))
    return results
