"""Fixtures shared by every part's tests. Toy data and fixtures live here, in one place.

Tests that need a real service (PostgreSQL, Prometheus, helm, Chromium) call ``require`` to skip
when it is missing; ``.ci/run`` fails the build if anything was skipped.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from glassbox.stack.process import ManagedProcess

if TYPE_CHECKING:
    import numpy as np

REPO = Path(__file__).resolve().parents[1]


def require(condition: object, what: str) -> None:
    """Skip the test unless ``condition``; under ``GLASSBOX_REQUIRE_SERVICES=1`` fail instead."""
    if condition:
        return
    if os.environ.get("GLASSBOX_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {what}")
    pytest.skip(f"missing: {what}")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    dsn = os.environ.get("GLASSBOX_TEST_POSTGRES_DSN", "")
    require(dsn, "GLASSBOX_TEST_POSTGRES_DSN (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return dsn


@pytest.fixture(scope="session")
def helm_bin() -> str:
    path = shutil.which("helm") or str(REPO / ".tools/bin/helm")
    require(Path(path).exists(), "helm (make tools)")
    return path


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    require(path, "prometheus (apt-get install prometheus)")
    return path


@pytest.fixture(scope="session")
def chromium_bin() -> str:
    require(Path("/usr/bin/chromium").exists(), "chromium (apt-get install chromium)")
    return "/usr/bin/chromium"


@pytest.fixture
def processes() -> Iterator[list[ManagedProcess]]:
    """Append started processes here; they are stopped at the end of the test."""
    started: list[ManagedProcess] = []
    yield started
    for proc in reversed(started):
        proc.stop()


# --- pipeline: one trained model per test session, and encoded Adult test rows -------

ADULT_CONFIG = REPO / "pipeline/configs/adult.yaml"


@pytest.fixture(scope="session")
def trained_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model dir (``LATEST`` + one version) trained once per session with the default Adult config.

    Set ``GLASSBOX_TEST_ARTIFACTS`` to an existing model dir (e.g. ``artifacts/loanclassifier``) to skip
    the ~40 s of training while iterating.
    """
    reuse = os.environ.get("GLASSBOX_TEST_ARTIFACTS")
    if reuse:
        return Path(reuse)
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.train import train

    model_dir = tmp_path_factory.mktemp("artifacts") / "loanclassifier"
    train(load_config(ADULT_CONFIG), model_dir, version="test", progress=False)
    return model_dir


@pytest.fixture(scope="session")
def adult_test_rows() -> np.ndarray:
    """The first 400 rows of the default config's test split, in alibi's encoding (float64, 12 columns)."""
    from glassbox.pipeline.config import load_config
    from glassbox.pipeline.data import load_dataset
    from glassbox.pipeline.split import split_rows

    config = load_config(ADULT_CONFIG)
    data = load_dataset(config)
    return data.X[split_rows(data, config.split).test[:400]]


def write_toy_training(directory: Path, rows: int = 600, **overrides: object) -> Path:
    """A small loan-like CSV with a header and its training config; returns the config's path.

    Group "B" is approved far less often than group "A", so the fairness gate has a gap to find.
    ``overrides`` replace top-level config sections (e.g. ``fairness={...}``).
    """
    import numpy as np
    import yaml

    rng = np.random.default_rng(7)
    age = rng.integers(18, 70, rows)
    hours = rng.integers(10, 60, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    group = rng.choice(["A", "B"], rows, p=[0.6, 0.4])
    score = (age - 18) / 52 + (hours - 10) / 50 + np.where(group == "A", 0.6, 0.0) + rng.normal(0, 0.3, rows)
    approved = np.where(score > 1.2, "yes", "no")
    lines = ["age,hours,colour,group,approved"]
    columns = zip(age, hours, colour, group, approved, strict=True)
    lines += [",".join(str(value) for value in row) for row in columns]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "toy.csv").write_text("\n".join(lines) + "\n")
    config = {
        "name": "toy",
        "dataset": {"path": "toy.csv"},
        "features": {"age": "numeric", "hours": "numeric", "colour": "categorical", "group": "categorical"},
        "target": {"column": "approved", "positive": "yes"},
        "protected_attributes": ["group"],
        "split": {"seed": 0, "train_size": 0.75, "gap": 0},
        "model": {"params": {"n_estimators": 10, "max_depth": 6}, "seed": 0},
        "evaluation": {"permutation_repeats": 2},
        "fairness": {"gate": {"demographic_parity_difference": 0.9}, "min_group_size": 10},
        **overrides,
    }
    path = directory / "toy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def toy_training(tmp_path: Path):
    """``toy_training(**overrides)`` -> path of a small training config + CSV in a fresh directory."""
    counter = iter(range(1000))
    return lambda **overrides: write_toy_training(tmp_path / f"toy{next(counter)}", **overrides)


# --- annotation queue: toy intake records and an isolated PostgreSQL schema -----------

QUEUE_FEATURES = ("Age", "Workclass", "Education", "Marital Status", "Occupation", "Relationship", "Race",
                  "Sex", "Capital Gain", "Capital Loss", "Hours per week", "Country")  # fmt: skip


def make_queue_record(i: int, **overrides: object) -> dict:
    """A valid intake record (docs/contracts.md); record ``i`` is a little less certain than ``i + 1``."""
    p = 0.5 + (i % 50) / 100  # 0.50 ... 0.99
    record = {
        "id": f"req-{i}:0",
        "source": "prediction",
        "features": {name: float((i + k) % 5) for k, name in enumerate(QUEUE_FEATURES)},
        "decoded": {name: f"value-{(i + k) % 5}" for k, name in enumerate(QUEUE_FEATURES)},
        "probabilities": {"<=50K": p, ">50K": round(1 - p, 10)},
        "predicted_label": "<=50K",
        "certainty": {"max_probability": p, "margin": 2 * p - 1, "entropy": 0.5},
        "model_name": "loanclassifier",
        "model_version": "v1",
        "request_id": f"req-{i}",
        "timestamp": "2026-11-23T03:00:00Z",
        "explanation": None,
        "metadata": {},
    }
    record.update(overrides)
    return record


@pytest.fixture
def queue_record():
    """``queue_record(i, **overrides)``: a toy intake record (see ``make_queue_record``)."""
    return make_queue_record


@pytest.fixture
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards: concurrent runs never collide."""
    import uuid

    import psycopg

    name = f"gbtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# --- deploy: a recorded Kubernetes API, toy Seldon classes, the CRD schema -------------
# No Kubernetes API server can run here: this loopback server answers the real `kubernetes` client
# with recorded JSON bodies (tests/data/deploy/), in order per path, the last one repeating.


def answer_json(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    """Write ``body`` as a JSON response from a ``BaseHTTPRequestHandler`` (the toy servers here)."""
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


@pytest.fixture(name="answer_json")
def answer_json_fixture():
    """``answer_json`` for toy HTTP servers defined in test modules."""
    return answer_json


class RecordedKubeAPI:
    """Loopback HTTP server replaying recorded Kubernetes API answers: {path: [(status, body), ...]}."""

    def __init__(self) -> None:
        import threading

        self.routes: dict[str, list[tuple[int, dict]]] = {}
        self.requests: list[tuple[str, str]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                api.requests.append(("GET", path))
                answers = api.routes.get(path)
                status, body = (answers.pop(0) if len(answers) > 1 else answers[0]) if answers else (404, {})
                answer_json(self, status, body)

            def log_message(self, *args: object) -> None:  # keep pytest's output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def record(self, path: str, *answers: tuple[int, dict]) -> None:
        self.routes[path] = list(answers)

    def custom_objects_api(self):
        from kubernetes import client

        configuration = client.Configuration(host=self.url)
        return client.CustomObjectsApi(client.ApiClient(configuration))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorded_kube_api() -> Iterator[RecordedKubeAPI]:
    api = RecordedKubeAPI()
    yield api
    api.close()


class ToyLoanModel:
    """A Seldon MODEL class answering like the loan classifier (one probability row per input row).

    ``seldon-core-microservice conftest.ToyLoanModel`` serves it with ``cwd=tests/``; the deploy tests
    put it behind the local gateway to run ``glassbox deploy smoke`` against real processes.
    """

    class_names = ["<=50K", ">50K"]

    def predict(self, X, features_names=None):
        return [[0.62, 0.38] for _ in X]


class ToyLoanExplainer:
    """A Seldon MODEL class answering like the Glassbox explainer (``jsonData.explanations``), also on
    ``/api/v1.0/explain`` (where the local gateway sends Seldon's native explain path), as it does."""

    def __init__(self) -> None:
        from flask import Blueprint

        # Seldon's wrapper registers this blueprint on its app: one more URL for its predict view.
        self.model_error_handler = Blueprint("toy_explainer", __name__)
        self.model_error_handler.record_once(
            lambda state: state.app.add_url_rule("/api/v1.0/explain", endpoint="Predict", methods=["POST"])
        )

    def predict(self, X, features_names=None):
        explanation = {"anchor": ["Marital Status = Separated"], "precision": 0.97, "coverage": 0.12}
        return {"explanations": [explanation for _ in X], "names": explanation["anchor"]}


@pytest.fixture(scope="session")
def seldon_crd_schema() -> dict:
    """openAPIV3Schema of the SeldonDeployment CRD from Seldon Core 1.17.1 (Apache-2.0 copy)."""
    from glassbox.deploy.validate import load_crd_schema

    return load_crd_schema(REPO / "tests/data/seldon-core-1.17.1/seldondeployments-crd-v1.yaml")


# --- explain: a toy fitted AnchorTabular over three features -------------------------


@pytest.fixture
def toy_anchor():
    """A fitted AnchorTabular without a predictor (as ``bundle.load_explainer()`` returns it), with
    its toy model: 'yes' for green people over 40, as probabilities like the model component's."""
    from types import SimpleNamespace

    import numpy as np
    from alibi.explainers import AnchorTabular

    def predict_proba(X):
        X = np.atleast_2d(X)
        yes = ((X[:, 0] > 40) & (X[:, 1] == 1)).astype(float) * 0.8 + 0.1
        return np.column_stack([1 - yes, yes])

    features, categories = ["Age", "Colour", "Hours"], {"1": ["red", "green", "blue"]}
    rng = np.random.default_rng(0)
    columns = [rng.integers(18, 80, 600), rng.integers(0, 3, 600), rng.integers(10, 60, 600)]
    X = np.column_stack(columns).astype(float)
    explainer = AnchorTabular(
        lambda x: predict_proba(x).argmax(1), features, categorical_names={1: categories["1"]}, seed=0
    ).fit(X)
    explainer._predictor = None  # as saved: the caller binds its own predictor
    explainer.samplers[0].predictor = None
    return SimpleNamespace(
        explainer=explainer,
        feature_names=features,
        category_map=categories,  # the manifest's JSON form: string keys
        class_names=["no", "yes"],
        predict_proba=predict_proba,
    )


EXPLAINER_CLASS = "glassbox.explain.component.LoanExplainer"


class ExplainerService:
    """A running ``seldon-core-microservice`` serving ``LoanExplainer`` (REST and metrics ports)."""

    def __init__(self, process: ManagedProcess, ports: dict[str, int]):
        self.process, self.ports = process, ports
        self.url = f"http://127.0.0.1:{ports['http']}"
        self.metrics_url = f"http://127.0.0.1:{ports['metrics']}/prometheus"

    def explain(self, payload: object, path: str = "/api/v1.0/predictions"):
        import requests

        return requests.post(f"{self.url}{path}", json=payload, timeout=60)


def start_explainer_service(
    artifacts: Path,
    workdir: Path,
    model_url: str,
    env: dict[str, str] | None = None,
    threads: int = 4,
    interface: str = EXPLAINER_CLASS,
    cwd: str | None = None,
) -> ExplainerService:
    """``LoanExplainer`` calling the model at ``model_url`` (its predictions endpoint)."""
    from glassbox.stack.process import seldon_microservice

    env = {
        "GLASSBOX_EXPLAINER_ARTIFACTS": str(artifacts),
        "GLASSBOX_EXPLAINER_MODEL_URL": model_url,
        "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",  # as in the s2i environment
        "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",  # what Seldon's operator sets
        **(env or {}),
    }
    process, ports = seldon_microservice(
        "explainer", interface, workdir / "explainer.log", env=env, threads=threads, cwd=cwd
    )
    process.start(timeout=120)
    return ExplainerService(process, ports)


# --- model component: the loan classifier in a real seldon-core-microservice ----------
# ``start_model_service`` is shared: the explainer's tests can point their remote predictor at it.


SELDON_DEFAULT_LABELS = frozenset(
    {
        "worker_id", "method", "deployment_name", "model_name", "predictor_name", "model_image",
        "model_version", "predictor_version", "seldon_deployment_name", "image_name", "image_version",
    }
)  # fmt: skip


class ModelService:
    """A running ``seldon-core-microservice`` serving ``LoanClassifier`` (REST, gRPC, metrics ports)."""

    def __init__(self, process: ManagedProcess, ports: dict[str, int], outbox_dir: Path):
        self.process, self.ports, self.outbox_dir = process, ports, outbox_dir
        self.url = f"http://127.0.0.1:{ports['http']}"
        self.grpc_endpoint = f"127.0.0.1:{ports['grpc']}"
        self.metrics_url = f"http://127.0.0.1:{ports['metrics']}/prometheus"

    def predict(self, payload: object, headers: dict | None = None):
        import requests

        return requests.post(f"{self.url}/api/v1.0/predictions", json=payload, headers=headers, timeout=30)

    def metric_samples(self) -> dict[str, float]:
        """``glassbox_model_*`` samples summed over workers/methods, keyed ``name{label="v"}`` (one label).

        Asks ``/health/status`` first: the component reports pending metrics to Seldon on health checks.
        """
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        requests.get(f"{self.url}/health/status", timeout=10).raise_for_status()

        ignored = SELDON_DEFAULT_LABELS
        totals: dict[str, float] = {}
        text = requests.get(self.metrics_url, timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not sample.name.startswith("glassbox_model_"):
                    continue
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()) if k not in ignored)
                key = f"{sample.name}{{{labels}}}" if labels else sample.name
                totals[key] = totals.get(key, 0.0) + sample.value
        return totals


def start_model_service(
    artifacts: Path,
    workdir: Path,
    env: dict[str, str] | None = None,
    workers: int = 1,
    threads: int = 1,
    interface: str = "glassbox.serving.component.LoanClassifier",
    cwd: str | None = None,
    name: str = "loanclassifier",
    http_port: int | None = None,
) -> ModelService:
    from glassbox.stack.process import seldon_microservice

    outbox = workdir / "outbox"
    env = {
        "GLASSBOX_MODEL_ARTIFACTS": str(artifacts),
        "GLASSBOX_MODEL_OUTBOX_DIR": str(outbox),
        "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",  # as in the s2i environment
        "PREDICTIVE_UNIT_METRICS_ENDPOINT": "/prometheus",  # what Seldon's operator sets
        **(env or {}),
    }
    process, ports = seldon_microservice(
        name, interface, workdir / f"{name}.log", env=env, workers=workers, threads=threads, cwd=cwd,
        http_port=http_port,
    )  # fmt: skip
    process.start(timeout=120)
    return ModelService(process, ports, outbox)


@pytest.fixture
def model_service_factory(trained_artifacts, tmp_path, processes):
    """``start(env=..., ...)`` -> ``ModelService``; every service started is stopped after the test."""

    def start(**kwargs) -> ModelService:
        service = start_model_service(trained_artifacts, kwargs.pop("workdir", tmp_path), **kwargs)
        processes.append(service.process)
        return service

    return start


class QueueService:
    """The real annotation queue (``glassbox queue serve``) on SQLite; restartable on the same port."""

    def __init__(self, workdir: Path, port: int | None = None, api_key: str = "owner-test-key"):
        from glassbox.stack.process import free_port

        self.workdir, self.port, self.api_key = workdir, port or free_port(), api_key
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: ManagedProcess | None = None

    def start(self) -> QueueService:
        from glassbox.stack.process import venv_bin

        env = {
            "GLASSBOX_QUEUE_DATABASE_URL": f"sqlite:///{self.workdir / 'queue.db'}",
            "GLASSBOX_QUEUE_HOST": "127.0.0.1",
            "GLASSBOX_QUEUE_PORT": str(self.port),
            "GLASSBOX_QUEUE_OWNER_API_KEY": self.api_key,
        }
        self.process = ManagedProcess(
            "queue", [venv_bin("glassbox"), "queue", "serve"], self.workdir / "queue.log", env=env,
            health_url=f"{self.url}/health",
        ).start(timeout=60)  # fmt: skip
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def record_ids(self) -> list[str]:
        """Ids of every record the queue holds (as many times as it holds them)."""
        import requests

        ids: list[str] = []
        while True:
            answer = requests.get(
                f"{self.url}/api/v1/records",
                params={"limit": 1000, "offset": len(ids), "sort": "least_certain"},
                headers={"X-API-Key": self.api_key},
                timeout=30,
            )
            answer.raise_for_status()
            page = answer.json()["records"]
            ids += [r["id"] for r in page]
            if len(page) < 1000:
                return ids


@pytest.fixture
def queue_service(tmp_path) -> Iterator[QueueService]:
    """A queue service object, not started: ``queue_service.start()`` (tests stop and restart it)."""
    service = QueueService(tmp_path / "queue")
    service.workdir.mkdir()
    yield service
    service.stop()


# --- a PostgreSQL server of a test's own, which it may stop and restart -----------------


class PrivatePostgres:
    """Debian's ``initdb``/``pg_ctl`` on a free loopback port in a temporary directory, never the
    shared server. As root the tools run as the ``postgres`` user, who owns the directory."""

    def __init__(self) -> None:
        import tempfile

        from glassbox.stack.process import free_port

        tools = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        require(tools, "PostgreSQL server tools (/usr/lib/postgresql/*/bin; apt-get install postgresql)")
        self._bin = tools[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="glassbox-pg-"))
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres", "postgres")
        self.port = free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._pg("initdb", "-D", "data", "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")

    def _pg(self, tool: str, *args: str) -> None:
        import subprocess

        argv = [*self._as, str(self._bin / tool), *args]
        done = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{tool} failed: {done.stdout}{done.stderr}"

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", "data", "-l", "server.log", "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects every client and shuts down cleanly; ``immediate`` is a crash."""
        self._pg("pg_ctl", "-D", "data", "-m", mode, "-w", "-t", "60", "stop")

    def close(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started ``PrivatePostgres`` (DSN in ``.dsn``); the test may ``stop()`` and ``start()`` it."""
    server = PrivatePostgres()
    try:
        yield server.start()
    finally:
        server.close()
