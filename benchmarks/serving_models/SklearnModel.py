"""The baseline: the fitted sklearn pipeline served the way the classic Seldon talk serves it.

Seldon's default ``predict`` path (``extract_request_parts_json`` / ``construct_response_json``) and
``pipeline.predict_proba`` on what arrives; no validation, metrics or forwarding.
"""

import os

import dill


class SklearnModel:
    def __init__(self):
        self.model = None

    def load(self):
        from glassbox.pipeline.artifacts import resolve_version_dir

        with open(resolve_version_dir(os.environ["GLASSBOX_MODEL_ARTIFACTS"]) / "model.dill", "rb") as f:
            self.model = dill.load(f)

    def predict(self, X, feature_names, meta=None):
        return self.model.predict_proba(X)
