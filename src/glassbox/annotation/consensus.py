"""When a record is settled, and on what: the majority of its responses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

DISCARD = "discard"


def decide(answers: Iterable[Mapping[str, Any]], min_submitted: int) -> tuple[str, str | None] | None:
    """``(status, final_label)`` once ``min_submitted`` answers are in and one choice leads; else ``None``.

    Each answer is ``{"kind": "label" | "discard", "label": ...}``. A discard is one more choice in
    the vote; if it wins, the record is discarded without a final label. A tie leaves it pending so
    that one more annotator breaks it.
    """
    votes = Counter(DISCARD if a["kind"] == DISCARD else a["label"] for a in answers)
    if sum(votes.values()) < min_submitted:
        return None
    (top, top_n), *rest = votes.most_common()
    if rest and rest[0][1] == top_n:
        return None
    return ("discarded", None) if top == DISCARD else ("completed", top)
