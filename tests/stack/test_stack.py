"""The whole local stack as real processes: up on free ports, SeldonClient through the gateway,
uncertain predictions in the queue, Prometheus scraping it all and the dashboard's every query
answering, and `down` leaving nothing behind. The stack starts once for the module."""

from __future__ import annotations

import re
import time

import numpy as np
import psutil
import pytest
import requests

from glassbox.stack import demo
from glassbox.stack.process import process_group_members
from glassbox.stack.report import describe
from glassbox.stack.review import QueueClient
from glassbox.stack.settings import StackSettings
from glassbox.stack.supervisor import Stack, read_state
from glassbox.stack.traffic import TrafficReport, feedback_body, load_rows, seldon_client

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, trained_artifacts, prometheus_bin):
    settings = StackSettings(
        run_dir=tmp_path_factory.mktemp("stack-run"),
        artifacts=trained_artifacts,
        gateway_port=0,  # never the default 8003: another stack may run on this machine
        scrape_interval="1s",
        monitor_window_seconds=3600,  # only count windows close: the drift test below sees those alone
    )
    stack = Stack(settings).up()
    yield stack
    stack.down()


@pytest.fixture(scope="module")
def rows(stack):
    return load_rows(stack.settings.train_config, 300, seed=7)


@pytest.fixture(scope="module")
def sc(stack):
    return seldon_client(stack.gateway_endpoint, "default", "loanclassifier")


def test_every_process_is_up_and_listens_on_loopback_only(stack):
    assert set(stack.components) == {"queue", "monitor", "model", "explainer", "gateway", "prometheus"}
    for name, component in stack.components.items():
        members = process_group_members(component.process.pid)
        assert members, f"{name} is not running"
        listening = [
            c.laddr
            for pid in members
            for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening, f"{name} listens nowhere"
        assert {addr.ip for addr in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, (name, listening)


def test_state_file_records_every_process(stack):
    records = read_state(stack.settings)
    assert {n: r.pid for n, r in records.items()} == {n: c.process.pid for n, c in stack.components.items()}
    assert all(r.healthy() for r in records.values())


def test_seldonclient_predicts_through_the_gateway(sc, rows):
    result = sc.predict(data=rows.X[:3], names=rows.feature_names)
    assert result.success, result.msg
    assert result.response["data"]["names"] == rows.class_names
    probabilities = np.asarray(result.response["data"]["ndarray"])
    assert probabilities.shape == (3, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_classic_v01_route_answers_too(stack, rows):
    url = f"http://{stack.gateway_endpoint}/seldon/default/loanclassifier/api/v0.1/predictions"
    reply = requests.post(url, json={"data": {"names": rows.feature_names, "ndarray": rows.X[:1].tolist()}})
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["data"]["ndarray"]) == 1


def test_seldonclient_explains_through_the_gateway(sc, rows):
    result = sc.explain(data=rows.X[:1], names=rows.feature_names, predictor="default")
    assert result.success, result.msg
    explanation = result.response["jsonData"]["explanations"][0]
    assert explanation["anchor"], explanation
    assert 0.0 <= explanation["precision"] <= 1.0


def test_the_explainer_is_its_own_deployment(stack, rows):
    explainer = seldon_client(stack.gateway_endpoint, "default", "loanclassifier-explainer")
    result = explainer.predict(data=rows.X[1:2], names=rows.feature_names)
    assert result.success, result.msg
    assert result.response["jsonData"]["explanations"][0]["anchor"]


def test_seldonclient_feedback_reaches_the_model(stack, sc, rows):
    metrics_url = f"http://127.0.0.1:{stack.components['model'].ports['metrics']}/prometheus"

    def feedback_count() -> float:
        lines = requests.get(metrics_url).text.splitlines()
        counts = [line for line in lines if line.startswith("seldon_api_model_feedback_total")]
        return sum(float(line.rsplit(" ", 1)[1]) for line in counts)

    before = feedback_count()
    prediction = sc.predict(data=rows.X[:1], names=rows.feature_names)
    body = feedback_body(prediction.request, prediction.response, int(rows.y[0]), rows.class_names)
    body["reward"] = 1  # Seldon counts only non-zero rewards in seldon_api_model_feedback_total
    result = sc.feedback(raw_request=body)
    assert result.success, result.msg
    assert feedback_count() == before + 1


def test_bad_input_through_the_gateway_is_a_4xx_naming_the_problem(stack):
    url = f"http://{stack.gateway_endpoint}/seldon/default/loanclassifier/api/v1.0/predictions"
    reply = requests.post(url, json={"data": {"ndarray": [[1.0, 2.0, 3.0]]}})
    assert reply.status_code == 400
    assert "12" in reply.text and "3" in reply.text  # expected and received widths


def test_unknown_deployment_is_404_with_the_routes(stack):
    url = f"http://{stack.gateway_endpoint}/seldon/default/nope/api/v1.0/predictions"
    reply = requests.post(url, json={})
    assert reply.status_code == 404
    assert "POST /seldon/default/loanclassifier/api/v1.0/predictions" in reply.json()["routes"]


def test_uncertain_predictions_reach_the_queue(stack, sc, rows):
    queue = QueueClient(stack.url("queue"), stack.settings.queue_api_key)
    before = queue.count(source="prediction")  # the monitor adds its outliers (source=outlier) too
    result = sc.predict(data=rows.X[100:300], names=rows.feature_names)
    assert result.success, result.msg
    probabilities = np.asarray(result.response["data"]["ndarray"])
    uncertain = int((probabilities.max(axis=1) < stack.settings.uncertainty_threshold).sum())
    assert uncertain > 0, "the sample has no uncertain row: pick another"
    assert queue.wait_for(before + uncertain, source="prediction") == before + uncertain
    records = queue.records(limit=1000)["records"]
    assert {r["source"] for r in records} <= {"prediction", "outlier"}
    predictions = [r for r in records if r["source"] == "prediction"]
    assert all(r["certainty"]["max_probability"] < stack.settings.uncertainty_threshold for r in predictions)


def test_every_dashboard_query_returns_data_after_demo_traffic(stack):
    result = demo.run_traffic(stack, rows=120, explanations=2)
    assert not result.traffic.failures, result.traffic.failures
    assert result.review.labelled > 0
    assert result.traffic.shifted_rows and result.outlier_records  # data for the monitor's panels
    # issue #13: one row's attributions, reason codes and counterfactual, through the gateway
    assert result.methods and {"attributions", "reason_codes", "counterfactuals"} <= set(result.methods)
    assert "  attributions   P(" in demo.summary(result) and "  counterfactual " in demo.summary(result)
    checks = demo.check_dashboard(stack, wait=60)
    assert len(checks) > 20
    failing = [
        f"{c.query.panel} [{c.query.ref_id}]: {c.error or 'no data'}: {c.expr}" for c in checks if not c.ok
    ]
    assert not failing, "\n".join(failing)


def test_the_monitor_flags_the_shifted_feature_and_the_alert_rules_see_it(stack):
    """The demo's monitor traffic: its out-of-range rows become outlier records, its shifted segment
    flags Age, and the local Prometheus, which loads the chart's rules file, has the drift alert pending
    (or firing) for Age alone."""
    queue = QueueClient(stack.url("queue"), stack.settings.queue_api_key)
    before = queue.count(source="outlier")
    traffic = TrafficReport()
    assert demo.run_monitor_traffic(stack, traffic, seed=7) >= before + 5
    assert not traffic.failures and (traffic.shifted_rows, traffic.outlier_rows) == (2 * 100, 5)
    ages = [r["features"]["Age"] for r in queue.records(source="outlier", limit=1000)["records"]]
    assert 130.0 in ages, ages
    prometheus = stack.url("prometheus")
    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    (group,) = [g for g in groups if g["name"] == "glassbox-monitor"]
    assert len(group["rules"]) == 4 and all(r["health"] == "ok" for r in group["rules"]), group
    deadline = time.monotonic() + 60
    alerts: list[dict] = []
    while time.monotonic() < deadline:
        alerts = requests.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        alerts = [a for a in alerts if a["labels"]["alertname"] == "GlassboxFeatureDrift"]
        if alerts:
            break
        time.sleep(1.0)
    assert [a["labels"]["feature"] for a in alerts] == ["Age"], alerts
    assert alerts[0]["state"] in ("pending", "firing")
    assert demo.drifted_features(stack, wait=30.0) == ["Age"]


def test_every_url_printed_opens_a_page(stack):
    """What `up` and `demo` print, and the links in the state file: every URL one can open (all but
    the POST endpoints) answers 200 after redirects; the queue's lead to its review page."""
    lines = [line for line in describe(stack).splitlines() if " POST " not in line]
    printed = [url for line in lines for url in re.findall(r"https?://[^\s\"']+", line)]
    links = [url for c in stack.components.values() for url in c.links.values() if url.startswith("http")]
    assert len(printed) >= 7 and links, (printed, links)
    for url in printed + links + [f"{stack.url('queue')}/"]:
        answer = requests.get(url, timeout=30)
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:200])
        if url.startswith(stack.url("queue")):
            assert answer.url == f"{stack.url('queue')}/review" and 'name="api_key"' in answer.text


def test_down_leaves_no_process_behind(stack):
    groups = {name: c.process.pid for name, c in stack.components.items()}
    left = stack.down()
    assert left == []
    assert [name for name, pgid in groups.items() if process_group_members(pgid)] == []
    assert not stack.settings.state_file.exists()
