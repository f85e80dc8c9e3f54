"""Packaging: how long the chart takes to render and to check, per values file (`make bench`).

Rendering runs the real helm (``helm template``); checking is the strict SeldonDeployment CRD
validation plus kubernetes-validate over every rendered object, as tests/deploy does.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from benchmarks.common import percentiles, write_results
from glassbox.deploy.helm import Helm
from glassbox.deploy.validate import CORE_KINDS, crd_validator, validate_core

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts/glassbox"
REPEAT = 5


def _helm_bin() -> str:
    found = shutil.which("helm") or str(REPO / ".tools/bin/helm")
    if not Path(found).exists():
        raise SystemExit("helm not found: run `make tools`")
    return found


def main() -> Path:
    validator = crd_validator(REPO / "tests/data/seldon-core-1.17.1/seldondeployments-crd-v1.yaml")
    helm = Helm(binary=_helm_bin(), namespace="ml")
    rows = []
    for values in [None, *sorted((CHART / "examples").glob("*.yaml"))]:
        files = [values] if values else []
        renders, checks = [], []
        for _ in range(REPEAT):
            start = time.perf_counter()
            docs = helm.render("glassbox", CHART, files)
            renders.append(time.perf_counter() - start)
            start = time.perf_counter()
            for doc in docs:
                if doc["kind"] == "SeldonDeployment":
                    validator.validate(doc)
                elif doc["kind"] in CORE_KINDS:
                    validate_core(doc)
            checks.append(time.perf_counter() - start)
        rows.append(
            {
                "values": values.stem if values else "defaults",
                "objects": len(docs),
                "render_p50_ms": percentiles(renders)["p50_ms"],
                "check_p50_ms": percentiles(checks)["p50_ms"],
            }
        )
    return write_results(
        "deploy",
        rows,
        ["values", "objects", "render_p50_ms", "check_p50_ms"],
        notes=f"`helm template` (real helm) and schema checks, median of {REPEAT} runs each.",
    )


if __name__ == "__main__":
    print(main().read_text())
