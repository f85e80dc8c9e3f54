"""`make chaos`: faults under load, through the local gateway.

1. Queue outage: every predicted row is forwarded (threshold 1.01); the queue is killed (SIGKILL)
   mid-load and restarted on the same port and database. When the outbox has drained, the queue must
   hold exactly as many prediction records as rows the model answered: the count shows nothing lost
   and nothing duplicated.
2. Model outage under explainer load: the model is killed while explanations run, then restarted;
   the explainer's answers are counted per phase with the errors it returned.

Bounded: each phase has a fixed length and a request budget. Results in benchmarks/results/chaos.*.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import measures, write_results
from benchmarks.stack_load import Load, demo_rows, gateway_url, scrape, start_stack
from glassbox.stack.review import QueueClient
from glassbox.stack.supervisor import Stack

PHASE = float(os.environ.get("GLASSBOX_CHAOS_PHASE_SECONDS", "10"))


def crash_and_restart(stack: Stack, name: str, load: Load) -> tuple[float, float]:
    """PHASE s of load, SIGKILL ``name``, PHASE s without it, restart it, PHASE s more; then stop the load.

    Returns the monotonic times the component went down and was healthy again.
    """
    time.sleep(PHASE)
    stack.stop_component(name, crash=True)
    down_at = time.monotonic()
    time.sleep(PHASE)
    stack.restart(name)
    up_at = time.monotonic()
    time.sleep(PHASE)
    load.join()
    return down_at, up_at


def queue_outage(stack: Stack) -> dict:
    rows = demo_rows(stack)
    load = Load(
        gateway_url(stack, "predict"), rows, threads=2, batch=5, budget=20_000, threshold=1.01
    ).start()
    down_at, up_at = crash_and_restart(stack, "queue", load)
    sent_rows = load.calls.ok * load.batch
    queue = QueueClient(stack.url("queue"), stack.settings.queue_api_key)
    started = time.monotonic()
    received = queue.wait_for(sent_rows, timeout=180)
    drained_s = time.monotonic() - started
    model_metrics = scrape(f"http://127.0.0.1:{stack.components['model'].ports['metrics']}/prometheus")
    during = Counter(s for t, s in load.calls.finished_at if down_at <= t < up_at)
    return {
        "scenario": "queue killed and restarted under prediction load",
        "requests": len(load.calls.latencies),
        "predict_errors": len(load.calls.latencies) - load.calls.ok,
        "predict_status_while_queue_down": dict(during),
        "rows_answered": sent_rows,
        "records_in_queue": received,
        "lost": sent_rows - received,
        "spilled_to_outbox": model_metrics.get("glassbox_model_forward_spilled_total", 0.0),
        "forward_retries": model_metrics.get("glassbox_model_forward_retries_total", 0.0),
        "dropped": model_metrics.get("glassbox_model_forward_dropped_total", 0.0),
        "drain_s": round(drained_s, 1),
    }


def model_outage(stack: Stack) -> dict:
    rows = demo_rows(stack)
    load = Load(gateway_url(stack, "explain"), rows, threads=2, budget=2_000).start()
    down_at, up_at = crash_and_restart(stack, "model", load)

    def phase(lo: float, hi: float) -> dict:
        return dict(Counter(s for t, s in load.calls.finished_at if lo <= t < hi))

    after_ok = sorted(t for t, s in load.calls.finished_at if t >= up_at and s == "200")
    return {
        "scenario": "model killed and restarted under explanation load",
        "requests": len(load.calls.latencies),
        "status_before": phase(0, down_at),
        "status_while_model_down": phase(down_at, up_at),
        "status_after_restart": phase(up_at, float("inf")),
        "first_ok_after_restart_s": round(after_ok[0] - up_at, 1) if after_ok else None,
        "explainer_errors": dict(load.calls.errors.most_common(3)),
    }


def main() -> Path:
    stack = start_stack(uncertainty_threshold=1.01)  # forward every row: the count covers all traffic
    try:
        results = [queue_outage(stack), model_outage(stack)]
    finally:
        stack.down()
    notes = (
        f"Phases of {PHASE:.0f} s each (before / outage / after), through the gateway on loopback, "
        f"{os.cpu_count()} CPUs. Components are killed with SIGKILL, as a crash would, and restarted on the "
        "same ports and data."
    )
    return write_results("chaos", measures(results), ["scenario", "measure", "value"], notes)


if __name__ == "__main__":
    print(main().read_text())
