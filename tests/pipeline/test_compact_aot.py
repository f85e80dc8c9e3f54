"""The compact forest's loops built ahead of time (``compact_aot``) serve without numba or llvmlite and
give the JIT's probabilities bit for bit; an extension built from other source is ignored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from glassbox.errors import InvalidInput
from glassbox.pipeline import compact, compact_aot
from glassbox.pipeline.artifacts import resolve_version_dir

from . import test_compact
from .test_compact import compiled, nan_data

fitted = test_compact.fitted  # the NaN-routing pipelines of the JIT's own tests

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Skipping features without any observed values"),
]

# Runs in a fresh interpreter: numba and llvmlite unimportable, glassbox.pipeline also searched in the
# build directory (argv[1]), as if the extension had been copied beside the installed package.
PRELUDE = """
import importlib.abc, sys
BLOCKED = {"numba", "llvmlite"}
assert not BLOCKED & {name.partition(".")[0] for name in sys.modules}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
import glassbox.pipeline
glassbox.pipeline.__path__.append(sys.argv[1])
"""


@pytest.fixture(scope="module")
def extension_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension built by the command the model image runs, into a directory of its own."""
    assert compact._AOT is None, "this interpreter must run the JIT: an extension is installed in the tree"
    directory = tmp_path_factory.mktemp("aot")
    done = subprocess.run(
        [sys.executable, "-m", "glassbox.pipeline.compact_aot", "build", "--output-dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    built = Path(done.stdout.strip().splitlines()[-1])
    assert built.parent == directory and built.name.startswith(compact_aot.MODULE + ".")
    return directory


def run(code: str, directory: Path, tmp_path: Path, env: dict | None = None, block: bool = True) -> str:
    prelude = PRELUDE if block else PRELUDE.replace('{"numba", "llvmlite"}', "set()", 1)
    done = subprocess.run(
        [sys.executable, "-c", prelude + code, str(directory)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def jit_answer(model: compact.CompactPipeline, rows: np.ndarray) -> np.ndarray | str:
    """The JIT's probabilities, or its refusal's message."""
    try:
        return model.predict_proba(rows)
    except InvalidInput as exc:
        return str(exc)


COMPARE = """
import json, numpy as np
from glassbox.errors import InvalidInput
from glassbox.pipeline import compact
assert compact._AOT is not None, "the extension was not used"
cases = json.load(open("cases.json"))
for name, case in cases.items():
    model = compact.CompactPipeline.from_bytes(open(case["model"], "rb").read())
    rows = np.load(case["rows"])
    try:
        answer = model.predict_proba(rows)
    except InvalidInput as exc:
        assert str(exc) == case["refusal"], (name, str(exc), case["refusal"])
        continue
    expected = np.load(case["expected"])
    assert answer.dtype == expected.dtype and answer.shape == expected.shape, name
    assert answer.tobytes() == expected.tobytes(), (name, np.abs(answer - expected).max())
loaded = {name.partition(".")[0] for name in sys.modules}
assert not {"numba", "llvmlite"} & loaded
print("compared", len(cases))
"""


def test_aot_gives_the_jits_probabilities_bit_for_bit_without_numba(
    extension_dir, fitted, trained_artifacts, adult_test_rows, tmp_path
):
    adult_file = resolve_version_dir(trained_artifacts) / "compact.npz"
    adult = compact.CompactPipeline.from_bytes(adult_file.read_bytes())
    X, _ = nan_data()
    models = {name: compiled(pipeline) for name, pipeline in fitted.items()}
    models["adult"] = adult
    cases: dict[str, tuple[str, np.ndarray]] = {
        "adult test rows": ("adult", adult_test_rows),
        "adult one row": ("adult", adult_test_rows[:1]),
        "adult infinity refused": ("adult", np.where(np.arange(12) == 0, np.inf, adult_test_rows[:2])),
    }
    for name in ("forest", "extra", "trained without NaN"):
        cases[f"{name}: NaN rows"] = (name, X)
        cases[f"{name}: all NaN"] = (name, np.full((3, 5), np.nan))
    cases["partly imputed: NaN rows"] = ("partly imputed", np.column_stack([X, np.full(len(X), np.nan)]))
    cases["forest: 1e300 refused"] = ("forest", np.where(np.arange(5) == 2, 1e300, X[:4]))
    described = {}
    for i, (case, (name, rows)) in enumerate(cases.items()):
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        model = models[name]
        (tmp_path / f"model{i}.npz").write_bytes(model.to_bytes())
        np.save(tmp_path / f"rows{i}.npy", rows)
        answer = jit_answer(model, rows)
        entry = {"model": f"model{i}.npz", "rows": f"rows{i}.npy"}
        if isinstance(answer, str):
            entry["refusal"] = answer
        else:
            np.save(tmp_path / f"expected{i}.npy", answer)
            entry["expected"] = f"expected{i}.npy"
        described[case] = entry
    assert sum("refusal" in entry for entry in described.values()) == 2
    assert np.isnan(X).any(axis=1).sum() > 100  # the missing-value walk is exercised
    (tmp_path / "cases.json").write_text(json.dumps(described))
    assert f"compared {len(cases)}" in run(COMPARE, extension_dir, tmp_path)


def test_the_model_component_serves_through_the_extension_without_numba(
    extension_dir, trained_artifacts, tmp_path
):
    code = f"""
from glassbox.serving.component import LoanClassifier
from glassbox.pipeline import compact

model = LoanClassifier(artifacts={str(trained_artifacts)!r}, outbox_dir={str(tmp_path / "outbox")!r})
model.load()
names = list(model.dataplane.schema.feature_names)
answer = model.predict_raw({{"data": {{"names": names, "ndarray": [[0.0] * len(names)] * 3}}}})
assert len(answer["data"]["ndarray"]) == 3, answer
assert compact._AOT is not None
assert not {{"numba", "llvmlite"}} & {{name.partition(".")[0] for name in sys.modules}}
print("served", answer["data"]["ndarray"][0])
"""
    assert "served" in run(code, extension_dir, tmp_path)


def test_an_extension_built_from_other_source_is_ignored(extension_dir, tmp_path):
    """A stale build (compact.py's loops changed since) or GLASSBOX_COMPACT_AOT=0: the JIT runs."""
    code = """
from glassbox.pipeline import compact_aot
if STALE:
    compact_aot.fingerprint = lambda: "0" * 15  # the source changed since the build
from glassbox.pipeline import compact
print("aot" if compact._AOT is not None else "jit", "numba" in sys.modules)
"""
    fresh, stale = "STALE = False\n" + code, "STALE = True\n" + code
    assert run(fresh, extension_dir, tmp_path).split() == ["aot", "False"]
    assert run(stale, extension_dir, tmp_path, block=False).split() == ["jit", "True"]
    disabled = {"GLASSBOX_COMPACT_AOT": "0"}
    assert run(fresh, extension_dir, tmp_path, disabled, block=False).split() == ["jit", "True"]
    # Blocked, the JIT's numba import fails: the fallback really was taken.
    with pytest.raises(AssertionError, match="No module named 'numba'"):
        run(stale, extension_dir, tmp_path)
