"""Packaging: how long the chart takes to render and to check, per values file (`make bench`).

Rendering runs the real helm (``helm template``) for both protocols (``protocol=seldon|v2``); checking is
the strict CRD validation (SeldonDeployment; InferenceService and ServingRuntime) plus kubernetes-validate
over every rendered object, as tests/deploy does.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from benchmarks.common import percentiles, write_results
from glassbox.deploy.helm import Helm
from glassbox.deploy.validate import CORE_KINDS, crd_validators, custom_errors, validate_core

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts/glassbox"
REPEAT = 5


def _helm_bin() -> str:
    found = shutil.which("helm") or str(REPO / ".tools/bin/helm")
    if not Path(found).exists():
        raise SystemExit("helm not found: run `make tools`")
    return found


def main() -> Path:
    validators = crd_validators(REPO / "tests/data")
    helm = Helm(binary=_helm_bin(), namespace="ml")
    rows = []
    for values in [None, *sorted((CHART / "examples").glob("*.yaml"))]:
        files = [values] if values else []
        for protocol in ("seldon", "v2"):
            if protocol == "v2" and values is not None and values.stem == "native-explainer":
                continue  # Seldon's native explainer has no KServe counterpart (the schema refuses it)
            renders, checks = [], []
            for _ in range(REPEAT):
                start = time.perf_counter()
                docs = helm.render("glassbox", CHART, files, [f"protocol={protocol}"])
                renders.append(time.perf_counter() - start)
                start = time.perf_counter()
                for doc in docs:
                    if doc["kind"] in validators:  # SeldonDeployment, InferenceService, ServingRuntime
                        problems = custom_errors(validators, doc)
                        assert not problems, problems
                    elif doc["kind"] in CORE_KINDS:
                        validate_core(doc)
                checks.append(time.perf_counter() - start)
            rows.append(
                {
                    "values": values.stem if values else "defaults",
                    "protocol": protocol,
                    "objects": len(docs),
                    "render_p50_ms": percentiles(renders)["p50_ms"],
                    "check_p50_ms": percentiles(checks)["p50_ms"],
                }
            )
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return write_results(
        "deploy",
        rows,
        ["values", "protocol", "objects", "render_p50_ms", "check_p50_ms"],
        notes=f"`helm template` (real helm) and schema checks, median of {REPEAT} runs each, for both "
        "protocols of the chart: SeldonDeployments against Seldon Core 1.17.1's CRD, the InferenceService "
        "and ServingRuntime (protocol v2) against KServe 0.20's. "
        f"Load average (1/5/15 min) at the end: {load}.",
    )


if __name__ == "__main__":
    print(main().read_text())
