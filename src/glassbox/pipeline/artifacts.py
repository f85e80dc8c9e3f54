"""Model versions on disk: write them atomically, load them only after every SHA-256 checks out.

Layout (docs/contracts.md): ``<model dir>/<version>/`` holds ``manifest.json`` and the artifact files;
``<model dir>/LATEST`` names the newest version. ``dill`` runs code when it loads, so ``load_bundle``
hashes every file listed in the manifest before anything is unpickled, and each lazy load re-checks
the bytes it actually unpickles (a file swapped after ``load_bundle`` is refused too).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dill
import numpy as np
from pydantic import BaseModel, Field

from glassbox.contract.labels import argmax_like_sklearn
from glassbox.errors import ArtifactIntegrityError, Conflict, NotFound

if TYPE_CHECKING:
    from glassbox.pipeline.detectors import Detectors
    from glassbox.pipeline.fastpath import FastPath

MANIFEST = "manifest.json"
LATEST = "LATEST"
PREPROCESSOR = "preprocessor.dill"
MODEL = "model.dill"
EXPLAINER = "explainer.dill"
REPORT = "report.json"
MODEL_CARD = "model_card.md"


class Manifest(BaseModel):
    """What a version is: its schema, how it was made, and the hash of every file beside it."""

    name: str
    version: str
    created_at: str
    feature_names: list[str]
    feature_types: dict[str, str]
    category_map: dict[str, list[str]] = Field(description="Column index (as a string) -> category names.")
    class_names: list[str]
    positive_class: str
    protected_attributes: list[str]
    metrics: dict[str, Any]
    library_versions: dict[str, str]
    training_config: dict[str, Any]
    data_sha256: str
    corrections: dict[str, Any] | None = None
    files: dict[str, str] = Field(description="Relative file name -> sha256.")
    artifact_sha256: str = Field(description="sha256 over the files table: the model's identity.")

    @property
    def category_map_int(self) -> dict[int, list[str]]:
        """The category map with integer keys, as alibi's explainers expect it."""
        return {int(k): v for k, v in self.category_map.items()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def publish_version(
    staging: Path, model_dir: Path, manifest_fields: dict[str, Any], promote: bool = True
) -> Path:
    """Hash every file in ``staging``, write the manifest, move it into place and (if ``promote``) point
    LATEST at it.

    The rename is atomic, so readers see either no version or a complete one, never a partial one.
    """
    files = {
        path.relative_to(staging).as_posix(): sha256_file(path)
        for path in sorted(staging.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    manifest = Manifest(**manifest_fields, files=files, artifact_sha256=files_digest(files))
    (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2) + "\n")
    target = model_dir / manifest.version
    if target.exists():
        raise Conflict(f"version {manifest.version} already exists in {model_dir}")
    os.replace(staging, target)
    if promote:
        set_latest(model_dir, manifest.version)
    return target


def set_latest(model_dir: Path, version: str) -> None:
    """Point LATEST at ``version`` atomically (a unique temp file, then rename: safe for concurrent runs)."""
    with tempfile.NamedTemporaryFile("w", dir=model_dir, prefix=f".{LATEST}.", delete=False) as handle:
        handle.write(version + "\n")
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, model_dir / LATEST)


def resolve_version_dir(path: str | Path) -> Path:
    """A version dir as given, or the one a model dir's LATEST names."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return path
    latest = path / LATEST
    if latest.is_file():
        version = latest.read_text().strip()
        if not version or "/" in version or version.startswith("."):
            raise ArtifactIntegrityError(f"{latest} names no valid version: {version!r}")
        if not (path / version / MANIFEST).is_file():
            raise NotFound(f"{latest} names version {version!r} but {path / version / MANIFEST} is missing")
        return path / version
    raise NotFound(f"no model at {path}: neither {MANIFEST} nor {LATEST} found")


def verify(version_dir: Path, manifest: Manifest) -> None:
    """Raise ArtifactIntegrityError unless every listed file exists with its recorded SHA-256."""
    if files_digest(manifest.files) != manifest.artifact_sha256:
        raise ArtifactIntegrityError(
            f"{version_dir / MANIFEST}: artifact_sha256 does not match its files table"
        )
    for name, expected in manifest.files.items():
        path = version_dir / name
        if not path.resolve().is_relative_to(version_dir.resolve()):
            raise ArtifactIntegrityError(
                f"{version_dir / MANIFEST}: file {name!r} points outside the version"
            )
        if not path.is_file():
            raise ArtifactIntegrityError(f"{path}: listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactIntegrityError(
                f"{path}: sha256 {actual} does not match the manifest's {expected}; refusing to load it"
            )


class Bundle:
    """One verified model version: fast path, sklearn reference and explainer, loaded on first use."""

    def __init__(self, version_dir: Path, manifest: Manifest):
        self.path = version_dir
        self.manifest = manifest

    @property
    def n_features(self) -> int:
        return len(self.manifest.feature_names)

    def read_verified(self, name: str) -> bytes:
        """A file's bytes, re-hashed: what we unpickle is exactly what the manifest vouches for."""
        expected = self.manifest.files.get(name)
        if expected is None:
            raise ArtifactIntegrityError(f"{name} is not listed in {self.path / MANIFEST}")
        data = (self.path / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ArtifactIntegrityError(f"{self.path / name}: sha256 changed since the manifest was written")
        return data

    @cached_property
    def fast_path(self) -> FastPath:
        # numba (and onnxruntime for other estimators) only once a prediction is asked for: the
        # explainer, which asks the deployed model, and Seldon's parent process never import them.
        from glassbox.pipeline import fastpath

        names = [n for n in fastpath.FILES if n in self.manifest.files]
        return fastpath.load({name: self.read_verified(name) for name in names}, self.n_features)

    @cached_property
    def pipeline(self):  # sklearn Pipeline
        return dill.loads(self.read_verified(MODEL))

    @cached_property
    def preprocessor(self):  # sklearn ColumnTransformer
        return dill.loads(self.read_verified(PREPROCESSOR))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities per class from the fast path; X: (n, n_features) in alibi's encoding."""
        return self.fast_path.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return argmax_like_sklearn(self.predict_proba(X))

    def sklearn_predict_proba(self, X: Any) -> np.ndarray:
        """The reference: the fitted sklearn pipeline."""
        from glassbox.pipeline.fastpath import as_rows

        return self.pipeline.predict_proba(as_rows(X, self.n_features))

    def load_explainer(self, predictor: Callable[[np.ndarray], np.ndarray] | None = None, bind: bool = True):
        """The fitted AnchorTabular; its predictor is ``predictor`` or this bundle's fast-path ``predict``.

        ``bind=False`` returns it without a predictor, as it was saved: alibi's ``reset_predictor`` calls
        the predictor once, which for the fast path means compiling the forest in a process (the
        explainer component) that binds its own remote predictor anyway.
        """
        explainer = dill.loads(self.read_verified(EXPLAINER))
        if bind:
            explainer.reset_predictor(predictor or self.predict)
        return explainer

    def report(self) -> dict[str, Any]:
        return json.loads(self.read_verified(REPORT))

    def detectors(self) -> Detectors:
        """Drift references and outlier scorer (``detectors.npz``: arrays only, hash-checked)."""
        from glassbox.pipeline.detectors import DETECTORS, Detectors

        if DETECTORS not in self.manifest.files:
            raise NotFound(
                f"{self.path} has no {DETECTORS} (trained before the monitor existed): "
                "retrain with glassbox train"
            )
        return Detectors.from_bytes(self.read_verified(DETECTORS))


def read_manifest(version_dir: Path) -> Manifest:
    try:
        return Manifest.model_validate_json((version_dir / MANIFEST).read_text())
    except ValueError as exc:
        raise ArtifactIntegrityError(f"{version_dir / MANIFEST}: not a valid manifest: {exc}") from None


def load_bundle(path: str | Path) -> Bundle:
    """Open a version dir (or a model dir's LATEST) after verifying every file's SHA-256."""
    version_dir = resolve_version_dir(path)
    manifest = read_manifest(version_dir)
    verify(version_dir, manifest)
    return Bundle(version_dir, manifest)


def save_dill(obj: Any, path: Path) -> None:
    with open(path, "wb") as handle:
        dill.dump(obj, handle, recurse=True)


def save_explainer(explainer: Any, path: Path) -> None:
    """Pickle an AnchorTabular without its predictor (alibi's own save does the same): the predictor is
    the caller's to attach, and dropping it keeps the model out of the explainer file."""
    predictor = explainer.predictor
    explainer.reset_predictor(None)
    try:
        save_dill(explainer, path)
    finally:
        explainer.reset_predictor(predictor)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
