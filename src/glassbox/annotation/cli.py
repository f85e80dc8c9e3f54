"""``glassbox queue ...`` and ``glassbox audit-labels``.

The queue commands other than ``serve`` open the database named by ``GLASSBOX_QUEUE_DATABASE_URL``
directly: whoever can open it is its owner (that is how the first owner is made). Only ``label``
acts as a user, named by their API key, so answers are attributed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

# The local operator: opening the database is already the owner's power.
LOCAL = ("cli", "owner")


def register(subparsers: argparse._SubParsersAction) -> None:
    queue = subparsers.add_parser("queue", help="the annotation queue: serve, review, export, users")
    commands = queue.add_subparsers(dest="queue_command", required=True, metavar="SUBCOMMAND")

    serve = commands.add_parser("serve", help="start the HTTP service (settings from GLASSBOX_QUEUE_*)")
    serve.add_argument("--host", help="bind address (default GLASSBOX_QUEUE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default GLASSBOX_QUEUE_PORT, 8500)")
    serve.set_defaults(func=_serve)

    listing = commands.add_parser("list", help="list records with filters and a sort")
    listing.add_argument("--status", choices=("pending", "completed", "discarded"))
    listing.add_argument("--source", choices=("prediction", "training-audit"))
    listing.add_argument("--model-version")
    listing.add_argument("--predicted-label")
    listing.add_argument("--certainty-min", type=float)
    listing.add_argument("--certainty-max", type=float)
    listing.add_argument(
        "--sort", choices=("least_certain", "highest_loss", "newest"), default="least_certain"
    )
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true", help="print the records as JSON")
    listing.set_defaults(func=_list)

    label = commands.add_parser("label", help="answer a record as the user owning --api-key")
    label.add_argument("record_id")
    choice = label.add_mutually_exclusive_group(required=True)
    choice.add_argument("--label", help="the true label")
    choice.add_argument("--discard", action="store_true", help="the record cannot be labelled")
    label.add_argument("--note", default="")
    label.add_argument("--api-key", default=os.environ.get("GLASSBOX_QUEUE_API_KEY", ""),
                       help="your key (default $GLASSBOX_QUEUE_API_KEY)")  # fmt: skip
    label.set_defaults(func=_label)

    export = commands.add_parser(
        "export", help="export reviewed records (unlabelled ones skipped and counted)"
    )
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--output", type=Path, required=True)
    export.set_defaults(func=_export)

    agreement = commands.add_parser(
        "agreement", help="Krippendorff's alpha overall, per label, per annotator"
    )
    agreement.add_argument("--json", action="store_true")
    agreement.set_defaults(func=_agreement)

    users = commands.add_parser("users", help="manage users (owner's power)")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = user_commands.add_parser("add", help="create a user and print their API key (shown once)")
    add.add_argument("name")
    add.add_argument("--role", choices=("owner", "admin", "annotator"), default="annotator")
    add.set_defaults(func=_users_add)
    user_commands.add_parser("list", help="list users").set_defaults(func=_users_list)
    remove = user_commands.add_parser("remove", help="delete a user (their answers stay)")
    remove.add_argument("name")
    remove.set_defaults(func=_users_remove)

    audit = subparsers.add_parser(
        "audit-labels", help="send the training rows with the highest loss to the queue"
    )
    audit.add_argument("--config", type=Path, default=Path("pipeline/configs/adult.yaml"))
    audit.add_argument("--top-k", type=int, default=100)
    audit.add_argument("--folds", type=int, default=5)
    audit.add_argument("--seed", type=int, default=0)
    audit.add_argument("--max-rows", type=int, help="audit only the first N rows (quick runs)")
    audit.add_argument("--version", default="", help="id prefix; default: data-<sha256 of the data>[:12]")
    audit.add_argument("--queue-url", default=os.environ.get("GLASSBOX_QUEUE_URL", "http://127.0.0.1:8500"))
    audit.add_argument("--api-key", default=os.environ.get("GLASSBOX_QUEUE_API_KEY", ""),
                       help="an admin's key (default $GLASSBOX_QUEUE_API_KEY)")  # fmt: skip
    audit.add_argument("--output", type=Path, help="also write the records as JSONL here")
    audit.add_argument("--dry-run", action="store_true", help="compute and write --output; send nothing")
    audit.set_defaults(func=_audit)


def _guard(func):
    """Print a GlassboxError's message instead of a traceback; exit 2."""

    def run(args: argparse.Namespace) -> int:
        from glassbox.errors import GlassboxError

        try:
            return func(args)
        except GlassboxError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2

    return run


def _service():
    from glassbox.annotation.service import QueueService
    from glassbox.annotation.settings import QueueSettings

    return QueueService(QueueSettings())


def _local():
    from glassbox.annotation.auth import Principal

    return Principal(*LOCAL)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


@_guard
def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from glassbox.annotation.app import create_app
    from glassbox.annotation.settings import QueueSettings

    settings = QueueSettings()
    host, port = args.host or settings.host, args.port or settings.port
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=False)
    return 0


@_guard
def _list(args: argparse.Namespace) -> int:
    query = {
        key: str(value)
        for key in (
            "status",
            "source",
            "model_version",
            "predicted_label",
            "certainty_min",
            "certainty_max",
            "sort",
            "limit",
        )
        if (value := getattr(args, key)) is not None
    }
    page = _service().list_records(_local(), query)
    if args.json:
        _print_json(page)
        return 0
    print(f"{page['total']} record(s) match; showing {len(page['records'])}")
    for r in page["records"]:
        loss = r["metadata"].get("loss")
        print(
            f"{r['id']:<40} {r['status']:<9} {r['source']:<14} predicted={r['predicted_label']:<6} "
            f"certainty={r['certainty']['max_probability']:.3f}"
            + (f" loss={loss:.3f}" if loss is not None else "")
            + (f" final={r['final_label']}" if r["final_label"] else "")
        )
    return 0


@_guard
def _label(args: argparse.Namespace) -> int:
    service = _service()
    who = service.authenticate(args.api_key)
    body = {"discard": True} if args.discard else {"label": args.label}
    outcome = service.respond(who, args.record_id, {**body, "note": args.note})
    print(
        f"{args.record_id}: {outcome['status']}"
        + (f" as {outcome['final_label']}" if outcome["final_label"] else "")
    )
    return 0


@_guard
def _export(args: argparse.Namespace) -> int:
    from glassbox.annotation.export import ExportStats

    stats = ExportStats()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8", newline="") as out:
        out.writelines(_service().export(_local(), args.format, stats))
    print(
        f"exported {stats.exported} record(s) to {args.output}; "
        f"skipped {stats.skipped_unlabelled} without a final label"
    )
    return 0


@_guard
def _agreement(args: argparse.Namespace) -> int:
    report = _service().agreement(_local())
    if args.json:
        _print_json(report)
        return 0

    def show(alpha: float | None) -> str:
        return "undefined" if alpha is None else f"{alpha:.3f}"

    print(
        f"Krippendorff's alpha (nominal): {show(report['alpha'])} "
        f"over {report['pairable_units']} record(s) answered twice or more"
    )
    for label, alpha in report["per_label"].items():
        print(f"  {label}: {show(alpha)}")
    for name, row in report["annotators"].items():
        rate = "n/a" if row["rate"] is None else f"{row['rate']:.1%}"
        print(f"  {name}: agrees with the final label on {row['agreed']}/{row['compared']} ({rate})")
    return 0


@_guard
def _users_add(args: argparse.Namespace) -> int:
    user = _service().create_user(None, {"name": args.name, "role": args.role})
    print(f"created {user['role']} {user['name']}; API key (shown once): {user['api_key']}")
    return 0


@_guard
def _users_list(args: argparse.Namespace) -> int:
    for user in _service().list_users(_local()):
        print(f"{user['name']:<24} {user['role']}")
    return 0


@_guard
def _users_remove(args: argparse.Namespace) -> int:
    _service().delete_user(None, args.name)
    print(f"removed {args.name}")
    return 0


@_guard
def _audit(args: argparse.Namespace) -> int:
    from glassbox.annotation.audit import audit_labels
    from glassbox.annotation.client import QueueClient
    from glassbox.pipeline.config import load_config

    if not args.dry_run and not args.api_key:
        print("error: --api-key (or GLASSBOX_QUEUE_API_KEY) is needed to send records", file=sys.stderr)
        return 2
    config = load_config(args.config)
    result = audit_labels(
        config, args.top_k, folds=args.folds, seed=args.seed, version=args.version, max_rows=args.max_rows
    )
    print(f"audited {result.rows_audited} row(s) with {args.folds}-fold out-of-fold probabilities; "
          f"top {len(result.records)} loss from {result.records[0]['metadata']['loss']:.3f}" if result.records
          else "nothing to audit")  # fmt: skip
    if args.output:
        args.output.write_text("".join(json.dumps(r) + "\n" for r in result.records))
    if args.dry_run:
        return 0
    answer = QueueClient(args.queue_url, args.api_key).send_bulk(result.records)
    print(
        f"queue: {answer['created']} created, {answer['existing']} already there, "
        f"{len(answer['errors'])} invalid"
    )
    for error in answer["errors"]:
        print(f"  record {error['index']} ({error['id']}): {error['error']}", file=sys.stderr)
    return 1 if answer["errors"] else 0
