"""Per-component installs: each extra's resolved requirements, the pins, and each component's code
read (every import, those inside functions too) and run with nothing importable beyond its own extra.

The closure of an extra is computed from pyproject.toml and the metadata of the distributions
installed in this virtualenv (which ``make install`` fills from requirements/constraints.txt), the
way pip resolves it: markers evaluated, requested extras followed, ``glassbox[...]`` expanded.
What an image really installs, and its size, is measured by ``benchmarks/footprint.py``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OPTIONAL = PROJECT["optional-dependencies"]
EVERYTHING = ("stack", "train", "deploy", "dev")  # what `make install` installs
HEAVY = {"alibi", "scikit-learn", "kubernetes", "kubernetes-validate", "spacy", "transformers", "torch"}


def closure(*extras: str) -> dict[str, str]:
    """Canonical distribution name -> installed version: everything ``glassbox[extras]`` pulls in."""
    todo = [Requirement(r) for r in PROJECT["dependencies"]]
    todo += [Requirement(f"glassbox[{e}]") for e in extras]
    expanded: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    found: dict[str, str] = {}
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == "glassbox":
            for extra in req.extras - expanded:
                expanded.add(extra)
                todo += [Requirement(r) for r in OPTIONAL[extra]]
            continue
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} (needed by glassbox[{','.join(extras)}]) is not installed: run make install")
        found[name] = dist.version
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (*req.extras, "")):
                todo.append(sub)
    return found


V2_EXTRAS = ("v2", "v2-dev")  # installed in .venv-v2 from requirements/constraints-v2.txt (make install-v2)


def constraints(name: str = "constraints.txt") -> dict[str, str]:
    lines = (REPO / "requirements" / name).read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in lines]
    return {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins if p}


def test_model_extra_needs_neither_alibi_nor_sklearn_nor_kubernetes():
    model = closure("model")
    assert {"seldon-core", "numba", "onnxruntime"} <= model.keys()
    assert not HEAVY & model.keys(), sorted(HEAVY & model.keys())
    assert not {"pandas", "scipy", "skl2onnx", "onnx", "matplotlib"} & model.keys()


def test_only_the_explainer_and_training_bring_alibi():
    explainer = closure("explainer")
    assert "alibi" in explainer
    assert not {"kubernetes", "kubernetes-validate"} & explainer.keys()
    assert {"redis", "rq"} <= explainer.keys()
    assert "alibi" in closure("train")
    for extra in ("model", "queue", "deploy"):
        assert "alibi" not in closure(extra), extra


def test_queue_extra_is_the_queue_alone():
    queue = closure("queue")
    assert {"starlette", "uvicorn", "psycopg", "psycopg-binary", "psycopg-pool", "nltk"} <= queue.keys()
    assert not (HEAVY | {"seldon-core", "numba", "onnxruntime", "flask", "redis"}) & queue.keys()


def test_pins_are_exact_and_constraints_pin_everything_installed():
    pins, pins_v2 = constraints(), constraints("constraints-v2.txt")
    for extra, lines in [("", PROJECT["dependencies"]), *OPTIONAL.items()]:
        file, pinned = ("constraints-v2.txt", pins_v2) if extra in V2_EXTRAS else ("constraints.txt", pins)
        for line in lines:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            if name in ("glassbox", "numpy"):  # self-references; numpy is a range (<2), pinned in constraints
                continue
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: pin it exactly"
            assert pinned.get(name) == spec.version, f"{line} differs from requirements/{file}"
    everything = closure(*EVERYTHING)
    missing = sorted(set(everything) - set(pins))
    assert not missing, f"not pinned in requirements/constraints.txt: {missing}"
    drift = {name: (version, pins[name]) for name, version in everything.items() if pins[name] != version}
    assert not drift, f"installed versions differ from the constraints (run make install): {drift}"
    unused = sorted(set(pins) - set(everything) - NO_DEPS - {"pip"})
    assert not unused, f"pinned but needed by no extra: {unused}"


# --- every import in each component's code, also those inside functions (read, not run) ------------

SRC = REPO / "src"
# Imports a component's code holds but never runs in that component: name -> why.
# Installed --no-deps beside the explainer's extra (Makefile, its Dockerfile): dice-ml's metadata pulls
# xgboost, lightgbm and NCCL, which its sklearn backend never imports (requirements/no-deps.txt).
NO_DEPS = {
    canonicalize_name(line.split("==")[0])
    for line in (REPO / "requirements/no-deps.txt").read_text().splitlines()
    if line[:1].isalnum()
}
NOT_RUN = {
    "model": {
        "sklearn": "compact.py / onnx_graph.py convert a fitted pipeline: at training",
        "skl2onnx": "onnx_graph.to_onnx_bytes: at training",
        "onnx": "onnx_graph.to_onnx_bytes: at training",
    },
    "explainer": {
        "skl2onnx": "onnx_graph.to_onnx_bytes: at training",
        "onnx": "onnx_graph.to_onnx_bytes: at training",
        "onnxruntime": "onnx_graph's predictor: the explainer asks the model for predictions",
    },
    "queue": {},
    "monitor": {
        "sklearn": "detectors.fit (LedoitWolf) and compact/onnx_graph compile: at training",
        "numba": "the bundle's fast path: the monitor scores rows with detectors.npz alone",
        "onnxruntime": "onnx_graph's predictor: the monitor never predicts",
        "skl2onnx": "onnx_graph.to_onnx_bytes: at training",
        "onnx": "onnx_graph.to_onnx_bytes: at training",
    },
}
ENTRY = {
    "model": "glassbox.serving.component",
    "explainer": "glassbox.explain.component",
    "queue": "glassbox.annotation.app",
    "monitor": "glassbox.monitor.app",
}


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imports_of(name: str) -> list[str]:
    """Modules ``name`` imports anywhere (functions included), except under ``if TYPE_CHECKING:``."""
    path = module_file(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                found.append(base)
                found.extend(f"{base}.{a.name}" for a in child.names if module_file(f"{base}.{a.name}"))
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def third_party_imports(entry: str) -> dict[str, set[str]]:
    """Top-level third-party module -> the glassbox modules importing it, over everything ``entry``
    reaches through glassbox imports."""
    todo, seen, third = [entry], set(), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported in imports_of(name):
            top = imported.partition(".")[0]
            if top == "glassbox":
                parts = imported.split(".")
                todo += [
                    ".".join(parts[:i]) for i in range(2, len(parts) + 1) if module_file(".".join(parts[:i]))
                ]
            elif top not in sys.stdlib_module_names and top != "__future__":
                third.setdefault(top, set()).add(name)
    return third


@pytest.mark.parametrize("extra", sorted(ENTRY))
def test_every_import_of_a_component_is_in_its_extra(extra):
    allowed = set(closure(extra)) | (NO_DEPS if extra == "explainer" else set())
    providers = metadata.packages_distributions()
    outside = {
        module: sorted(importers)
        for module, importers in third_party_imports(ENTRY[extra]).items()
        if not any(canonicalize_name(d) in allowed for d in providers.get(module, []))
        and module not in NOT_RUN[extra]
    }
    assert not outside, f"imported by the {extra} component's code but not in glassbox[{extra}]: {outside}"


# --- each component's own code, with every module outside its extra made unimportable -------------

BLOCKER = """
import importlib.abc, json, sys
# Hooks of .pth files (setuptools' _distutils_hack) run at start-up, before any code of ours.
STARTUP = {"_distutils_hack"}
BLOCKED = frozenset(json.loads(sys.argv[1])) - STARTUP
leaked = BLOCKED & {name.partition(".")[0] for name in sys.modules}
assert not leaked, f"imported before the blocker: {sorted(leaked)}"


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the extra)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
exec(sys.argv[2])
"""


def run_with_only(extra: str, code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the top-level modules of every installed distribution
    outside ``glassbox[extra]`` raise ModuleNotFoundError, as they would in the component's image."""
    allowed = set(closure(extra)) | (NO_DEPS if extra == "explainer" else set())
    blocked = sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if module != "glassbox" and not any(canonicalize_name(d) in allowed for d in dists)
    )
    assert "sklearn" in blocked or extra in ("explainer", "train")
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, json.dumps(blocked), code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.slow
def test_model_component_serves_with_only_its_extra(trained_artifacts, tmp_path):
    code = f"""
from glassbox.serving.component import LoanClassifier

model = LoanClassifier(artifacts={str(trained_artifacts)!r}, outbox_dir={str(tmp_path / "outbox")!r})
model.load()
names = list(model.dataplane.schema.feature_names)
answer = model.predict_raw({{"data": {{"names": names, "ndarray": [[0.0] * len(names)]}}}})
assert len(answer["data"]["ndarray"][0]) == 2, answer
heavy = {{"alibi", "sklearn", "kubernetes", "pandas", "scipy", "skl2onnx"}}
loaded = heavy & {{name.partition(".")[0] for name in sys.modules}}
assert not loaded, loaded
print("served", answer["data"]["ndarray"])
"""
    result = run_with_only("model", code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served" in result.stdout


@pytest.mark.slow
def test_explainer_component_loads_with_only_its_extra(trained_artifacts, tmp_path):
    code = f"""
from glassbox.explain.component import LoanExplainer

explainer = LoanExplainer(artifacts={str(trained_artifacts)!r}, model_url="http://127.0.0.1:9/api/v1.0/predictions")
explainer.load()
assert explainer.service is not None
print("loaded", "kubernetes" in sys.modules)
"""
    result = run_with_only("explainer", code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded False" in result.stdout


@pytest.mark.slow
def test_queue_app_builds_with_only_its_extra(tmp_path):
    code = f"""
from glassbox.annotation.app import create_app
from glassbox.annotation.settings import QueueSettings
from glassbox.cli import build_parser

app = create_app(QueueSettings(database_url="sqlite:///{tmp_path / "queue.db"}"))
build_parser().parse_args(["queue", "serve"])
print("built", type(app).__name__)
"""
    result = run_with_only("queue", code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "built Starlette" in result.stdout
