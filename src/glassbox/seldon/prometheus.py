"""Glassbox's own metrics on the Seldon metrics port, beside Seldon's (``/prometheus``).

Why not Seldon's custom metrics: Seldon 1.19's exporter yields one metric family per (worker,
metric, label set), each with an empty help text, so ``# HELP``/``# TYPE`` repeat per sample and
``promtool check metrics`` refuses the text ("second TYPE line for metric name"); its only histogram
is a TIMER with fixed buckets from 1 ms to 30 s, and every value costs a round trip to a
``multiprocessing.Manager``.

So the components record with prometheus-client in multiprocess mode. Seldon builds the component in
its main process, then forks gunicorn workers, a gRPC server and a metrics server. Every recording
process writes its values to memory-mapped files in one directory; Seldon's metrics server reads them
all with a ``MultiProcessCollector`` and serves them, with Seldon's deployment labels, before its own
text on the same path. Counters and histograms are summed over processes (files of exited workers
included, so totals never go back); there is no ``worker_id`` or ``method`` label.

Lifecycle (the component calls both):

- :func:`prepare` in ``__init__``, in Seldon's main process before anything forks: picks the
  directory (``PROMETHEUS_MULTIPROC_DIR`` if set, else a fresh one under the temp dir keyed by this
  process id, so one per pod; directories of main processes that are gone are removed), removes
  files left by an earlier run, and makes Seldon's metrics server append our metrics. It changes
  nothing else in the process (tests build components in-process).
- :func:`activate` at the start of ``load()``, in every worker and the gRPC process after the fork:
  switches prometheus-client to multiprocess values for this process. Metric objects must be created
  after it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from glassbox.errors import ConfigError

DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable
DEFAULT_PREFIX = "glassbox-prometheus-"  # + the main process id, under the temp dir

_state: dict[str, Path] = {}  # the directory prepare() chose; forked processes inherit it


def seldon_labels() -> dict[str, str]:
    """The labels Seldon puts on its own metrics, from the env its operator (or the stack) sets."""
    from seldon_core.env_utils import get_deployment_name, get_model_name, get_predictor_name

    return {
        "deployment_name": get_deployment_name(),  # SELDON_DEPLOYMENT_ID
        "predictor_name": get_predictor_name(),  # PREDICTOR_ID
        "model_name": get_model_name(),  # PREDICTIVE_UNIT_ID
    }


def prepare() -> Path:
    """Choose and empty this pod's directory, and serve its metrics on Seldon's metrics path."""
    configured = os.environ.get(DIR_ENV) or os.environ.get(DIR_ENV.lower())
    if configured:
        directory = Path(configured)
    else:
        directory = Path(tempfile.gettempdir()) / f"{DEFAULT_PREFIX}{os.getpid()}"
        atexit.register(_remove, directory, os.getpid())
        _remove_orphans(directory.parent)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # an earlier run's totals: a restart starts counters at 0
            stale.unlink()
    except OSError as exc:
        raise ConfigError(
            f"metrics directory {directory} is not writable ({exc}); set {DIR_ENV} to a writable "
            "directory of this pod (an emptyDir)"
        ) from exc
    _state["directory"] = directory
    _serve_beside_seldon()
    return directory


def activate(directory: Path) -> None:
    """Record this process's metrics in ``directory`` (call after the fork, before creating metrics)."""
    os.environ[DIR_ENV] = str(directory)  # prometheus-client opens its files there
    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus-client picks its value class when it is first imported, which Seldon's wrapper
        # does long before the component runs; metric objects look it up when they are created.
        values.ValueClass = values.MultiProcessValue()


def exposition(directory: Path, labels: Mapping[str, str] | None = None) -> str:
    """Prometheus text of every process's metrics in ``directory``, each series with ``labels``."""
    registry = CollectorRegistry()
    registry.register(_Labelled(MultiProcessCollector(None, path=str(directory)), labels or seldon_labels()))
    return generate_latest(registry).decode()


class _Labelled:
    """A collector adding constant labels to every sample of another (as Seldon adds its own)."""

    def __init__(self, collector: MultiProcessCollector, labels: Mapping[str, str]):
        self.collector, self.labels = collector, dict(labels)

    def collect(self) -> Iterator[Metric]:
        for family in self.collector.collect():
            family.samples = [s._replace(labels={**self.labels, **s.labels}) for s in family.samples]
            yield family


def _serve_beside_seldon() -> None:
    """Make ``SeldonMetrics.generate_metrics`` (the metrics server's only view) put ours first.

    Ours come first so that a parse error in Seldon's part cannot hide a problem in ours from
    ``promtool``. Patched once per process; the metrics server is forked after ``__init__``.
    """
    from seldon_core.metrics import SeldonMetrics

    if getattr(SeldonMetrics.generate_metrics, "_glassbox", False):
        return
    seldon_generate = SeldonMetrics.generate_metrics

    def generate_metrics(self: SeldonMetrics) -> tuple[str, str]:
        text, content_type = seldon_generate(self)
        return exposition(_state["directory"]) + text, content_type

    generate_metrics._glassbox = True  # type: ignore[attr-defined]
    SeldonMetrics.generate_metrics = generate_metrics  # type: ignore[method-assign]


def _remove_orphans(parent: Path) -> None:
    """Remove default directories whose main process is gone (killed before its ``atexit`` ran)."""
    for other in parent.glob(DEFAULT_PREFIX + "*"):
        pid = other.name.removeprefix(DEFAULT_PREFIX)
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(other, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(directory: Path, owner: int) -> None:
    # Forked workers inherit atexit handlers: only the process that created the directory removes it.
    if os.getpid() == owner:
        shutil.rmtree(directory, ignore_errors=True)
