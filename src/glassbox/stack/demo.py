"""`glassbox demo`: train if needed, start the stack, send demo traffic, print where to look.

The stack is left running afterwards (so the review page, Prometheus and the gateway can be
explored) and stopped with `glassbox down`; `--once` stops it before returning, for scripts and CI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

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


def ensure_trained(settings: StackSettings) -> bool:
    """Train into ``settings.artifacts`` unless a model is there; True when it trained."""
    if (settings.artifacts / "LATEST").exists():
        return False
    from glassbox.pipeline.config import load_config  # heavy imports only when training is needed
    from glassbox.pipeline.train import train

    print(f"no model at {settings.artifacts}: training with {settings.train_config} ...", flush=True)
    train(load_config(settings.train_config), settings.artifacts)
    return True


def run_traffic(stack: Stack, rows: int, explanations: int) -> DemoResult:
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
    return DemoResult(traffic, queue_records, reviewed)


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
    ensure_trained(settings)
    stack = Stack(settings)
    print(f"starting the local stack (logs in {settings.logs_dir}/) ...", flush=True)
    stack.up()
    try:
        result = run_traffic(stack, rows, explanations)
        result.dashboard = check_dashboard(stack)
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
