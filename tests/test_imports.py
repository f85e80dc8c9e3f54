"""Nothing heavy is imported before Seldon forks: the component modules stay light.

``seldon-core-microservice`` imports the component class in its main process and then forks its
servers. A library imported there costs every process its start-up time and memory, and one that
starts threads at import (onnxruntime, numba) can leave forked workers hanging at exit. The heavy
libraries belong in ``load()``, which runs after the fork.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("alibi", "sklearn", "skl2onnx", "onnxruntime", "numba", "llvmlite", "kubernetes")
COMPONENTS = ("glassbox.serving.component", "glassbox.explain.component")


def imported_in_a_fresh_interpreter(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("module", COMPONENTS)
def test_a_component_module_imports_nothing_heavy(module):
    loaded = imported_in_a_fresh_interpreter(module)
    assert module in loaded
    heavy = sorted({name for name in loaded if name.split(".")[0] in HEAVY})
    assert heavy == [], f"{module} imports {heavy}; import them in load()"


def test_the_check_sees_a_heavy_import():
    # The same check on a module that does import one of them: it must be caught.
    assert "numba" in {
        name.split(".")[0] for name in imported_in_a_fresh_interpreter("glassbox.pipeline.compact")
    }
