"""``glassbox serve-v2``: the MLServer settings it writes (the servers themselves: the other tests here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from glassbox.cli import main

HEAVY = ("alibi", "sklearn", "skl2onnx", "onnxruntime", "numba", "llvmlite", "kubernetes")


def test_settings_name_the_runtime_ports_and_the_version(trained_artifacts, tmp_path, capsys, monkeypatch):
    from glassbox.pipeline.artifacts import read_manifest, resolve_version_dir

    monkeypatch.delenv("GLASSBOX_EXPLAINER_MODEL_PROTOCOL", raising=False)
    run = tmp_path / "run"
    argv = ["serve-v2", "--component", "explainer", "--artifacts", str(trained_artifacts),
            "--http-port", "9100", "--grpc-port", "9101", "--metrics-port", "9102", "--run-dir", str(run),
            "--print-only",
            "--model-url", "http://model:8080/v2/models/loanclassifier/infer"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(run)
    settings = json.loads((run / "settings.json").read_text())
    assert (settings["http_port"], settings["grpc_port"], settings["metrics_port"]) == (9100, 9101, 9102)
    assert settings["host"] == "127.0.0.1" and settings["parallel_workers"] == 0
    model = json.loads((run / "model-settings.json").read_text())
    assert model["name"] == "loanclassifier-explainer"
    assert model["implementation"] == "glassbox.explain.mlserver_runtime.GlassboxExplainer"
    version = read_manifest(resolve_version_dir(trained_artifacts)).version
    assert model["parameters"] == {"uri": str(trained_artifacts.resolve()), "version": str(version)}


def test_outside_the_v2_virtualenv_it_says_where_mlserver_is_missing(trained_artifacts, tmp_path, capsys):
    assert not (Path(sys.executable).parent / "mlserver").exists()  # the main venv has no MLServer
    code = main(["serve-v2", "--component", "model", "--artifacts", str(trained_artifacts), "--run-dir",
                 str(tmp_path)])  # fmt: skip
    assert code == 2
    assert "mlserver not found: run in the V2 virtualenv (make install-v2)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "module",
    ["glassbox.serving.mlserver_runtime", "glassbox.explain.mlserver_runtime", "glassbox.stack.serve_v2"],
)
def test_the_runtime_modules_import_nothing_heavy(v2_bin, module):
    """MLServer imports the runtime class before ``load()``: alibi, sklearn, numba wait until then."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([str(v2_bin / "python"), "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    heavy = sorted({m.split(".")[0] for m in json.loads(done.stdout)} & set(HEAVY))
    assert heavy == []
    if module != "glassbox.stack.serve_v2":
        assert "mlserver" in json.loads(done.stdout)
    else:  # the launcher runs before MLServer does: it imports none of it
        assert "mlserver" not in json.loads(done.stdout)
