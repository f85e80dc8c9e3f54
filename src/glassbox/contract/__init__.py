"""The one input and record contract every Glassbox part imports (numpy and pydantic only).

- ``schema``: a model version's features (order, categories), encoding for the model and decoding for
  people, and ``RejectedInput`` (a 400 naming the problem, with a metric ``reason``);
- ``payload``: a Seldon v1 body (``data.ndarray``/``tensor``/``names``, ``jsonData``) or a list of rows
  into a checked float matrix: model, explainer and queue answer the same bad input with the same message;
- ``labels``: the argmax rule (ties as scikit-learn breaks them) and per-row certainty;
- ``records``: the queue's intake record: its schema (validated by the queue) and its builders (the
  model's forwarder, the label audit);
- ``seldon``: Seldon's error body and the explainer-traffic marks.

Nothing here imports another Glassbox part; ``make lint`` (import-linter) enforces it.
"""
