"""Inter-annotator agreement: Krippendorff's alpha (nominal), per label, and per annotator.

Alpha comes from nltk's ``AnnotationTask`` (Apache-2.0) rather than the ``krippendorff`` package
(GPL-3.0, which would bind the whole stack to the GPL). What this module adds is what nltk does not
say: alpha is *undefined* (``None``) when there is no variation to measure (one value only, or no
unit coded twice), where nltk would answer 1.0 or raise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any


def alpha_nominal(units: Mapping[Hashable, Mapping[Hashable, Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data: ``units[unit][coder] = value``; missing values allowed.

    Units coded by fewer than two coders carry no pairable value and are left out, as Krippendorff
    prescribes. ``None`` when alpha is undefined: no pairable unit, or a single value throughout.
    """
    triples = [
        (str(coder), str(unit), value)
        for unit, coded in units.items()
        if len(coded) >= 2
        for coder, value in coded.items()
    ]
    if len({value for _, _, value in triples}) < 2:
        return None
    from nltk.metrics.agreement import AnnotationTask  # imported here: nltk takes ~1.5 s to import

    return float(AnnotationTask(data=triples).alpha())


def per_label_alpha(
    units: Mapping[Hashable, Mapping[Hashable, Hashable]], labels: Iterable[Hashable] = ()
) -> dict[str, float | None]:
    """Alpha of each label against all others (each label binarised); ``None`` where undefined."""
    every = set(labels) | {value for coded in units.values() for value in coded.values()}
    return {
        str(label): alpha_nominal(
            {unit: {coder: value == label for coder, value in coded.items()} for unit, coded in units.items()}
        )
        for label in sorted(every, key=str)
    }


def annotator_agreement(answers: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each annotator: records answered with a label that has a final label, and how many matched it."""
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for answer in answers:
        if answer["kind"] != "label" or answer.get("final_label") is None:
            continue
        counts = tally[answer["user_name"]]
        counts[0] += 1
        counts[1] += answer["label"] == answer["final_label"]
    return {
        name: {"compared": n, "agreed": agreed, "rate": agreed / n if n else None}
        for name, (n, agreed) in sorted(tally.items())
    }


def agreement_report(answers: list[Mapping[str, Any]], labels: Iterable[str] = ()) -> dict[str, Any]:
    """Everything the API and the CLI show, from the store's ``answers()`` rows.

    Only label answers count toward alpha: a discard says the record cannot be labelled, which is
    not a category annotators agree or disagree on.
    """
    units: dict[str, dict[str, str]] = defaultdict(dict)
    for answer in answers:
        if answer["kind"] == "label":
            units[answer["record_id"]][answer["user_name"]] = answer["label"]
    return {
        "alpha": alpha_nominal(units),
        "per_label": per_label_alpha(units, labels),
        "annotators": annotator_agreement(answers),
        "units": len(units),
        "pairable_units": sum(1 for coded in units.values() if len(coded) >= 2),
        "responses": len(answers),
    }
