"""The batch's output file, which is also its journal: rows are appended as they finish, so a run that
is killed resumes from what is on disk, and the finished file is rewritten in input order.

While a run is going the file holds one JSON record per line in the order rows finished (workers finish
in any order). A kill can leave half a line at the end: ``Journal.open`` drops it (that row is redone)
and refuses a file whose earlier lines are not records of this same job (another input, model, method
or parameters: the ``job`` fingerprint), rather than mixing two runs in one file. When every row is
done, ``finish`` rewrites the file sorted by input line (atomically), so the output is the same
whatever the number of workers, the interruptions, or the order rows finished in. A ``.parquet``
output is written from the journal at the end if pyarrow is importable; the journal stays beside it
(``<output>.journal.jsonl``), so a rerun finds every row done.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from glassbox.errors import InvalidInput


def job_fingerprint(
    artifact_sha256: str,
    methods: Iterable[str],
    params: Mapping[str, Any],
    base_seed: int,
    ids: Iterable[str],
) -> str:
    """What the output depends on: model, methods, their parameters, the seed and the rows' ids."""
    digest = hashlib.sha256()
    head = {"model": artifact_sha256, "methods": list(methods), "params": params, "seed": base_seed}
    digest.update(json.dumps(head, sort_keys=True).encode())
    for row_id in ids:
        digest.update(b"\x00" + row_id.encode())
    return digest.hexdigest()[:16]


def journal_path(output: Path) -> Path:
    return output if output.suffix.lower() != ".parquet" else output.with_name(output.name + ".journal.jsonl")


class Journal:
    """Appends finished rows to the journal file; knows which rows a previous run already finished."""

    def __init__(self, path: Path, job: str, done: dict[str, dict[str, Any]], handle: IO[str]):
        self.path = path
        self.job = job
        self.done = done  # id -> record, from this run and the runs before it
        self._handle = handle

    @classmethod
    def open(
        cls,
        output: Path,
        job: str,
        line_of: Mapping[str, int],
        overwrite: bool = False,
        retry_failed: bool = False,
    ) -> Journal:
        """Open (or start) the journal of ``job``; ``line_of`` maps every input id to its line.

        ``retry_failed``: rows whose record holds errors count as not done (their new record, appended
        later, replaces the old one when the file is read or finished)."""
        path = journal_path(output)
        if overwrite and path.exists():
            path.unlink()
        done = _read_done(path, job, line_of) if path.exists() else {}
        if retry_failed:
            done = {row_id: record for row_id, record in done.items() if not record["errors"]}
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by finish()/close()
        return cls(path, job, done, handle)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Write finished rows and hand them to the OS at once: a SIGKILL after this loses none of them."""
        lines = []
        for record in records:
            self.done[record["id"]] = record
            lines.append(json.dumps(record, sort_keys=True) + "\n")
        self._handle.write("".join(lines))
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def finish(self, output: Path) -> list[dict[str, Any]]:
        """Rewrite the output in input order (by line); returns the records in that order."""
        self.close()
        records = sorted(self.done.values(), key=lambda r: r["line"])
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        _atomic_write(self.path, text)
        if output != self.path:  # the journal stays beside it: a rerun finds every row done
            write_parquet(records, output)
        return records


def _read_done(path: Path, job: str, line_of: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1  # everything after the last newline is a torn write
    if complete < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(complete)
    done: dict[str, dict[str, Any]] = {}
    for number, raw in enumerate(data[:complete].decode("utf-8").splitlines(), start=1):
        try:
            record = json.loads(raw)
        except ValueError:
            raise InvalidInput(
                f"{path}: line {number} is not a JSON record, so this is not an explain-batch output "
                "to resume; pass another --output or --overwrite"
            ) from None
        if not isinstance(record, dict) or record.get("job") != job:
            raise InvalidInput(
                f"{path}: line {number} was written by another job (other input rows, model, methods, "
                "parameters or seed); pass another --output, or --overwrite to start again"
            )
        if record.get("id") not in line_of:
            raise InvalidInput(f"{path}: line {number} holds id {record.get('id')!r}, not in this input")
        done[record["id"]] = record
    return done


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def write_parquet(records: list[dict[str, Any]], output: Path) -> None:
    """One row per record; the nested parts (instance, probabilities, explanations, errors) as JSON text,
    so that every row has the same columns whatever its methods returned."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    nested = ("instance", "probabilities", "explanations", "errors")
    rows = [{k: (json.dumps(v, sort_keys=True) if k in nested else v) for k, v in r.items()} for r in records]
    tmp = output.with_name(f".{output.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, output)
