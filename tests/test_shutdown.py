"""SIGTERM to the main process of every server, as the kubelet sends it to a pod's PID 1, under light load.

Each test starts the real server, records its whole process tree, keeps requests going from threads,
sends SIGTERM to the main PID and checks: the tree is gone within 5 s; every request that reached the
server was answered (requests refused once the port closed are counted apart); readiness fails at once;
for the model, every row it forwarded is in the annotation queue or in the outbox, once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from conftest import (
    QueueService,
    answer_json,
    make_queue_record,
    start_explainer_service,
    start_model_service,
)
from glassbox.stack.components import MODEL_CLASS, uvicorn_argv
from glassbox.stack.process import LOOPBACK, ManagedProcess, free_port, venv_bin

pytestmark = pytest.mark.slow

LIMIT_S = 5.0  # the whole process tree is gone within this after SIGTERM (issue #11)
UNREADY_S = 1.5  # /health/ping refuses connections within this after SIGTERM
FORWARD_ALL = {
    "GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD": "1.01",  # every row goes to the queue
    # Rows wait in the in-memory buffer (a long linger, big batches) until SIGTERM comes: the stop
    # path has to deliver or spill them.
    "GLASSBOX_MODEL_FORWARD_LINGER_SECONDS": "60",
    "GLASSBOX_MODEL_FORWARD_BATCH_SIZE": "500",
}
ROWS = 3  # rows per prediction request


# --- load, readiness and exit measurements ----------------------------------------------------------


class Refused(Exception):
    """The server no longer accepted the request (its port closed): not a failure."""


@dataclass
class Load:
    """One thread calling ``call(i)`` until stopped: a return value is an answered request, ``Refused``
    a refused one, any other exception a failure."""

    call: Callable[[int], Any]
    answered: list[Any] = field(default_factory=list)
    refused: int = 0
    failed: list[str] = field(default_factory=list)
    current: int | None = None  # the request on its way, if any
    longest: float = 0.0  # seconds, of an answered request

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.current, started = i, time.monotonic()
            try:
                self.answered.append(self.call(i))
                self.longest = max(self.longest, time.monotonic() - started)
            except Refused:
                self.refused += 1
                time.sleep(0.01)
            except Exception as exc:  # every other outcome is a failed request
                self.failed.append(f"request {i}: {exc!r:.300}")
            self.current = None
            i += 1

    def wait_answered(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < n:
            assert time.monotonic() < deadline, f"only {len(self.answered)} answers; failures: {self.failed}"
            time.sleep(0.05)

    def stop(self) -> Load:
        self._stop.set()
        self._thread.join(30)
        return self


def refused(exc: BaseException, resets: bool = False) -> bool:
    """Whether a client error comes from a refused TCP connection (anywhere in its causes).

    ``resets``: a reset counts as refused too. uvicorn (the queue, the gateway) closes its listening
    socket with connections still waiting in the kernel's backlog, and the kernel resets them: their
    requests were never read by the server (unlike gunicorn's workers, which the lifecycle makes take
    their backlog first; the model and explainer tests keep counting a reset as a failure).
    """
    seen: list[object] = [exc]
    while seen:
        item = seen.pop()
        if isinstance(item, ConnectionRefusedError) or (resets and isinstance(item, ConnectionResetError)):
            return True
        if isinstance(item, BaseException):
            seen += [*item.args, item.__cause__, item.__context__, getattr(item, "reason", None)]
    return False


def post(
    url: str, body: object, timeout: float = 30.0, resets: bool = False, **kwargs: Any
) -> requests.Response:
    """One request on a new connection: 200, or ``Refused``, or an exception (a failure)."""
    try:
        answer = requests.post(url, json=body, timeout=timeout, **kwargs)
    except requests.ConnectionError as exc:
        if refused(exc, resets):
            raise Refused() from exc
        raise
    if answer.status_code != 200:
        raise AssertionError(f"HTTP {answer.status_code}: {answer.text[:300]}")
    return answer


class Readiness:
    """Polls ``url`` like a readiness probe (new connection, 1 s timeout) from just before SIGTERM."""

    def __init__(self, url: str):
        self.url = url
        self.signalled: float | None = None
        self.unready_after: float | None = None  # seconds from SIGTERM to the first failed probe
        self.how = ""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Readiness:
        assert requests.get(self.url, timeout=5).status_code == 200
        self._thread.start()
        return self

    def _run(self) -> None:
        while self.unready_after is None:
            try:
                ok = requests.get(self.url, timeout=1).status_code == 200
                how = "non-200"
            except requests.RequestException as exc:
                ok, how = False, "refused" if refused(exc) else type(exc).__name__
            if not ok and self.signalled is not None:
                self.unready_after, self.how = time.monotonic() - self.signalled, how
            time.sleep(0.01)


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def sigterm(proc: ManagedProcess, readiness: Readiness | None = None, at_least: int = 1) -> float:
    """SIGTERM to the main process only; seconds until every process of its tree (recorded before the
    signal) is gone, or a failure naming those left after 15 s."""
    assert proc.popen is not None and proc.alive()
    main = psutil.Process(proc.popen.pid)
    tree = [main, *main.children(recursive=True)]
    assert len(tree) >= at_least, f"expected a tree of {at_least} processes: {tree}"
    signalled = time.monotonic()
    if readiness is not None:
        readiness.signalled = signalled
    os.kill(proc.popen.pid, signal.SIGTERM)
    while time.monotonic() - signalled < 15:
        proc.popen.poll()  # reap the main process: a zombie is gone
        left = [p for p in tree if running(p)]
        if not left:
            elapsed = time.monotonic() - signalled
            proc.popen.wait(5)
            print(f"{proc.name}: {len(tree)} processes gone {elapsed:.2f}s after SIGTERM")
            return elapsed
        time.sleep(0.02)
    names = [f"{p.pid} {p.cmdline()[-4:]}" for p in left]
    raise AssertionError(f"{proc.name}: still running 15 s after SIGTERM: {names}; log:\n{proc.tail()}")


# --- the model ---------------------------------------------------------------------------------------


def predictions(url: str, rows: list[list[float]], prefix: str) -> Callable[[int], str]:
    def call(i: int) -> str:
        puid = f"{prefix}-{i}"
        post(f"{url}/api/v1.0/predictions", {"data": {"ndarray": rows}, "meta": {"puid": puid}})
        return puid

    return call


def grpc_predictions(endpoint: str, rows: list[list[float]], prefix: str) -> Callable[[int], str]:
    import grpc
    from seldon_core.proto import prediction_pb2_grpc
    from seldon_core.utils import json_to_seldon_message

    stub = prediction_pb2_grpc.ModelStub(grpc.insecure_channel(endpoint))

    def call(i: int) -> str:
        puid = f"{prefix}-{i}"
        message = json_to_seldon_message({"data": {"ndarray": rows}, "meta": {"puid": puid}})
        try:
            stub.Predict(message, timeout=30)
        except grpc.RpcError as exc:
            # UNAVAILABLE: not listening any more. CANCELLED: gRPC core's answer to a call that arrives
            # once the server's shutdown has begun; it never ran (the outbox check below proves it).
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise Refused() from exc
            raise
        return puid

    return call


def outbox_ids(outbox_dir: Path) -> list[str]:
    path = outbox_dir / "outbox.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT id FROM outbox")]


def record_ids(puids: list[str]) -> list[str]:
    return [f"{puid}:{row}" for puid in puids for row in range(ROWS)]


def report(name: str, exit_s: float, readiness: Readiness | None, *loads: Load) -> None:
    answered = sum(len(load.answered) for load in loads)
    refused_n = sum(load.refused for load in loads)
    ready = f"unready after {readiness.unready_after:.3f}s ({readiness.how}), " if readiness else ""
    print(f"{name}: exit {exit_s:.2f}s, {ready}{answered} answered, {refused_n} refused")


def test_model_via_the_entry_point_stops_whole_within_5s_and_spills_its_buffers(
    trained_artifacts, tmp_path, adult_test_rows, processes
):
    """``seldon-core-microservice`` as users run it, threaded workers as in the s2i image, REST and
    gRPC load, the queue unreachable: every forwarded row ends in the outbox."""
    ports = {"http": free_port(), "grpc": free_port(), "metrics": free_port()}
    outbox = tmp_path / "outbox"
    env = {
        "GLASSBOX_MODEL_ARTIFACTS": str(trained_artifacts),
        "GLASSBOX_MODEL_OUTBOX_DIR": str(outbox),
        "GLASSBOX_MODEL_QUEUE_URL": f"http://{LOOPBACK}:{free_port()}",  # nothing listens there
        "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",
        **FORWARD_ALL,
    }
    argv = [venv_bin("seldon-core-microservice"), MODEL_CLASS, "--service-type", "MODEL",
            "--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"]),
            "--metrics-port", str(ports["metrics"]), "--workers", "1", "--threads", "4"]  # fmt: skip
    url = f"http://{LOOPBACK}:{ports['http']}"
    model = ManagedProcess(
        "model", argv, tmp_path / "model.log", env=env, health_url=f"{url}/health/ping",
        ready_ports=(ports["grpc"], ports["metrics"]),
    ).start(timeout=120)  # fmt: skip
    processes.append(model)
    rows = adult_test_rows[:ROWS].tolist()
    rest = Load(predictions(url, rows, "rest")).start()
    grpc = Load(grpc_predictions(f"{LOOPBACK}:{ports['grpc']}", rows, "grpc")).start()
    rest.wait_answered(20)
    grpc.wait_answered(20)
    readiness = Readiness(f"{url}/health/ping").start()

    # P, its REST worker, the metrics Manager, the gRPC parent and worker, the metrics arbiter and worker
    exit_s = sigterm(model, readiness, at_least=7)
    rest.stop(), grpc.stop()
    report("model (entry point, gthread)", exit_s, readiness, rest, grpc)

    assert exit_s < LIMIT_S
    assert rest.failed == [] and grpc.failed == []
    assert readiness.unready_after is not None and readiness.unready_after < UNREADY_S, readiness.how
    expected = record_ids(rest.answered + grpc.answered)
    assert sorted(outbox_ids(outbox)) == sorted(expected)  # each once, nothing for unanswered requests


def test_model_via_the_loopback_launcher_delivers_or_spills_every_row(
    trained_artifacts, tmp_path, adult_test_rows, queue_service
):
    """The local stack's launcher, one sync worker for two clients (one waits in the listen backlog),
    the real queue up: what was buffered at SIGTERM is posted or spilled; queue + outbox hold every
    forwarded row once."""
    queue = queue_service.start()
    env = {
        "GLASSBOX_MODEL_QUEUE_URL": queue.url,
        "GLASSBOX_MODEL_QUEUE_API_KEY": queue.api_key,
        **FORWARD_ALL,
    }
    model = start_model_service(trained_artifacts, tmp_path / "model", env=env)
    rows = adult_test_rows[:ROWS].tolist()
    try:
        loads = [Load(predictions(model.url, rows, f"rest{n}")).start() for n in range(2)]
        for load in loads:
            load.wait_answered(15)
        readiness = Readiness(f"{model.url}/health/ping").start()
        exit_s = sigterm(model.process, readiness, at_least=7)
        for load in loads:
            load.stop()
    finally:
        model.process.stop()
    report("model (loopback, sync)", exit_s, readiness, *loads)

    assert exit_s < LIMIT_S
    assert [load.failed for load in loads] == [[], []]
    assert readiness.unready_after is not None and readiness.unready_after < UNREADY_S, readiness.how
    delivered, spilled = queue.record_ids(), outbox_ids(model.outbox_dir)
    print(f"forwarded rows: {len(delivered)} in the queue + {len(spilled)} in the outbox")
    assert sorted(delivered + spilled) == sorted(record_ids(loads[0].answered + loads[1].answered))


def test_model_spills_what_a_hung_queue_holds(trained_artifacts, tmp_path, adult_test_rows, processes):
    """The queue accepts connections and never answers: the sender is stuck in a post when SIGTERM comes,
    and both its batch and the buffer behind it must still reach the outbox before the worker is gone."""
    hole = socket.create_server((LOOPBACK, 0))
    held: list[socket.socket] = []  # accepted, never read nor answered

    def accept() -> None:
        with contextlib.suppress(OSError):  # the test closed the socket
            while True:
                held.append(hole.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    env = {
        "GLASSBOX_MODEL_QUEUE_URL": f"http://{LOOPBACK}:{hole.getsockname()[1]}",
        "GLASSBOX_MODEL_UNCERTAINTY_THRESHOLD": "1.01",
        "GLASSBOX_MODEL_FORWARD_BATCH_SIZE": "9",  # a post of 3 requests' rows, then the buffer fills
        "GLASSBOX_MODEL_FORWARD_TIMEOUT_SECONDS": "30",
    }
    model = start_model_service(trained_artifacts, tmp_path / "model", env=env, threads=4)
    processes.append(model.process)
    try:
        rest = Load(predictions(model.url, adult_test_rows[:ROWS].tolist(), "rest")).start()
        rest.wait_answered(30)
        exit_s = sigterm(model.process, at_least=7)
        rest.stop()
    finally:
        hole.close()
    report("model (hung queue)", exit_s, None, rest)

    assert exit_s < LIMIT_S
    assert rest.failed == []
    assert sorted(outbox_ids(model.outbox_dir)) == sorted(record_ids(rest.answered))


# --- the explainer -----------------------------------------------------------------------------------


def test_explainer_stops_whole_within_5s_and_answers_its_requests_in_flight(
    trained_artifacts, tmp_path, adult_test_rows
):
    model = start_model_service(trained_artifacts, tmp_path / "model")
    explainer = None
    try:
        explainer = start_explainer_service(
            trained_artifacts, tmp_path / "explainer", model_url=f"{model.url}/api/v1.0/predictions"
        )
        row = adult_test_rows[0].tolist()

        def explain(i: int) -> int:  # a new seed each time: an explanation computed, not a cache hit
            post(f"{explainer.url}/api/v1.0/predictions", {"jsonData": {"instances": [row], "seed": i}})
            return i

        load = Load(explain).start()
        load.wait_answered(3)
        readiness = Readiness(f"{explainer.url}/health/ping").start()
        while load.current is None:  # SIGTERM with an explanation on its way
            time.sleep(0.001)
        in_flight = load.current
        exit_s = sigterm(explainer.process, readiness, at_least=6)
        load.stop()
    finally:
        if explainer is not None:
            explainer.process.stop()
        model.process.stop()
    report("explainer (loopback, gthread)", exit_s, readiness, load)
    print(f"explainer: longest explanation {load.longest:.2f}s")

    assert exit_s < LIMIT_S
    assert load.failed == []
    assert in_flight in load.answered  # the explanation under way when SIGTERM came was answered
    assert readiness.unready_after is not None and readiness.unready_after < UNREADY_S, readiness.how


# --- the queue and the local gateway -------------------------------------------------------------------


def test_queue_stops_within_5s_and_keeps_every_record_it_accepted(tmp_path):
    queue = QueueService(tmp_path / "queue")
    queue.workdir.mkdir()
    queue.start()
    try:

        def intake(i: int) -> str:
            record = make_queue_record(i, id=f"shutdown-{i}:0")
            post(
                f"{queue.url}/api/v1/records/bulk",
                {"records": [record]},
                headers={"X-API-Key": queue.api_key},
                resets=True,
            )
            return record["id"]

        load = Load(intake).start()
        load.wait_answered(20)
        readiness = Readiness(f"{queue.url}/health").start()
        assert queue.process is not None
        exit_s = sigterm(queue.process, readiness)
        load.stop()
        report("queue (glassbox queue serve)", exit_s, readiness, load)
        assert exit_s < LIMIT_S
        assert load.failed == []
        assert readiness.unready_after is not None and readiness.unready_after < UNREADY_S, readiness.how
        queue.start()  # the same SQLite file
        assert set(load.answered) <= set(queue.record_ids())
    finally:
        queue.stop()


class _Upstream(BaseHTTPRequestHandler):
    """A model that answers at once, and an explainer that never answers in time."""

    explaining = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/explain"):
            self.explaining.set()
            time.sleep(30)
        answer_json(self, 200, {"data": {"names": ["<=50K", ">50K"], "ndarray": [[0.6, 0.4]]}})

    def log_message(self, *args: object) -> None:
        pass


def test_gateway_stops_within_5s_answering_a_request_past_its_grace_503(tmp_path, processes):
    upstream = ThreadingHTTPServer((LOOPBACK, 0), _Upstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    base = f"http://{LOOPBACK}:{upstream.server_address[1]}"
    port = free_port()
    gateway = ManagedProcess(
        "gateway", uvicorn_argv("glassbox.stack.gateway:create_app", port), tmp_path / "gateway.log",
        env={"GLASSBOX_STACK_GATEWAY_MODEL_URL": base, "GLASSBOX_STACK_GATEWAY_EXPLAINER_URL": base},
        health_url=f"http://{LOOPBACK}:{port}/healthz",
    ).start(timeout=30)  # fmt: skip
    processes.append(gateway)
    url = f"http://{LOOPBACK}:{port}/seldon/default"
    try:
        load = Load(
            lambda i: post(
                f"{url}/loanclassifier/api/v1.0/predictions", {"data": {"ndarray": [[1]]}}, resets=True
            )
        )
        load.start().wait_answered(20)
        slow: dict[str, Any] = {}

        def explain() -> None:
            try:
                answer = requests.post(
                    f"{url}/loanclassifier-explainer/default/api/v1.0/explain", json={}, timeout=30
                )
                slow["answer"] = (answer.status_code, answer.json())
            except Exception as exc:  # reported by the assertion below
                slow["answer"] = exc

        in_flight = threading.Thread(target=explain, daemon=True)
        in_flight.start()
        assert _Upstream.explaining.wait(10)  # the explain request is in flight, waiting on the upstream
        readiness = Readiness(f"http://{LOOPBACK}:{port}/healthz").start()
        exit_s = sigterm(gateway, readiness)
        load.stop()
        in_flight.join(5)
    finally:
        upstream.shutdown()
    report("gateway (uvicorn)", exit_s, readiness, load)

    assert exit_s < LIMIT_S
    assert load.failed == []
    assert readiness.unready_after is not None and readiness.unready_after < UNREADY_S, readiness.how
    status, body = slow["answer"]
    assert status == 503 and "shutting down" in json.dumps(body)


# --- installing: only inside seldon-core-microservice -------------------------------------------------


def test_building_a_component_in_a_test_process_installs_nothing(trained_artifacts):
    from seldon_core import gunicorn_utils, microservice

    from glassbox.explain.component import LoanExplainer
    from glassbox.seldon import lifecycle
    from glassbox.serving.component import LoanClassifier

    before = (
        microservice.start_servers,
        microservice._run_grpc_server,
        gunicorn_utils.StandaloneApplication.load_config,
    )
    LoanClassifier(artifacts=str(trained_artifacts))
    LoanExplainer(artifacts=str(trained_artifacts))
    after = (
        microservice.start_servers,
        microservice._run_grpc_server,
        gunicorn_utils.StandaloneApplication.load_config,
    )
    assert after == before and not lifecycle._installed
    assert lifecycle.install_for_microservice(4.0) is False


def test_stop_callbacks_run_once_at_exit(tmp_path):
    marks = tmp_path / "marks"
    code = (
        "from glassbox.seldon.lifecycle import on_stop, run_stop_callbacks\n"
        f"mark = lambda: open({str(marks)!r}, 'a').write('x')\n"
        "on_stop(mark)\n"
        "run_stop_callbacks()\n"  # as gunicorn's worker_exit hook does; atexit must not run it again
        "on_stop(mark)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert marks.read_text() == "xx"


# --- the chart: the pods' grace covers the preStop sleep and the components' own grace -----------------


@pytest.mark.helm
def test_chart_grace_covers_prestop_and_the_components_grace(helm_bin):
    from glassbox.deploy.helm import Helm

    chart = Path(__file__).resolve().parents[1] / "charts/glassbox"
    sets = ["shutdown.preStopSeconds=7", "shutdown.graceSeconds=3"]
    docs = Helm(binary=helm_bin, namespace="ml").render("glassbox", chart, [], sets)
    pods = {d["metadata"]["name"]: d["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
            for d in docs if d["kind"] == "SeldonDeployment"}  # fmt: skip
    pods.update({d["metadata"]["name"]: d["spec"]["template"]["spec"]
                 for d in docs if d["kind"] == "Deployment"})  # fmt: skip
    graces = {"loanclassifier": "GLASSBOX_MODEL_SHUTDOWN_GRACE_SECONDS",
              "loanclassifier-explainer": "GLASSBOX_EXPLAINER_SHUTDOWN_GRACE_SECONDS",
              "glassbox-queue": "GLASSBOX_QUEUE_SHUTDOWN_GRACE_SECONDS"}  # fmt: skip
    for name, variable in graces.items():
        pod = pods[name]
        container = pod["containers"][0]
        assert pod["terminationGracePeriodSeconds"] == 7 + 3 + 2, name
        assert container["lifecycle"]["preStop"]["exec"]["command"][-1] == "sleep 7", name
        assert {"name": variable, "value": "3"} in container["env"], name
        readiness = container["readinessProbe"]
        assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 4, name  # soon after SIGTERM
        assert "initialDelaySeconds" not in container["livenessProbe"] and container["startupProbe"], name
