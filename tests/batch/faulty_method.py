"""A method plugged in by name (``faulty_method:load``) for the batch tests: it names "Age" as the one
feature that matters (so it disagrees with most anchors) and fails on rows whose Age is ``fail_age``
(or kills its worker process on ``exit_age``).
Workers import it from ``PYTHONPATH`` (tests/batch), as a real plug-in method would be imported."""

from __future__ import annotations

import os
import time
from typing import Any


def load(model: Any, params: dict[str, Any]):
    fail_age = float(params.get("fail_age", -1))
    sleep_s = float(params.get("sleep_s", 0))
    exit_age = float(params.get("exit_age", -1))  # the worker process dies, as in an OOM kill

    def explain(instance, seed: int) -> dict[str, Any]:
        time.sleep(sleep_s)
        if float(instance[0]) == exit_age:
            os._exit(1)
        if float(instance[0]) == fail_age:
            raise ValueError(f"this method refuses Age {fail_age:g}")
        return {"features": ["Age"], "seed": seed}

    return explain
