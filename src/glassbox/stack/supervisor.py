"""Start the local stack in dependency order, record it in a state file, stop it again.

``Stack.up`` starts each process only after the one before it answered its health check, and
undoes everything if one fails. The state file (``run/state.json``) holds every pid and port, so
``glassbox down``/``status`` work from another shell and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from glassbox.errors import Conflict, GlassboxError
from glassbox.stack import components, v2_components
from glassbox.stack.components import Component
from glassbox.stack.process import (
    LOOPBACK,
    free_port,
    port_is_free,
    process_group_members,
    stop_process_group,
)
from glassbox.stack.prometheus import (
    HOW_TO_INSTALL,
    RULES,
    find_prometheus,
    prometheus_process,
    write_scrape_config,
)
from glassbox.stack.settings import StackSettings


class PortTaken(Conflict):
    """A port configured in the settings is already in use."""


class StackRunning(Conflict):
    """A stack recorded in the state file is still running."""


def claim_port(port: int, setting: str) -> int:
    """``port`` if it is free, a free port when it is 0, else a clear error naming the setting."""
    if port == 0:
        return free_port()
    if not port_is_free(port):
        raise PortTaken(
            f"port {port} ({setting}) is already in use on {LOOPBACK}: stop what uses it "
            f"(`ss -ltnp 'sport = :{port}'`) or set {setting}=0 to pick a free port"
        )
    return port


@dataclass
class ProcessRecord:
    """What the state file remembers of one process."""

    name: str
    pid: int
    ports: dict[str, int]
    url: str
    health_url: str | None
    log: str
    links: dict[str, str]

    def alive(self) -> bool:
        return bool(process_group_members(self.pid))

    def healthy(self) -> bool:
        if not self.health_url:
            return self.alive()
        try:
            return requests.get(self.health_url, timeout=2).status_code == 200
        except requests.RequestException:
            return False


class Stack:
    """The running local stack, started by this process (``up``) or read back from its state file."""

    def __init__(self, settings: StackSettings | None = None):
        self.settings = settings or StackSettings()
        self.components: dict[str, Component] = {}
        self.notes: list[str] = []

    # -- start ---------------------------------------------------------------------------------------

    def up(self, with_prometheus: bool = True) -> Stack:
        s = self.settings
        if (running := read_state(s)) and any(record.alive() for record in running.values()):
            raise StackRunning(
                f"a stack is already running from {s.run_dir} (see `glassbox status`); "
                "stop it with `glassbox down` or use another GLASSBOX_STACK_RUN_DIR"
            )
        if not (s.artifacts / "LATEST").exists() and not (s.artifacts / "manifest.json").exists():
            raise GlassboxError(
                f"no trained model at {s.artifacts}: run `glassbox train --config {s.train_config} "
                f"--output {s.artifacts}` (or `glassbox demo`, which trains when needed)",
                status_code=400,
            )
        s.logs_dir.mkdir(parents=True, exist_ok=True)
        with_monitor = s.monitor and self.model_has_detectors()
        gateway_port = claim_port(s.gateway_port, "GLASSBOX_STACK_GATEWAY_PORT")
        queue_port = claim_port(s.queue_port, "GLASSBOX_STACK_QUEUE_PORT")
        monitor_port = claim_port(s.monitor_port, "GLASSBOX_STACK_MONITOR_PORT") if with_monitor else 0
        prometheus_port = claim_port(s.prometheus_port, "GLASSBOX_STACK_PROMETHEUS_PORT")
        queue_url = f"http://{LOOPBACK}:{queue_port}"
        # The Seldon components' ports are chosen now so the queue can be told where they will be.
        monitor = components.monitor(s, monitor_port, queue_url) if with_monitor else None
        if s.protocol == "v2":  # MLServer (glassbox serve-v2 from the V2 virtualenv), as on KServe
            model = v2_components.model_v2(s, queue_url, monitor.url if monitor else "")
            explainer = v2_components.explainer_v2(s, model.url)
            # The queue's feedback and on-demand explanations speak Seldon's protocol: off on V2.
            queue_model_url = queue_explainer_url = ""
        else:
            model = components.model(s, queue_url, monitor.url if monitor else "")
            explainer = components.explainer(s, model.url)
            queue_model_url, queue_explainer_url = model.url, explainer.url
        plan = [
            components.queue(s, queue_port, queue_model_url, queue_explainer_url),
            *([monitor] if monitor else []),
            model,
            explainer,
            components.gateway(s, gateway_port, model.url, explainer.url),
        ]
        try:
            for component in plan:
                self.start(component)
            if with_prometheus:
                self._start_prometheus(prometheus_port)
        except BaseException:
            self.down()
            raise
        self.write_state()
        return self

    def model_has_detectors(self) -> bool:
        """Whether the served version holds the detectors the monitor loads (training fits them since
        the monitor exists); without them the stack runs without the monitor and says why."""
        from glassbox.pipeline.artifacts import resolve_version_dir
        from glassbox.pipeline.detectors import DETECTORS

        version = resolve_version_dir(self.settings.artifacts)
        if (version / DETECTORS).is_file():
            return True
        self.notes.append(
            f"{version} has no {DETECTORS} (trained before drift monitoring), so the stack runs without "
            f"the monitor: retrain (`glassbox train --config {self.settings.train_config} --output "
            f"{self.settings.artifacts}`) to get its drift and outlier panels"
        )
        return False

    def start(self, component: Component) -> None:
        """Start one component and wait for its health check (also used to restart one)."""
        self.components[component.name] = component
        self.write_state()  # record the pid before waiting, so `down` can reach a slow starter
        component.process.start(timeout=self.settings.start_timeout)
        self.write_state()

    def _start_prometheus(self, port: int) -> None:
        binary = find_prometheus(self.settings.prometheus_bin)
        if binary is None:
            self.notes.append(HOW_TO_INSTALL)
            return
        targets = [c.scrape for c in self.components.values() if c.scrape]
        config = write_scrape_config(
            self.settings.run_dir / "prometheus.yml",
            targets,
            self.settings.namespace,
            self.settings.scrape_interval,
            rule_files=[RULES] if RULES.exists() else None,  # absent from an installed wheel
        )
        proc = prometheus_process(
            binary, config.resolve(), (self.settings.run_dir / "prometheus").resolve(), port,
            self.settings.logs_dir / "prometheus.log",
        )  # fmt: skip
        url = f"http://{LOOPBACK}:{port}"
        self.start(Component("prometheus", proc, {"http": port}, url, links={"prometheus": url}))

    # -- stop ----------------------------------------------------------------------------------------

    def stop_component(self, name: str, crash: bool = False) -> None:
        """Stop one component (SIGKILL when ``crash``), keeping its ports for ``restart``."""
        process = self.components[name].process
        process.kill() if crash else process.stop()

    def restart(self, name: str) -> None:
        """Start a stopped component again on the same ports, with the same data."""
        self.start(self.components[name])

    def down(self) -> list[str]:
        """Stop every component in reverse start order; returns the names of any left running."""
        left = []
        for name in reversed(list(self.components)):
            proc = self.components[name].process
            proc.stop()
            if proc.pid and process_group_members(proc.pid):
                left.append(name)
        self.components.clear()
        with contextlib.suppress(FileNotFoundError):
            self.settings.state_file.unlink()
        return left

    # -- state ---------------------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return self.components[name].url

    @property
    def gateway_endpoint(self) -> str:
        """host:port for SeldonClient(gateway_endpoint=...)."""
        return self.components["gateway"].links["gateway"]

    def records(self) -> dict[str, ProcessRecord]:
        return {
            c.name: ProcessRecord(
                name=c.name,
                pid=c.process.pid or 0,
                ports=c.ports,
                url=c.url,
                health_url=c.process.health_url,
                log=str(c.process.log_path),
                links=c.links,
            )
            for c in self.components.values()
        }

    def write_state(self) -> None:
        state = {
            "supervisor_pid": os.getpid(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "namespace": self.settings.namespace,
            "deployment": self.settings.deployment,
            "protocol": self.settings.protocol,
            "processes": [vars(r) for r in self.records().values()],
        }
        path = self.settings.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(path)  # atomic: a concurrent `status` never reads half a file


def read_state(settings: StackSettings) -> dict[str, ProcessRecord]:
    """The processes recorded in the state file (empty when no stack was started)."""
    try:
        state = json.loads(Path(settings.state_file).read_text())
    except FileNotFoundError:
        return {}
    return {p["name"]: ProcessRecord(**p) for p in state["processes"]}


def read_supervisor_pid(settings: StackSettings) -> int | None:
    try:
        return int(json.loads(Path(settings.state_file).read_text())["supervisor_pid"])
    except (FileNotFoundError, KeyError, ValueError):
        return None


def stop_recorded(settings: StackSettings, grace: float = 10.0) -> dict[str, bool]:
    """Stop every process in the state file (``glassbox down``); returns {name: stopped cleanly}."""
    records = read_state(settings)
    stopped = {}
    for name in reversed([n for n in components.ORDER if n in records]):
        stopped[name] = stop_process_group(records[name].pid, grace)
    if all(stopped.values()):
        with contextlib.suppress(FileNotFoundError):
            settings.state_file.unlink()
    return stopped
