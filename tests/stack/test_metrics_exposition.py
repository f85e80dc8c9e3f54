"""``promtool check metrics`` on the real exposition of every component of the local stack.

The stack runs as real processes (model and explainer microservices with two gunicorn workers each and
Seldon's gRPC process, the queue, the gateway, Prometheus) and gets the demo's traffic plus gRPC calls
to the model. Then each component's metrics endpoint is read as Prometheus reads it:

- Glassbox's own metrics (every family but Seldon's) pass promtool with no problem at all;
- on the Seldon components, the only problems are Seldon's own families (``seldon_api_model_*``, written
  by Seldon 1.19's exporter, not by Glassbox): no help text, and HELP/TYPE repeated once per worker
  process that recorded them (promtool: "second HELP line for metric name");
- our counts are summed over the pod's processes and carry Seldon's labels;
- every dashboard query still answers.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import requests
from seldon_core.seldon_client import SeldonClient

from conftest import require
from glassbox.explain.metrics import ExplainerMetrics
from glassbox.stack import demo
from glassbox.stack.settings import StackSettings
from glassbox.stack.supervisor import Stack
from glassbox.stack.traffic import load_rows

SELDON_OWNED = "seldon_api_model_"  # what Seldon's wrapper writes on a component's metrics port
SELDON_COMPONENTS = ("model", "explainer")
PARSE_ERROR = re.compile(
    r'text format parsing error in line \d+: second (HELP|TYPE) line for metric name "(\w+)"'
)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    require(path, "promtool (apt-get install prometheus)")
    return path


def check(promtool: str, text: str) -> tuple[int, list[str]]:
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    return result.returncode, (result.stdout + result.stderr).splitlines()


def family_of(line: str) -> str:
    """The metric name a line of Prometheus text belongs to."""
    if line.startswith("# HELP ") or line.startswith("# TYPE "):
        return line.split(" ")[2]
    return re.split(r"[{ ]", line, maxsplit=1)[0]


def split(text: str, seldon_owned: bool) -> tuple[str, str]:
    """(Glassbox's lines, Seldon's lines) of one exposition."""
    ours, seldons = [], []
    for line in text.splitlines():
        (seldons if seldon_owned and family_of(line).startswith(SELDON_OWNED) else ours).append(line)
    return "\n".join(ours) + "\n", "\n".join(seldons) + "\n" if seldons else ""


def first_block_per_family(text: str) -> str:
    """Seldon's text with only the first HELP/TYPE/sample block of each family (what it would be with
    one worker): what promtool says about the families beyond the repeated headers."""
    kept, seen, current = [], set(), None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = family_of(line)
            keep = current not in seen
            seen.add(current)
        if keep:
            kept.append(line)
    return "\n".join(kept) + "\n"


def test_explainer_metrics_have_help_text_in_process(promtool):
    """The explainer's families (no processes: its own registry) pass promtool, help text included."""
    from prometheus_client import generate_latest

    metrics = ExplainerMetrics()
    metrics.explained(0.4, calls=20, rows=2000, precision=0.97, coverage=0.1)
    metrics.cache(hits=1, misses=1)
    metrics.failed("overloaded")
    text = generate_latest(metrics.registry).decode()
    assert check(promtool, text) == (0, []), text
    assert len(re.findall(r"^# HELP glassbox_explainer_\w+ \S", text, re.M)) >= 9


# --- the whole stack ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory, trained_artifacts, prometheus_bin):
    settings = StackSettings(
        run_dir=tmp_path_factory.mktemp("metrics-stack"),
        artifacts=trained_artifacts,
        gateway_port=0,  # never the default 8003: another stack may run on this machine
        scrape_interval="1s",
        workers=2,  # counts must be summed over workers (and Seldon repeats its headers per worker)
    )
    stack = Stack(settings).up()
    yield stack
    stack.down()


def model_grpc(stack: Stack) -> SeldonClient:
    return SeldonClient(
        microservice_endpoint=f"127.0.0.1:{stack.components['model'].ports['grpc']}", transport="grpc"
    )


def exposition(stack: Stack, name: str) -> str:
    target = stack.components[name].scrape
    assert target is not None, name
    reply = requests.get(f"http://127.0.0.1:{target.port}{target.metrics_path}", timeout=10)
    reply.raise_for_status()
    return reply.text


@pytest.fixture(scope="module")
def traffic(stack):
    """The demo's traffic and reviews (REST through the gateway, feedback from the queue), then a gRPC
    prediction and feedback straight to the model: Seldon's gRPC server is another process."""
    result = demo.run_traffic(stack, rows=120, explanations=2)
    assert not result.traffic.failures, result.traffic.failures
    assert result.review.labelled > 0
    rows = load_rows(stack.settings.train_config, 3, seed=3)
    sc = model_grpc(stack)
    prediction = sc.microservice(
        method="predict", data=rows.X, names=rows.feature_names, payload_type="ndarray"
    )
    assert prediction.success, prediction.msg
    feedback = sc.microservice_feedback(prediction.request, prediction.response, reward=1.0)
    assert feedback.success, feedback.msg
    return result


@pytest.mark.slow
@pytest.mark.prometheus
@pytest.mark.parametrize("name", ["model", "explainer", "queue", "gateway"])
def test_glassbox_metrics_pass_promtool(stack, traffic, promtool, name):
    text = exposition(stack, name)
    ours, _ = split(text, seldon_owned=name in SELDON_COMPONENTS)
    assert re.search(r"^glassbox_|^seldon_api_executor", ours, re.M), f"{name}: no metrics of ours"
    assert check(promtool, ours) == (0, []), ours


@pytest.mark.slow
@pytest.mark.prometheus
@pytest.mark.parametrize("name", ["explainer", "queue", "gateway"])
def test_the_whole_exposition_passes_promtool(stack, traffic, promtool, name):
    """No Seldon-owned family here: the explainer gets no feedback, the others are not Seldon's."""
    text = exposition(stack, name)
    assert SELDON_OWNED not in text
    assert check(promtool, text) == (0, []), text


@pytest.mark.slow
@pytest.mark.prometheus
def test_on_the_model_only_seldons_own_families_fail(stack, traffic, promtool):
    """Feedback came over REST and over gRPC (two processes), so Seldon wrote its feedback families twice."""
    text = exposition(stack, "model")
    _, seldons = split(text, seldon_owned=True)
    families = {family_of(line) for line in seldons.splitlines()}
    assert families == {"seldon_api_model_feedback_total", "seldon_api_model_feedback_reward_total"}

    # Seldon's exporter: a HELP/TYPE pair per (worker, family), so promtool cannot even parse it ...
    code, problems = check(promtool, seldons)
    assert code == 1 and len(problems) == 1, problems
    assert PARSE_ERROR.search(problems[0]).group(2).startswith(SELDON_OWNED), problems
    # ... and what it says once each family appears only once: no help text (Seldon passes "").
    assert check(promtool, first_block_per_family(seldons)) == (
        3,
        [
            "seldon_api_model_feedback_reward_total no help text",
            "seldon_api_model_feedback_total no help text",
        ],
    )
    # The whole text: Glassbox's families come first and parse; the one error is on Seldon's.
    code, problems = check(promtool, text)
    assert code == 1 and len(problems) == 1, problems
    assert PARSE_ERROR.search(problems[0]).group(2).startswith(SELDON_OWNED), problems


def totals(text: str, family: str) -> tuple[float, list[dict[str, str]]]:
    from prometheus_client.parser import text_string_to_metric_families

    ours, _ = split(text, seldon_owned=True)
    samples = [s for f in text_string_to_metric_families(ours) for s in f.samples if s.name == family]
    return sum(s.value for s in samples), [s.labels for s in samples]


@pytest.mark.slow
@pytest.mark.prometheus
def test_counts_are_summed_over_the_pods_processes_with_seldons_labels(stack, traffic):
    model = stack.components["model"]
    rows = load_rows(stack.settings.train_config, 7, seed=5)
    before, _ = totals(exposition(stack, "model"), "glassbox_model_predictions_total")
    grpc = model_grpc(stack).microservice(
        method="predict", data=rows.X[:3], names=rows.feature_names, payload_type="ndarray"
    )
    assert grpc.success, grpc.msg
    for i in range(3, 7):  # one row per request: the two REST workers share them
        body = {"data": {"names": rows.feature_names, "ndarray": rows.X[i : i + 1].tolist()}}
        answer = requests.post(f"{model.url}/api/v1.0/predictions", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
    text = exposition(stack, "model")
    after, labels = totals(text, "glassbox_model_predictions_total")
    assert after - before == 7
    count, _ = totals(text, "glassbox_model_certainty_count")
    assert count == after  # every user row in the histogram too
    # One series per class for the pod (no worker_id/pid), labelled as Seldon labels its own.
    assert sorted(label["predicted_class"] for label in labels) == sorted(rows.class_names)
    seldon_labels = {
        "deployment_name": "loanclassifier",
        "predictor_name": "default",
        "model_name": "classifier",
    }
    assert all(label == {**seldon_labels, "predicted_class": label["predicted_class"]} for label in labels)
    seldon_feedback = [
        line for line in text.splitlines() if line.startswith("seldon_api_model_feedback_total{")
    ]
    assert seldon_feedback and all(
        all(f'{k}="{v}"' in line for k, v in seldon_labels.items()) for line in seldon_feedback
    )
    explained, labels = totals(exposition(stack, "explainer"), "glassbox_explainer_explanations_total")
    assert explained >= 1
    assert labels == [
        {**seldon_labels, "deployment_name": "loanclassifier-explainer", "model_name": "explainer"}
    ]


@pytest.mark.slow
@pytest.mark.prometheus
def test_every_dashboard_query_returns_data(stack, traffic):
    checks = demo.check_dashboard(stack, wait=60)
    assert len(checks) > 20
    failing = [
        f"{c.query.panel} [{c.query.ref_id}]: {c.error or 'no data'}: {c.expr}" for c in checks if not c.ok
    ]
    assert not failing, "\n".join(failing)
