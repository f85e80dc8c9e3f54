"""The helm command line, driven through subprocess.

helm is a Go program with no Python API; its CLI is the stable interface, so this module only builds
argument lists and runs them. Helm 3 and Helm 4 name the "wait, and roll back on failure" flags
differently (``--wait --atomic`` against ``--wait=watcher --rollback-on-failure``); the version is
asked once and the right spelling used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from glassbox.deploy.errors import ConfigError, HelmFailed


@dataclass(frozen=True)
class Helm:
    """One helm binary bound to a namespace (and optionally a kubeconfig context)."""

    binary: str = "helm"
    namespace: str = "default"
    kube_context: str = ""
    # Extra environment for helm (e.g. KUBECONFIG); the rest is inherited.
    env: dict[str, str] | None = field(default=None, compare=False)

    # -- argument lists ----------------------------------------------------------------------------

    def _scope(self) -> list[str]:
        scope = ["--namespace", self.namespace]
        if self.kube_context:
            scope += ["--kube-context", self.kube_context]
        return scope

    def _wait(self, rollback_on_failure: bool = False) -> list[str]:
        if self.major_version >= 4:
            return ["--wait=watcher"] + (["--rollback-on-failure"] if rollback_on_failure else [])
        return ["--wait"] + (["--atomic"] if rollback_on_failure else [])

    @staticmethod
    def _values(values_files: Sequence[Path | str], set_values: Sequence[str]) -> list[str]:
        args: list[str] = []
        for path in values_files:
            args += ["--values", str(path)]
        for assignment in set_values:
            args += ["--set", assignment]
        return args

    def upgrade_install_args(
        self,
        release: str,
        chart: Path | str,
        values_files: Sequence[Path | str] = (),
        set_values: Sequence[str] = (),
        timeout_s: float = 600.0,
    ) -> list[str]:
        """``helm upgrade --install``, waiting for readiness and rolling back if it never comes."""
        args = [self.resolved_binary, "upgrade", "--install", release, str(chart), *self._scope()]
        args += [
            "--create-namespace",
            *self._wait(rollback_on_failure=True),
            "--timeout",
            f"{int(timeout_s)}s",
        ]
        return args + self._values(values_files, set_values)

    def rollback_args(self, release: str, revision: int | None = None, timeout_s: float = 600.0) -> list[str]:
        args = [self.resolved_binary, "rollback", release] + ([str(revision)] if revision is not None else [])
        return [*args, *self._scope(), *self._wait(), "--timeout", f"{int(timeout_s)}s"]

    def uninstall_args(self, release: str, timeout_s: float = 600.0) -> list[str]:
        args = [self.resolved_binary, "uninstall", release]
        return [*args, *self._scope(), *self._wait(), "--timeout", f"{int(timeout_s)}s"]

    def template_args(
        self,
        release: str,
        chart: Path | str,
        values_files: Sequence[Path | str] = (),
        set_values: Sequence[str] = (),
    ) -> list[str]:
        args = [self.resolved_binary, "template", release, str(chart), "--namespace", self.namespace]
        return args + self._values(values_files, set_values)

    # -- running -----------------------------------------------------------------------------------

    @cached_property
    def resolved_binary(self) -> str:
        found = shutil.which(self.binary)
        if not found:
            raise ConfigError(
                f"helm not found: {self.binary!r} is neither on PATH nor a file "
                "(run `make tools`, or set GLASSBOX_DEPLOY_HELM_BIN / --helm)"
            )
        return found

    @cached_property
    def major_version(self) -> int:
        out = self.run([self.resolved_binary, "version", "--short"])
        match = re.match(r"v?(\d+)\.", out.strip())
        if not match:
            raise HelmFailed(f"cannot read helm's version from {out.strip()!r}")
        return int(match.group(1))

    def run(self, args: Sequence[str], stream: bool = False) -> str:
        """Run helm; return its stdout, or raise ``HelmFailed`` naming the command and helm's error.

        With ``stream`` the output goes straight to the terminal (long installs show progress).
        """
        env = {**os.environ, **self.env} if self.env else None
        proc = subprocess.run(
            list(args),
            env=env,
            check=False,
            text=True,
            stdout=None if stream else subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if proc.returncode != 0:
            command = " ".join(args[1:3])
            raise HelmFailed(f"helm {command} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout or ""

    def render(
        self,
        release: str,
        chart: Path | str,
        values_files: Sequence[Path | str] = (),
        set_values: Sequence[str] = (),
    ) -> list[dict]:
        """The chart's manifests as dicts (``helm template``), in helm's order, empty documents dropped."""
        out = self.run(self.template_args(release, chart, values_files, set_values))
        return [doc for doc in yaml.safe_load_all(out) if doc]
