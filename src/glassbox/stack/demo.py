"""`glassbox demo`: train if needed, start the stack, send demo traffic, print where to look.

The stack is left running afterwards (so the review page, Prometheus and the gateway can be
explored) and stopped with `glassbox down`; `--once` stops it before returning, for scripts and CI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import requests

from glassbox.errors import ConfigError
from glassbox.stack import dashboard
from glassbox.stack import traffic as demo_traffic
from glassbox.stack.report import describe
from glassbox.stack.review import QueueClient, ReviewReport, review
from glassbox.stack.settings import StackSettings
from glassbox.stack.supervisor import Stack


@dataclass
class DemoResult:
    traffic: demo_traffic.TrafficReport
    queue_records: int
    review: ReviewReport
    dashboard: list[dashboard.QueryCheck] = field(default_factory=list)
    outlier_records: int | None = None  # records with source=outlier after the out-of-range rows (monitor)
    drifted: list[str] | None = None  # features the monitor flags (Prometheus), after the shifted rows
    methods: dict | None = None  # one row's attributions, reason codes and counterfactuals (issue #13)


def ensure_trained(settings: StackSettings) -> bool:
    """Train into ``settings.artifacts`` unless a model is there; True when it trained."""
    if (settings.artifacts / "LATEST").exists():
        return False
    from glassbox.pipeline.config import load_config  # heavy imports only when training is needed
    from glassbox.pipeline.train import train

    print(f"no model at {settings.artifacts}: training with {settings.train_config} ...", flush=True)
    train(load_config(settings.train_config), settings.artifacts)
    return True


def run_traffic(stack: Stack, rows: int, explanations: int, seed: int = 0) -> DemoResult:
    """The demo's traffic and reviews against a running stack (also used by the tests)."""
    s = stack.settings
    data = demo_traffic.load_rows(s.train_config, rows)
    sc = demo_traffic.seldon_client(stack.gateway_endpoint, s.namespace, s.deployment)
    traffic = demo_traffic.send_demo_traffic(
        sc, data, s.uncertainty_threshold, explanations=explanations, predictor=s.predictor
    )
    traffic.rejected = demo_traffic.send_bad_request(stack.gateway_endpoint, s.namespace, s.deployment)
    queue = QueueClient(stack.url("queue"), s.queue_api_key)
    queue_records = queue.wait_for(traffic.uncertain_rows)
    truths = {tuple(map(float, x)): data.class_names[int(t)] for x, t in zip(data.X, data.y, strict=True)}
    reviewed = review(stack.url("queue"), s.queue_api_key, truths)
    result = DemoResult(traffic, queue_records, reviewed)
    result.methods = explain_methods(stack, data.X[0].tolist())
    if "monitor" in stack.components:  # last, so the reviewers above saw ordinary traffic
        result.outlier_records = run_monitor_traffic(stack, traffic, seed)
    return result


def run_monitor_traffic(stack: Stack, traffic: demo_traffic.TrafficReport, seed: int = 0) -> int:
    """Two count windows' worth of shifted rows (one window at least is all shifted), then out-of-range
    rows; returns the queue's outlier records once those rows are among them."""
    s = stack.settings
    # Fresh rows for the shift: repeating rows already sent would look like drift on every feature.
    fresh = demo_traffic.load_rows(s.train_config, 2 * s.monitor_window_rows, seed=seed + 1)
    sc = demo_traffic.seldon_client(stack.gateway_endpoint, s.namespace, s.deployment)
    queue = QueueClient(stack.url("queue"), s.queue_api_key)
    before, sent = queue.count(source="outlier"), traffic.outlier_rows
    demo_traffic.send_monitor_traffic(sc, fresh, traffic, shifted_rows=len(fresh.X))
    return queue.wait_for(before + traffic.outlier_rows - sent, source="outlier")


def explain_methods(stack: Stack, row: list[float]) -> dict:
    """One demo row's attributions, reason codes and counterfactuals (SeldonClient.explain, jsonData)."""
    s = stack.settings
    sc = demo_traffic.seldon_client(stack.gateway_endpoint, s.namespace, s.deployment)
    body = {"instances": [row], "method": ["attributions", "counterfactuals"], "reason_codes": {"top_k": 3}}
    result = sc.explain(json_data=body, predictor="default")
    if not result.success:
        return {"error": result.msg}
    return (result.response.get("jsonData", {}).get("explanations") or [{}])[0]


def _methods_lines(record: dict) -> list[str]:
    if "error" in record or "attributions" not in record:
        return [f"  attributions   FAILED: {record.get('error', record)}"[:200]]
    attributions, codes = record["attributions"], record["reason_codes"]
    top = sorted(attributions["values"].items(), key=lambda item: -abs(item[1]))[:3]
    terms = ", ".join(f"{name} {value:+.2f}" for name, value in top)
    lines = [
        f"  attributions   P({attributions['class']}) {attributions['probability']:.2f} = base "
        f"{attributions['base_value']:.2f} + {terms} + the other features"
    ]
    lines += [f"  reason code    {reason['sentence']}" for reason in codes["reasons"]] or [
        f"  reason codes   none: nothing pushed toward {codes['adverse_class']}"
    ]
    found = record["counterfactuals"]
    nearest = found["items"][0]["sentence"] if found["items"] else found["message"]
    return [*lines, f"  counterfactual {nearest}"]


def drifted_features(stack: Stack, wait: float = 0.0) -> list[str]:
    """Features whose drift flag the stack's Prometheus holds at 1 (either window kind), retried until
    there is one or ``wait`` ends (the shifted window closes once the model's forwarder delivered it)."""
    if "prometheus" not in stack.components:
        return []
    query = f'max by (feature) (glassbox_monitor_drift{{namespace="{stack.settings.namespace}"}}) == 1'
    deadline = time.monotonic() + wait
    while True:
        reply = requests.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": query}, timeout=10)
        flagged = sorted(r["metric"].get("feature", "?") for r in reply.json()["data"]["result"])
        if flagged or time.monotonic() > deadline:
            return flagged
        time.sleep(1.0)


def check_dashboard(stack: Stack, wait: float = 20.0) -> list[dashboard.QueryCheck]:
    """Every dashboard query against the stack's Prometheus, retried until all have data or ``wait`` ends."""
    if "prometheus" not in stack.components:
        return []
    variables = {"namespace": stack.settings.namespace, "deployment": stack.settings.deployment}
    deadline = time.monotonic() + wait
    while True:
        checks = dashboard.check(stack.url("prometheus"), variables)
        if all(c.ok for c in checks) or time.monotonic() > deadline:
            return checks
        time.sleep(2.0)


def _fmt(value: float | None) -> str:
    return "n/a (too few double-labelled records)" if value is None else f"{value:.2f}"


def summary(result: DemoResult) -> str:
    t, r = result.traffic, result.review
    explained = [e for e in t.explanations if isinstance(e, dict)]
    lines = [
        "Demo traffic (through the gateway, with SeldonClient)",
        f"  predictions    {t.rows} rows in {t.prediction_requests} requests; classes {dict(t.classes)}",
        f"  uncertain      {t.uncertain_rows} rows below the threshold, forwarded to the review queue",
        f"  explanations   {len(explained)} (the first asked twice: the second is a cache hit)",
    ]
    for e in explained[:3]:
        first = (e.get("explanations") or [e])[0]
        lines.append(
            f"                 {' AND '.join(first.get('anchor', [])) or '(empty anchor)'}"
            f"  precision {first.get('precision', float('nan')):.2f}"
        )
    lines += [
        f"  feedback       {t.feedback_sent} sent, {t.feedback_rewarded} with reward 1",
        f"  bad request    answered {t.rejected.get('status')}: {t.rejected.get('body', '')[:150]}",
        f"  review queue   {result.queue_records} records; {r.labelled} labels by two reviewers; "
        f"status {r.by_status}; agreement alpha {_fmt(r.agreement.get('alpha'))}",
    ]
    if result.outlier_records is not None:
        feature, delta = demo_traffic.SHIFT
        lines += [
            f"  monitor        {t.shifted_rows} rows with {feature} + {delta:g}, {t.outlier_rows} "
            f"out-of-range rows; {result.outlier_records} outlier records in the queue (source=outlier)",
            f"  drift flagged  {', '.join(result.drifted or []) or 'none (yet: see the dashboard)'}",
        ]
    if result.methods is not None:
        lines += _methods_lines(result.methods)
    if t.failures:
        lines.append(f"  FAILURES       {t.failures}")
    if result.dashboard:
        ok = sum(c.ok for c in result.dashboard)
        lines.append(f"  dashboard      {ok}/{len(result.dashboard)} panel queries return data in Prometheus")
        missing = [c for c in result.dashboard if not c.ok]
        lines += [f"    no data: {c.query.panel} [{c.query.ref_id}] {c.error or ''}" for c in missing]
    return "\n".join(lines)


def run_demo(once: bool = False, rows: int = 200, explanations: int = 3) -> int:
    settings = StackSettings()
    if settings.protocol != "seldon":  # its traffic is SeldonClient's, through the Seldon routes
        raise ConfigError(
            "glassbox demo drives SeldonClient, so it runs the Seldon stack: unset GLASSBOX_STACK_PROTOCOL "
            "(for the V2 servers: glassbox up --protocol v2)"
        )
    ensure_trained(settings)
    stack = Stack(settings)
    print(f"starting the local stack (logs in {settings.logs_dir}/) ...", flush=True)
    stack.up()
    try:
        result = run_traffic(stack, rows, explanations)
        result.dashboard = check_dashboard(stack)
        result.drifted = drifted_features(stack, wait=30.0)
        print(describe(stack))
        print(summary(result))
    except BaseException:
        stack.down()
        raise
    if once:
        stack.down()
        print("\nstack stopped (--once)")
    else:
        print("\nthe stack keeps running: `glassbox status`, `glassbox logs`, stop it with `glassbox down`")
    return 1 if result.traffic.failures else 0
