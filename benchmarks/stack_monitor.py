"""The monitor's place in the local stack: what it adds to `glassbox up`, and how long a shift takes
from the last shifted request to a flag in the monitor, a series in Prometheus and a pending alert.

Two configurations of the same stack (model, explainer, queue, gateway, Prometheus with the chart's
rules, 1 s scrape and evaluation), started alternately so the load of a shared machine falls on both:
with the monitor (its default in the stack) and without it (``GLASSBOX_STACK_MONITOR=false``, the
peer). Each round sends both the same traffic: one 100-row count window of ordinary rows, then one of
rows with Age + 15 years (fresh rows of the Adult table, as the demo does); with the monitor it times:

* ``flag``: until the monitor's own /metrics says ``glassbox_monitor_drift{feature="Age",window="count"} 1``
  (the model's forwarder batches rows to the monitor asynchronously; the window closes on its 100th row);
* ``series``: until Prometheus answers the dashboard's flag query with Age at 1 (one scrape later);
* ``alert``: until Prometheus lists ``GlassboxFeatureDrift`` for Age as pending (one evaluation later).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from benchmarks.common import ADULT_CONFIG, artifacts_dir, write_results

ROUNDS = 3
WINDOW = 100


def _wait(check: Callable[[], bool], timeout: float = 120.0) -> float:
    """Seconds until ``check()`` holds (polled every 50 ms); raises after ``timeout``."""
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
    return time.perf_counter() - start


def _age_flag_in_monitor(url: str) -> bool:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return 'glassbox_monitor_drift{feature="Age",window="count"} 1.0' in text


def _prometheus(url: str, path: str, **params: str) -> dict:
    return requests.get(f"{url}{path}", params=params, timeout=5).json()["data"]


def _age_in_prometheus(url: str) -> bool:
    query = 'max by (feature) (glassbox_monitor_drift{namespace="default"}) == 1'
    return "Age" in {r["metric"]["feature"] for r in _prometheus(url, "/api/v1/query", query=query)["result"]}


def _age_alert_pending(url: str) -> bool:
    labels = [a["labels"] for a in _prometheus(url, "/api/v1/alerts")["alerts"]]
    return any(x.get("alertname") == "GlassboxFeatureDrift" and x.get("feature") == "Age" for x in labels)


def _targets_up(url: str) -> int:
    return sum(r["value"][1] == "1" for r in _prometheus(url, "/api/v1/query", query="up")["result"])


def _one_round(monitor: bool, artifacts: Path, seed: int) -> dict:
    from glassbox.stack import traffic
    from glassbox.stack.settings import StackSettings
    from glassbox.stack.supervisor import Stack

    with tempfile.TemporaryDirectory(prefix="glassbox-bench-stack-monitor-") as run_dir:
        settings = StackSettings(
            run_dir=Path(run_dir), artifacts=artifacts, train_config=ADULT_CONFIG, gateway_port=0,
            scrape_interval="1s", monitor=monitor, monitor_window_rows=WINDOW,
            monitor_window_seconds=3600,  # only the count window decides
        )  # fmt: skip
        stack = Stack(settings)
        start = time.perf_counter()
        stack.up()
        result = {"monitor": monitor, "up_s": time.perf_counter() - start}
        try:
            # Steady state first: Prometheus applies its targets a few seconds after it starts.
            targets = sum(1 for c in stack.components.values() if c.scrape)
            _wait(lambda: _targets_up(stack.url("prometheus")) == targets)
            result["scraping_s"] = time.perf_counter() - start
            # The same traffic on both: one window of ordinary rows, then one with Age + 15 years.
            sc = traffic.seldon_client(stack.gateway_endpoint, settings.namespace, settings.deployment)
            rows = traffic.load_rows(ADULT_CONFIG, 2 * WINDOW, seed=seed)
            ordinary = traffic.Rows(rows.X[:WINDOW], rows.y[:WINDOW], rows.feature_names, rows.class_names)
            shifted = traffic.Rows(rows.X[WINDOW:], rows.y[WINDOW:], rows.feature_names, rows.class_names)
            for first in range(0, WINDOW, 10):
                answer = sc.predict(data=ordinary.X[first : first + 10], names=ordinary.feature_names)
                assert answer.success, answer.msg
            report = traffic.TrafficReport()
            traffic.send_monitor_traffic(sc, shifted, report, shifted_rows=WINDOW, outliers=0)
            assert not report.failures, report.failures
            sent = time.perf_counter()
            if monitor:
                monitor_url, prometheus = stack.url("monitor"), stack.url("prometheus")
                _wait(lambda: _age_flag_in_monitor(monitor_url))
                result["flag_s"] = time.perf_counter() - sent
                _wait(lambda: _age_in_prometheus(prometheus))
                result["series_s"] = time.perf_counter() - sent
                _wait(lambda: _age_alert_pending(prometheus))
                result["alert_s"] = time.perf_counter() - sent
            else:
                time.sleep(5.0)  # about as long as the other stack spends waiting, before `down`
        finally:
            stop = time.perf_counter()
            stack.down()
            result["down_s"] = time.perf_counter() - stop
    return result


def main() -> Path:
    artifacts = artifacts_dir()
    results = []
    for round_ in range(ROUNDS):
        for monitor in (True, False):  # alternate, so both see the same machine
            results.append(_one_round(monitor, artifacts, seed=100 + round_))
            print(results[-1], flush=True)
    rows = []
    for name, monitor in (("with the monitor", True), ("without (peer)", False)):
        mine = [r for r in results if r["monitor"] is monitor]
        row = {"stack": name, "runs": len(mine)}
        for key in ("up_s", "scraping_s", "down_s", "flag_s", "series_s", "alert_s"):
            values = [r[key] for r in mine if key in r]
            if values:
                row[f"{key} p50"] = statistics.median(values)
        rows.append(row)
    with_up, without_up = rows[0]["up_s p50"], rows[1]["up_s p50"]
    rows[0]["up ratio"] = with_up / without_up
    load = os.getloadavg()
    notes = (
        f"{ROUNDS} rounds, each starting both stacks alternately (Prometheus with the chart's rules, 1 s "
        f"scrape and evaluation, {WINDOW}-row count windows). Times in seconds, medians. `up`: `Stack.up()`; "
        "`scraping`: from the start of `up` until Prometheus has scraped every target (it applies its "
        "targets a few seconds after it starts; the traffic waits for this). `flag`, `series`, "
        "`alert`: from the last shifted prediction's answer until the monitor's own gauge, Prometheus's "
        "series and the pending GlassboxFeatureDrift alert show Age (the alert then fires after its 5 min "
        f"`for`). Machine: {os.cpu_count()} CPUs shared with other jobs; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)."
    )
    columns = [
        "stack",
        "runs",
        "up_s p50",
        "up ratio",
        "scraping_s p50",
        "down_s p50",
        "flag_s p50",
        "series_s p50",
        "alert_s p50",
    ]
    return write_results("stack_monitor", rows, columns, notes)


if __name__ == "__main__":
    print(main().read_text())
