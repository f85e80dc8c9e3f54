"""Demo traffic through the gateway with SeldonClient: predictions, explanations, feedback, a bad request.

Rows come from the bundled Adult data (the pipeline's own loader, so they are in the model's
encoding); the true labels make feedback honest: reward 1 when the prediction was right.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
from seldon_core.seldon_client import SeldonClient
from seldon_core.utils import seldon_message_to_json

from glassbox.pipeline.config import load_config
from glassbox.pipeline.data import load_dataset


@dataclass
class Rows:
    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str]


@dataclass
class TrafficReport:
    """What the demo sent and what came back."""

    prediction_requests: int = 0
    rows: int = 0
    classes: Counter = field(default_factory=Counter)
    uncertain_rows: int = 0
    explanations: list[dict] = field(default_factory=list)
    feedback_sent: int = 0
    feedback_rewarded: int = 0
    rejected: dict = field(default_factory=dict)  # the deliberately bad request's status and message
    failures: list[str] = field(default_factory=list)
    shifted_rows: int = 0  # rows sent with SHIFT applied (the monitor's drift panels)
    outlier_rows: int = 0  # rows sent with OUT_OF_RANGE values (the monitor's outlier panels)


def load_rows(config_path: Path, n: int, seed: int = 0) -> Rows:
    """``n`` random rows of the training table in the model's encoding, with their true labels."""
    data = load_dataset(load_config(config_path))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(data.X), size=min(n, len(data.X)), replace=False)
    return Rows(data.X[pick], data.y[pick], list(data.feature_names), list(data.class_names))


def seldon_client(gateway_endpoint: str, namespace: str, deployment: str) -> SeldonClient:
    """The client exactly as the classic Seldon demos build it, pointed at the local gateway."""
    return SeldonClient(
        gateway="ambassador",
        gateway_endpoint=gateway_endpoint,
        namespace=namespace,
        deployment_name=deployment,
        payload_type="ndarray",
        transport="rest",
        client_return_type="dict",
    )


def feedback_body(request: Any, response: dict, truth_index: int, class_names: list[str]) -> dict:
    """Seldon feedback: the prediction's request and response, the one-hot truth and a 0/1 reward.

    ``request`` may be SeldonClient's ``result.request``, a SeldonMessage proto even when the client
    returns dicts.
    """
    if not isinstance(request, dict):
        request = seldon_message_to_json(request)
    probabilities = response["data"]["ndarray"][0]
    reward = int(int(np.argmax(probabilities)) == truth_index)
    truth = [float(i == truth_index) for i in range(len(class_names))]
    return {
        "request": request,
        "response": response,
        "truth": {"data": {"names": class_names, "ndarray": [truth]}},
        "reward": reward,
    }


def send_demo_traffic(
    sc: SeldonClient,
    rows: Rows,
    threshold: float,
    explanations: int = 3,
    feedback: int = 20,
    batch: int = 10,
    predictor: str = "default",
) -> TrafficReport:
    report = TrafficReport()
    uncertain_rows: list[int] = []
    for start in range(0, len(rows.X), batch):
        chunk = rows.X[start : start + batch]
        result = sc.predict(data=chunk, names=rows.feature_names)
        report.prediction_requests += 1
        if not result.success:
            report.failures.append(f"predict: {result.msg}")
            continue
        probabilities = np.asarray(result.response["data"]["ndarray"], dtype=float)
        report.rows += len(probabilities)
        report.classes.update(rows.class_names[i] for i in probabilities.argmax(axis=1))
        uncertain = np.flatnonzero(probabilities.max(axis=1) < threshold)
        report.uncertain_rows += len(uncertain)
        uncertain_rows.extend(start + int(i) for i in uncertain)

    # Feedback one row at a time, as a client that later learned the truth would send it.
    for i in range(min(feedback, len(rows.X))):
        result = sc.predict(data=rows.X[i : i + 1], names=rows.feature_names)
        report.prediction_requests += 1
        if not result.success:
            report.failures.append(f"predict: {result.msg}")
            continue
        if max(result.response["data"]["ndarray"][0]) < threshold:
            report.uncertain_rows += 1  # forwarded too
        body = feedback_body(result.request, result.response, int(rows.y[i]), rows.class_names)
        sent = sc.feedback(raw_request=body)
        if sent.success:
            report.feedback_sent += 1
            report.feedback_rewarded += body["reward"]
        else:
            report.failures.append(f"feedback: {sent.msg}")

    # Explain uncertain rows first (the interesting ones); ask for the first one twice: a cache hit.
    targets = (uncertain_rows or list(range(len(rows.X))))[:explanations]
    for i in [*targets, *targets[:1]]:
        result = sc.explain(data=rows.X[i : i + 1], names=rows.feature_names, predictor=predictor)
        if not result.success:
            report.failures.append(f"explain: {result.msg}")
            continue
        report.explanations.append(result.response.get("jsonData", result.response))
    return report


# What the demo does to the data so the monitor has something to find: applicants 15 years older than
# the training population (drift on Age), and a few rows far beyond any training value (outliers).
SHIFT = ("Age", 15.0)
OUT_OF_RANGE = {"Age": 130.0, "Capital Gain": 500_000.0, "Capital Loss": 20_000.0, "Hours per week": 168.0}


def shifted(rows: Rows, n: int, feature: str = SHIFT[0], delta: float = SHIFT[1]) -> np.ndarray:
    """``n`` of the rows (cycled) with ``delta`` added to ``feature``."""
    X = rows.X[np.arange(n) % len(rows.X)].copy()
    X[:, rows.feature_names.index(feature)] += delta
    return X


def out_of_range(rows: Rows, n: int, values: dict[str, float] = OUT_OF_RANGE) -> np.ndarray:
    """``n`` of the rows with ``values`` set: valid input the model answers, unlike any training row."""
    X = rows.X[np.arange(n) % len(rows.X)].copy()
    for name, value in values.items():
        X[:, rows.feature_names.index(name)] = value
    return X


def send_monitor_traffic(
    sc: SeldonClient, rows: Rows, report: TrafficReport, shifted_rows: int, outliers: int = 5, batch: int = 10
) -> None:
    """After the ordinary traffic: a shifted segment, then out-of-range rows, counted in ``report``."""
    for X, kind in (
        (shifted(rows, shifted_rows), "shifted_rows"),
        (out_of_range(rows, outliers), "outlier_rows"),
    ):
        for start in range(0, len(X), batch):
            result = sc.predict(data=X[start : start + batch], names=rows.feature_names)
            if not result.success:
                report.failures.append(f"predict ({kind}): {result.msg}")
                continue
            setattr(report, kind, getattr(report, kind) + len(result.response["data"]["ndarray"]))


def send_bad_request(gateway_endpoint: str, namespace: str, deployment: str) -> dict:
    """One malformed request (a row of the wrong width), to show the 4xx and its message."""
    url = f"http://{gateway_endpoint}/seldon/{namespace}/{deployment}/api/v1.0/predictions"
    reply = requests.post(url, json={"data": {"ndarray": [[1.0, 2.0, 3.0]]}}, timeout=30)
    try:
        message = reply.json()["status"]["info"]
    except (ValueError, KeyError, TypeError):
        message = reply.text[:300]
    return {"status": reply.status_code, "body": message}
