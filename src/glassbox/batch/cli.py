"""``glassbox explain-batch``, and ``--workers``/``--ray-address`` for ``glassbox audit-labels``.

The audit command belongs to the annotation part, which cannot import this one (layers: batch sits
above annotation). So this part, registered after it, adds its two options to that command and hands
``audit_labels`` the Ray version of its out-of-fold step when they are given; without them the audit
runs as before, in one process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    batch = subparsers.add_parser(
        "explain-batch",
        help="explain every row of a CSV/JSONL file on Ray (or serially), resumably",
        description="Explain every row of INPUT with the model version's explainer(s), on a local Ray "
        "(default), a Ray cluster (--ray-address) or serially (--serial). Rows are checked before any "
        "work starts; the output (JSONL, or Parquet with pyarrow) is in input order, the same for any "
        "number of workers; rerunning after an interruption only explains the missing rows.",
    )
    batch.add_argument("input", type=Path, help=".csv (header: id column + features) or .jsonl rows")
    batch.add_argument("--artifacts", type=Path, help="model dir (its LATEST) or version dir "
                       "(default $GLASSBOX_BATCH_ARTIFACTS, artifacts/loanclassifier)")  # fmt: skip
    batch.add_argument("--output", type=Path, required=True, help="output .jsonl (or .parquet)")
    batch.add_argument("--method", action="append", dest="methods", metavar="METHOD",
                       help="anchors (default), attributions, counterfactuals, or package.module:function; "
                       "repeatable")  # fmt: skip
    batch.add_argument("--params", action="append", default=[], metavar="METHOD=JSON",
                       help="a method's parameters as JSON; repeatable")  # fmt: skip
    batch.add_argument("--ray-address", help="Ray cluster ('auto' in a Ray pod); default: start a local Ray")
    batch.add_argument("--workers", type=int, help="Ray actors (default: one per CPU); 0 = --serial")
    batch.add_argument("--serial", action="store_true", help="no Ray: every row in this process")
    batch.add_argument("--id-column", default="id", help="the input's row id column (default id)")
    batch.add_argument("--seed", type=int, default=0, help="base of every row's seed (default 0)")
    batch.add_argument("--chunk-size", type=int, help="rows per task (default 4)")
    batch.add_argument("--overwrite", action="store_true", help="start again instead of resuming --output")
    batch.add_argument("--retry-failed", action="store_true", help="when resuming, redo the rows that failed")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    review = batch.add_argument_group("review queue (optional)")
    review.add_argument("--queue-url", help="send the most doubtful rows to this review queue")
    review.add_argument("--api-key", help="an admin's key (default $GLASSBOX_QUEUE_API_KEY)")
    review.add_argument("--review-top-k", type=int, default=20, help="rows to send (default 20)")
    review.add_argument("--review-max-precision", type=float,
                        help="send only rows whose anchor precision is at most this")  # fmt: skip
    batch.set_defaults(func=_explain_batch)
    _extend_audit(subparsers)


def _extend_audit(subparsers: argparse._SubParsersAction) -> None:
    audit = subparsers.choices.get("audit-labels")
    if audit is None:  # the annotation part is not installed
        return
    audit.add_argument("--workers", type=int, help="fit the folds on a local Ray with this many CPUs")
    audit.add_argument("--ray-address", help="fit the folds on this Ray cluster ('auto' in a Ray pod)")
    run_audit = audit.get_default("func")

    def audit_on_ray(args: argparse.Namespace) -> int:
        if args.workers is not None or args.ray_address:
            from glassbox.batch.audit import RayOutOfFold

            if args.workers is not None and args.workers < 1:
                print("error: --workers must be at least 1", file=sys.stderr)
                return EXIT_BAD_INPUT
            args.out_of_fold = RayOutOfFold(args.ray_address, args.workers)
        return run_audit(args)

    audit.set_defaults(func=audit_on_ray)


def _explain_batch(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from glassbox.errors import GlassboxError

    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"interrupted: the rows done so far are in {args.output}; rerun to resume", file=sys.stderr)
        return 130
    except GlassboxError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"error: invalid GLASSBOX_BATCH_* setting: {problems}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    from glassbox.errors import InvalidInput

    params: dict[str, dict[str, Any]] = {}
    for item in items:
        method, sep, text = item.partition("=")
        try:
            value = json.loads(text) if sep else None
        except ValueError as exc:
            raise InvalidInput(f"--params {item!r}: not JSON after '=' ({exc})") from None
        if not isinstance(value, dict):
            raise InvalidInput(f"--params {item!r}: expected METHOD={{...}}, a JSON object")
        params.setdefault(method, {}).update(value)
    return params


def _run(args: argparse.Namespace) -> int:
    from glassbox.batch.job import BatchRequest, run_batch
    from glassbox.batch.settings import BatchSettings
    from glassbox.errors import InvalidInput

    settings = BatchSettings()
    client = _queue_client(args) if args.queue_url else None  # a bad key fails before the work
    workers = 0 if args.serial else (args.workers if args.workers is not None else settings.workers)
    if workers is not None and workers < 0:
        raise InvalidInput("--workers must be 0 (serial) or more")
    request = BatchRequest(
        input=args.input,
        artifacts=args.artifacts or settings.artifacts,
        output=args.output,
        methods=args.methods or ["anchors"],
        params=_parse_params(args.params),
        workers=workers,
        ray_address=args.ray_address or settings.ray_address or None,
        id_column=args.id_column,
        seed=args.seed,
        chunk_size=args.chunk_size or settings.chunk_size,
        overwrite=args.overwrite,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
    )
    result = run_batch(request)
    stats = result.stats
    failed = sum(1 for r in result.records if r["errors"])
    print(
        f"{result.rows} row(s): {stats.explained} explained now ({stats.rows_per_second:.2f} rows/s), "
        f"{result.resumed} done by an earlier run, {failed} failed; output {args.output}"
    )
    if failed:
        first = next(r for r in result.records if r["errors"])
        print(f"  first failure: id {first['id']} (line {first['line']}): {first['errors']}", file=sys.stderr)
    if client is not None:
        return _send_for_review(client, result, args)
    return 0


def _queue_client(args: argparse.Namespace):
    from glassbox.annotation.client import QueueClient, QueueClientSettings
    from glassbox.errors import Unauthorized

    settings = QueueClientSettings()
    key = args.api_key if args.api_key is not None else settings.api_key
    if not key:
        raise Unauthorized("missing API key for --queue-url: pass --api-key or set GLASSBOX_QUEUE_API_KEY")
    return QueueClient(args.queue_url, key, settings.client_timeout)


def _send_for_review(client: Any, result: Any, args: argparse.Namespace) -> int:
    from glassbox.batch.review import review_records, select_for_review

    chosen = select_for_review(result.records, args.review_top_k, args.review_max_precision)
    records = review_records(chosen, result.schema, result.model_name, result.job)
    if not records:
        print("review queue: no row to send")
        return 0
    answer = client.send_bulk(records)
    print(
        f"review queue: {answer['created']} created, {answer['existing']} already there, "
        f"{len(answer['errors'])} invalid"
    )
    for error in answer["errors"]:
        print(f"  record {error['index']} ({error['id']}): {error['error']}", file=sys.stderr)
    return 1 if answer["errors"] else 0
