"""`make soak`: sustained load through the local gateway; throughput, latency and memory growth.

Starts its own stack on free ports (training first if needed), then for GLASSBOX_SOAK_SECONDS
(default 180) runs GLASSBOX_SOAK_THREADS prediction threads (default 4, one row per request) and
one explanation thread through the gateway, sampling each component's resident memory every
10 seconds. Stops by itself; results in benchmarks/results/soak.{json,md}.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks.common import percentiles, write_results
from benchmarks.stack_load import Load, demo_rows, gateway_url, rss_mb, start_stack


def main() -> Path:
    seconds = float(os.environ.get("GLASSBOX_SOAK_SECONDS", "180"))
    threads = int(os.environ.get("GLASSBOX_SOAK_THREADS", "4"))
    stack = start_stack()
    try:
        rows = demo_rows(stack)
        # Warm-up: first calls load lazily-initialised state; not measured.
        Load(gateway_url(stack, "predict"), rows, threads=1, budget=20).start().join()
        memory = [(0.0, rss_mb(stack))]
        predict = Load(gateway_url(stack, "predict"), rows, threads=threads).start()
        explain = Load(gateway_url(stack, "explain"), rows, threads=1).start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            time.sleep(min(10.0, seconds - elapsed))
            memory.append((time.monotonic() - started, rss_mb(stack)))
        predict.join(), explain.join()
        duration = time.monotonic() - started
    finally:
        stack.down()

    rows_out = []
    for kind, load in {"predict": predict, "explain": explain}.items():
        stats = percentiles(load.calls.latencies) if load.calls.latencies else {}
        rows_out.append(
            {"what": f"{kind} via gateway", "requests": len(load.calls.latencies), "ok": load.calls.ok,
             "errors": len(load.calls.latencies) - load.calls.ok, "req_per_s": load.calls.ok / duration,
             **{k: stats.get(k, "") for k in ("p50_ms", "p90_ms", "p99_ms")}}
        )  # fmt: skip
    first, last = memory[0][1], memory[-1][1]
    mid = memory[len(memory) // 2][1]
    for name in first:
        rows_out.append(
            {"what": f"RSS {name} (MB)", "rss_start_mb": first[name], "rss_mid_mb": mid[name],
             "rss_end_mb": last[name], "growth_mb": last[name] - first[name]}
        )  # fmt: skip
    errors = {
        k: dict(load.calls.errors.most_common(3)) for k, load in (("predict", predict), ("explain", explain))
    }
    notes = (
        f"{duration:.0f} s, {threads} prediction threads (1 row per request) + 1 explanation thread, "
        f"through the gateway on loopback; {os.cpu_count()} CPUs shared with everything else on the machine. "
        f"Memory sampled every 10 s ({len(memory)} samples). Errors seen: {errors}"
    )
    columns = ["what", "requests", "ok", "errors", "req_per_s", "p50_ms", "p90_ms", "p99_ms",
               "rss_start_mb", "rss_mid_mb", "rss_end_mb", "growth_mb"]  # fmt: skip
    return write_results("soak", rows_out, columns, notes)


if __name__ == "__main__":
    print(main().read_text())
