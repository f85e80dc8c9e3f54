"""HTTP pieces Seldon's wrapper lets a component add: error mapping, the explain path, job polling.

Seldon Core 1.19's REST server registers a component's ``model_error_handler`` Flask blueprint on
its app. A blueprint can do more than handle errors, so ours:

- nests the model component's error handlers (``glassbox.seldon.http_errors``): every
  ``GlassboxError``, malformed JSON and HTTP error answers its real status with Seldon's error body;
- serves ``POST /api/v1.0/explain`` with Seldon's own predict view (same parsing, metrics, errors),
  the path shape of Seldon's explainer endpoint;
- serves ``GET /api/v1.0/explain/jobs/<id>`` to poll a long explanation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flask import Blueprint, jsonify

from glassbox.seldon.http_errors import error_blueprint

if TYPE_CHECKING:
    from glassbox.explain.component import LoanExplainer

EXPLAIN_PATH = "/api/v1.0/explain"
# The endpoint name Seldon's wrapper gives its predictions view (seldon_core/wrapper.py ``Predict``).
SELDON_PREDICT_ENDPOINT = "Predict"


def build_blueprint(component: LoanExplainer, on_rejection: Callable[[str], None]) -> Blueprint:
    blueprint = Blueprint("glassbox_explainer", __name__)
    blueprint.register_blueprint(error_blueprint(on_rejection))

    # Another URL for Seldon's predict view: registered on the app when the wrapper adds the blueprint.
    blueprint.record_once(
        lambda state: state.app.add_url_rule(EXPLAIN_PATH, endpoint=SELDON_PREDICT_ENDPOINT, methods=["POST"])
    )

    @blueprint.route(f"{EXPLAIN_PATH}/jobs/<job_id>", methods=["GET"])
    def job(job_id: str):
        return jsonify(component.poll(job_id))

    return blueprint
