"""The record list's query parameters: one parser for ``GET /api/v1/records`` and the list view.

Both read the same query string (the page's filter form is a GET form with these names), so a
filter works the same in the API, the CLI and the browser. Every bad value is an ``InvalidInput``
(400) naming its parameter; an empty value means "no filter", as a form sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from glassbox.annotation.store.base import FEEDBACK_STATES, SORTS
from glassbox.contract.records import SOURCES, STATUSES
from glassbox.errors import InvalidInput

# Paging is a bounded offset: each sort has an index in its order, so a page costs at most
# MAX_OFFSET + limit index steps however many records there are; narrow the filters to go further.
MAX_OFFSET = 10_000
MAX_LIMIT = 1000
MAX_TEXT = 200
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class RecordQuery:
    status: str | None = None
    source: str | None = None
    model_version: str | None = None
    predicted_label: str | None = None
    feedback_state: str | None = None
    certainty_min: float | None = None
    certainty_max: float | None = None
    has_disagreement: bool | None = None
    sort: str = "least_certain"
    limit: int = 50
    offset: int = 0

    def store_args(self) -> dict[str, Any]:
        """Keyword arguments of ``SqlStore.list_records``."""
        return asdict(self)

    def query_string(self, **changes: Any) -> str:
        """This query (with ``changes``) as a query string, defaults left out: the list view's links."""
        values = {**asdict(self), **changes}
        default = asdict(RecordQuery())
        shown = {}
        for name, value in values.items():
            if value is None or value == default[name]:
                continue
            shown[name] = ("true" if value else "false") if isinstance(value, bool) else value
        return urlencode(shown)


PARAMETERS = tuple(RecordQuery.__dataclass_fields__)


def parse_record_query(query: Mapping[str, str]) -> RecordQuery:
    """A ``RecordQuery`` from query parameters; ``InvalidInput`` naming the first bad one."""
    unknown = set(query) - set(PARAMETERS)
    if unknown:
        raise InvalidInput(f"unknown filter(s) {sorted(unknown)}; use {sorted(PARAMETERS)}")
    given = {name: value for name, value in query.items() if value != ""}
    low = _number(given, "certainty_min", float, 0, 1)
    high = _number(given, "certainty_max", float, 0, 1)
    if low is not None and high is not None and low > high:
        raise InvalidInput(f"certainty_min ({low}) must not exceed certainty_max ({high})")
    return RecordQuery(
        status=_choice(given, "status", STATUSES),
        source=_choice(given, "source", SOURCES),
        model_version=_text(given, "model_version"),
        predicted_label=_text(given, "predicted_label"),
        feedback_state=_choice(given, "feedback_state", FEEDBACK_STATES),
        certainty_min=low,
        certainty_max=high,
        has_disagreement=_flag(given, "has_disagreement"),
        sort=_choice(given, "sort", tuple(SORTS)) or "least_certain",
        limit=_number(given, "limit", int, 1, MAX_LIMIT) or 50,
        offset=_number(given, "offset", int, 0, MAX_OFFSET) or 0,
    )


def _choice(query: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str | None:
    value = query.get(name)
    if value is not None and value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, not {value[:50]!r}")
    return value


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name)
    if value is not None and len(value) > MAX_TEXT:
        raise InvalidInput(f"{name} has at most {MAX_TEXT} characters")
    return value


def _flag(query: Mapping[str, str], name: str) -> bool | None:
    value = query.get(name)
    if value is None:
        return None
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise InvalidInput(f"{name} must be true or false, not {value[:50]!r}")


def _number(query: Mapping[str, str], name: str, kind: type, low: float, high: float) -> Any:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise InvalidInput(f"{name} must be {noun}, not {raw[:50]!r}") from None
    if not low <= value <= high:  # also refuses NaN
        raise InvalidInput(f"{name} must lie in [{low}, {high}], not {raw[:50]!r}")
    return value
