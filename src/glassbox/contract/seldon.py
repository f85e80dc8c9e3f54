"""Seldon Core v1 wire details shared by the model, the explainer and the queue."""

from __future__ import annotations

# Requests the explainer sends to the model carry this header (REST) or meta tag (gRPC carries no
# headers to the component): the model neither forwards nor counts them as user traffic.
TRAFFIC_HEADER = "X-Glassbox-Traffic"
TRAFFIC_TAG = "glassbox-traffic"
EXPLAINER_TRAFFIC = "explainer"
# A feedback whose response carries this meta tag is recorded once per id: the queue's outbox delivers at
# least once (a sender killed after the model answered sends again), the model keeps the first.
FEEDBACK_ID_TAG = "glassbox-feedback-id"


def seldon_error_body(message: str, code: int, reason: str = "MICROSERVICE_BAD_DATA") -> dict:
    """Seldon's error shape (``SeldonMicroserviceException.to_dict``) with the real status code."""
    return {"status": {"status": 1, "info": message, "code": code, "reason": reason}}
