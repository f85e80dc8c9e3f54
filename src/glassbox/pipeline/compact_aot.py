"""The compact forest's loops compiled ahead of time, so that serving needs neither numba nor llvmlite.

``import numba`` costs the model worker ~106 MiB PSS (91 MiB of it ``libllvmlite.so``) and the first
prediction ~41 MiB more (LLVM loading the cached kernels). ``build`` compiles the very loops of
``compact.py`` (same Python code, same numba, the signature the JIT gives them) with numba's AOT
compiler (``numba.pycc``) into a CPython extension ``_compact_kernels`` holding only machine code and
numba's small runtime; ``compact.py`` imports it when present (``load``) and otherwise JIT-compiles
the loops as before, so development, training and tests need nothing built.

The extension goes where ``load`` looks: ``glassbox/pipeline/`` beside this file, in an installed
package (never into a git checkout's ``src/``: a binary is not to be committed, and there it would
also take the place of the JIT the tests exercise). It records a fingerprint of the source it was
built from (the loops' section of ``compact.py``, the constants they read, the Python version);
``load`` ignores an extension built from other source, so a stale build never answers. It targets a
generic x86-64 CPU (pycc's default), so an image runs on any host; the loops have no multiply-add
to fuse, and their probabilities are the JIT's bit for bit (tests/pipeline/test_compact_aot.py).

Build: ``python -m glassbox.pipeline.compact_aot build --output-dir DIR`` (needs numba, setuptools and
a C compiler), then put the file in the installed ``glassbox/pipeline`` directory (the model image's
Dockerfile copies it there from its builder stage).
Set ``GLASSBOX_COMPACT_AOT=0`` to ignore an installed extension (the JIT then runs).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import types
from pathlib import Path

MODULE = "_compact_kernels"  # the extension's name, inside the glassbox.pipeline package
KERNELS = ("_preprocess_row", "_leaf_with_missing", "_predict")  # compact.py's loops; _predict is exported
SECTION = "# --- the compiled loops"  # where compact.py's loops start: the fingerprinted source
SOURCE = Path(__file__).with_name("compact.py")


def fingerprint() -> str:
    """A hash of the source the loops are compiled from: the section of compact.py and the constants."""
    text = SOURCE.read_text(encoding="utf-8")
    start = text.find(SECTION)
    if start < 0:
        raise RuntimeError(f"{SOURCE}: the marker {SECTION!r} is missing")
    # The constants the loops read are module globals above the section: their lines count too.
    constants = [
        line
        for line in text[:start].splitlines()
        if line.split(" = ")[0].strip()
        in {"NODE", "LEAF", "NEXT_IS_RIGHT", "MISSING_IS_NEXT", "FEATURE", "CLEAN, HAS_NAN"}
    ]
    digest = hashlib.sha256("\n".join([*constants, text[start:]]).encode())
    digest.update(f"{sys.implementation.cache_tag}".encode())
    return digest.hexdigest()[:15]  # 60 bits: an int64 constant in the extension


def load() -> types.ModuleType | None:
    """The built extension when present and built from this source; None: the JIT compiles the loops."""
    if os.environ.get("GLASSBOX_COMPACT_AOT", "1") == "0":
        return None
    try:
        module = importlib.import_module(f"{__package__}.{MODULE}")
    except ImportError:
        return None
    try:
        built_from = module.source_fingerprint()
        current = fingerprint()
    except (AttributeError, OSError, RuntimeError):
        return None
    return module if built_from == int(current, 16) else None


def jit_kernels() -> dict[str, object]:
    """compact.py's loops as fresh numba dispatchers (no cache), whatever compact.py itself runs.

    The functions are rebuilt over a copy of compact's globals in which the three names are these
    dispatchers, so ``_predict`` calls the JIT ``_preprocess_row`` even when compact.py runs the AOT
    extension (and holds the plain functions).
    """
    import numba

    from glassbox.pipeline import compact

    namespace = dict(vars(compact))
    for name in KERNELS:
        function = getattr(compact, name)
        function = getattr(function, "py_func", function)
        rebuilt = types.FunctionType(
            function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
        )
        rebuilt.__doc__, rebuilt.__module__ = function.__doc__, function.__module__
        namespace[name] = numba.njit(nogil=True)(rebuilt)
    return {name: namespace[name] for name in KERNELS}


def predict_signature(predict) -> object:
    """The signature the JIT gives ``_predict`` on what ``CompactPipeline`` passes it (its arrays' types)."""
    import numpy as np

    from glassbox.pipeline.compact import LEAF, NODE

    nodes = np.zeros(1, NODE)
    nodes["feature"] = LEAF
    args = (
        np.zeros((1, 1)),  # rows: C-contiguous float64 (fastpath.as_rows)
        np.zeros(1),  # impute
        np.zeros(1, np.int8),  # kind
        np.zeros(1, np.int32),  # source
        np.zeros(1),  # a
        np.ones(1),  # b
        True,  # nan_ok
        nodes,
        np.zeros(1, np.int32),  # roots
    )
    predict(*args)
    (signature,) = predict.nopython_signatures
    return signature


def build(output_dir: Path) -> Path:
    """Compile the loops into ``output_dir``; returns the extension's path."""
    from numba import types as nbtypes
    from numba.pycc import CC

    kernels = jit_kernels()
    predict = kernels["_predict"]
    signature = predict_signature(predict)
    output_dir.mkdir(parents=True, exist_ok=True)
    cc = CC(MODULE, source_module=__name__)
    cc.output_dir = str(output_dir)
    cc.verbose = False
    cc.export("predict", signature)(predict.py_func)
    # The fingerprint as a constant: load() compares it with the source it runs beside.
    built_from = int(fingerprint(), 16)
    cc.export("source_fingerprint", nbtypes.int64())(lambda: built_from)
    cc.compile()
    built = output_dir / cc.output_file
    if not built.is_file():
        raise RuntimeError(f"numba.pycc wrote no {built}")
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glassbox.pipeline.compact_aot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="compile the compact forest's loops ahead of time")
    build_command.add_argument(
        "--output-dir",
        type=Path,
        required=True,  # no default: never into a git checkout's src/ by accident (a binary to commit)
        help="where to write the extension: the installed glassbox/pipeline directory (see load)",
    )
    args = parser.parse_args(argv)
    print(build(args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
