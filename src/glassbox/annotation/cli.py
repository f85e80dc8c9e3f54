"""``glassbox queue ...`` and ``glassbox audit-labels``.

Two kinds of commands. ``serve``, ``migrate`` and ``create-owner`` open the database named by
``GLASSBOX_QUEUE_DATABASE_URL`` themselves: they run before there is a service or a user to call
it as. Every other command calls the running queue's HTTP API (``--url``, ``--api-key``), so it goes
through the same role checks, metrics and feedback sender as the review page, and never writes the
database beside the service.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from glassbox.contract.records import SOURCES


def _remote() -> argparse.ArgumentParser:
    """The options of every command that calls the service."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help="the queue's base URL (default $GLASSBOX_QUEUE_URL, http://127.0.0.1:8500)"
    )
    common.add_argument("--api-key", help="your API key (default $GLASSBOX_QUEUE_API_KEY)")
    return common


def register(subparsers: argparse._SubParsersAction) -> None:
    queue = subparsers.add_parser("queue", help="the annotation queue: serve, review, export, users")
    commands = queue.add_subparsers(dest="queue_command", required=True, metavar="SUBCOMMAND")
    remote = [_remote()]

    # -- direct database access: the service itself and what comes before it -------------------
    serve = commands.add_parser("serve", help="start the HTTP service (settings from GLASSBOX_QUEUE_*)")
    serve.add_argument("--host", help="bind address (default GLASSBOX_QUEUE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default GLASSBOX_QUEUE_PORT, 8500)")
    serve.add_argument("--workers", type=int, help="worker processes (default GLASSBOX_QUEUE_WORKERS, 1)")
    serve.set_defaults(func=_serve)

    migrate = commands.add_parser(
        "migrate", help="bring GLASSBOX_QUEUE_DATABASE_URL's schema up to date (serve also does it)"
    )
    migrate.set_defaults(func=_migrate)

    owner = commands.add_parser(
        "create-owner",
        help="create the first owner in the database and print their key (only while there is none)",
    )
    owner.add_argument("name")
    owner.set_defaults(func=_create_owner)

    # -- through the service's HTTP API -------------------------------------------------------
    listing = commands.add_parser("list", parents=remote, help="list records with filters and a sort")
    listing.add_argument("--status", choices=("pending", "completed", "discarded"))
    listing.add_argument("--source", choices=SOURCES)
    listing.add_argument("--model-version")
    listing.add_argument("--predicted-label")
    listing.add_argument("--certainty-min", type=float)
    listing.add_argument("--certainty-max", type=float)
    listing.add_argument(
        "--has-disagreement", choices=("true", "false"), help="only records whose reviewers disagree (or not)"
    )
    listing.add_argument(
        "--sort", choices=("least_certain", "highest_loss", "newest"), default="least_certain"
    )
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int)
    listing.add_argument("--json", action="store_true", help="print the records as JSON")
    listing.set_defaults(func=_list)

    show = commands.add_parser("show", parents=remote, help="one record with its responses, as JSON")
    show.add_argument("record_id")
    show.set_defaults(func=_show)

    lineage = commands.add_parser(
        "lineage", parents=remote, help="a record's or a prediction id's (puid) lineage, as JSON"
    )
    lineage.add_argument("id", help="a record id or a prediction id (Seldon puid)")
    lineage.set_defaults(func=_lineage)

    label = commands.add_parser("label", parents=remote, help="answer a record as the user owning --api-key")
    label.add_argument("record_id")
    choice = label.add_mutually_exclusive_group(required=True)
    choice.add_argument("--label", help="the true label")
    choice.add_argument("--discard", action="store_true", help="the record cannot be labelled")
    label.add_argument("--note", default="")
    label.set_defaults(func=_label)

    export = commands.add_parser(
        "export", parents=remote, help="export reviewed records (unlabelled ones skipped and counted; admin)"
    )
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--output", type=Path, required=True)
    export.add_argument(
        "--lineage", action="store_true", help="add each record's lineage (JSONL: nested; CSV: a JSON column)"
    )
    export.set_defaults(func=_export)

    agreement = commands.add_parser(
        "agreement", parents=remote, help="Krippendorff's alpha overall, per label, per annotator"
    )
    agreement.add_argument("--json", action="store_true")
    agreement.set_defaults(func=_agreement)

    settings = commands.add_parser("settings", parents=remote, help="show or change live settings (admin)")
    settings.add_argument("--min-submitted", type=int, help="responses a record needs before it completes")
    settings.set_defaults(func=_settings)

    users = commands.add_parser("users", help="manage users (owner)")
    user_commands = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = user_commands.add_parser(
        "add", parents=remote, help="create a user and print their API key (shown once)"
    )
    add.add_argument("name")
    add.add_argument("--role", choices=("owner", "admin", "annotator"), default="annotator")
    add.set_defaults(func=_users_add)
    user_commands.add_parser("list", parents=remote, help="list users").set_defaults(func=_users_list)
    remove = user_commands.add_parser("remove", parents=remote, help="delete a user (their answers stay)")
    remove.add_argument("name")
    remove.set_defaults(func=_users_remove)
    role = user_commands.add_parser(
        "role", parents=remote, help="change a user's role (the last active owner stays one)"
    )
    role.add_argument("name")
    role.add_argument("role", choices=("owner", "admin", "annotator"))
    role.set_defaults(func=_users_role)
    deactivate = user_commands.add_parser(
        "deactivate", parents=remote, help="refuse a user's key and end their sessions (answers stay)"
    )
    deactivate.add_argument("name")
    deactivate.set_defaults(func=_users_deactivate)

    webhooks = commands.add_parser("webhooks", help="manage webhooks (owner)")
    webhook_commands = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    hook_add = webhook_commands.add_parser(
        "add", parents=remote, help="register an https:// (or loopback http://) URL; prints its secret once"
    )
    hook_add.add_argument("webhook_url", metavar="URL")  # not "url": that is --url, the queue's
    hook_add.add_argument(
        "--event",
        action="append",
        dest="events",
        help="an event to send (repeatable; default all): record.created, response.created, "
        "response.updated, record.completed",
    )
    hook_add.set_defaults(func=_webhooks_add)
    hook_list = webhook_commands.add_parser(
        "list", parents=remote, help="list webhooks, or one webhook's recent deliveries with --id"
    )
    hook_list.add_argument("--id", dest="webhook_id", help="show this webhook's deliveries as JSON")
    hook_list.set_defaults(func=_webhooks_list)
    hook_remove = webhook_commands.add_parser(
        "remove", parents=remote, help="delete a webhook and its undelivered events"
    )
    hook_remove.add_argument("webhook_id")
    hook_remove.set_defaults(func=_webhooks_remove)

    audit = subparsers.add_parser(
        "audit-labels", help="send the training rows with the highest loss to the queue"
    )
    audit.add_argument("--config", type=Path, default=Path("pipeline/configs/adult.yaml"))
    audit.add_argument("--top-k", type=int, default=100)
    audit.add_argument("--folds", type=int, default=5)
    audit.add_argument("--seed", type=int, default=0)
    audit.add_argument("--max-rows", type=int, help="audit only the first N rows (quick runs)")
    audit.add_argument("--version", default="", help="id prefix; default: data-<sha256 of the data>[:12]")
    audit.add_argument(
        "--url",
        "--queue-url",
        dest="url",
        help="the queue's base URL (default $GLASSBOX_QUEUE_URL, http://127.0.0.1:8500)",
    )
    audit.add_argument("--api-key", help="an admin's key (default $GLASSBOX_QUEUE_API_KEY)")  # fmt: skip
    audit.add_argument("--output", type=Path, help="also write the records as JSONL here")
    audit.add_argument("--dry-run", action="store_true", help="compute and write --output; send nothing")
    audit.set_defaults(func=_audit)


def _guard(func):
    """Print a GlassboxError's (or a bad setting's) message instead of a traceback; exit 2."""

    def run(args: argparse.Namespace) -> int:
        from pydantic import ValidationError

        from glassbox.errors import GlassboxError

        try:
            return func(args)
        except GlassboxError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            print(f"error: invalid GLASSBOX_QUEUE_* setting: {problems}", file=sys.stderr)
            return 2

    return run


def _client(args: argparse.Namespace):
    """The service's client for ``--url`` and ``--api-key`` (or their environment defaults)."""
    from glassbox.annotation.client import QueueClient, QueueClientSettings
    from glassbox.errors import Unauthorized

    settings = QueueClientSettings()
    key = args.api_key if args.api_key is not None else settings.api_key
    if not key:
        raise Unauthorized("missing API key: pass --api-key or set GLASSBOX_QUEUE_API_KEY")
    return QueueClient(args.url or settings.url, key, settings.client_timeout)


def _open_store():
    """The database itself (``migrate``, ``create-owner``): no service is needed, nor running."""
    from glassbox.annotation.settings import QueueSettings
    from glassbox.annotation.store import open_store

    settings = QueueSettings()
    return open_store(settings.database_url, settings.database_schema, migrate=False)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# -- direct database access -------------------------------------------------------------------
@_guard
def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from glassbox.annotation.app import create_app
    from glassbox.annotation.settings import QueueSettings

    settings = QueueSettings()
    host, port = args.host or settings.host, args.port or settings.port
    workers = args.workers or settings.workers
    # Several workers each build the app themselves: uvicorn takes an import string for that.
    app = "glassbox.annotation.app:create_app" if workers > 1 else create_app(settings)
    uvicorn.run(
        app, factory=workers > 1, workers=workers, host=host, port=port, log_level="info", access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds - 1)),  # 1 s left to exit
    )  # fmt: skip
    return 0


@_guard
def _migrate(args: argparse.Namespace) -> int:
    store = _open_store()
    try:
        applied = store.migrate()
        version = store.schema_version()
    finally:
        store.close()
    done = f"applied migration(s) {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"{done}; the schema is at version {version}")
    return 0


@_guard
def _create_owner(args: argparse.Namespace) -> int:
    from glassbox.annotation.auth import hash_key, new_key
    from glassbox.errors import Conflict, InvalidInput

    name = args.name.strip()
    if not name:
        raise InvalidInput("the owner's name is empty")
    store = _open_store()
    try:
        store.migrate()
        if store.count_role("owner"):
            raise Conflict(
                "an owner already exists: an owner adds more users through the service "
                "(`glassbox queue users add NAME --role owner`)"
            )
        key = new_key()
        store.create_user(name, "owner", hash_key(key))
    finally:
        store.close()
    print(f"created owner {name}; API key (shown once): {key}")
    return 0


# -- through the service -----------------------------------------------------------------------
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
            "has_disagreement",
            "sort",
            "limit",
            "offset",
        )
        if (value := getattr(args, key)) is not None
    }
    page = _client(args).list_records(query)
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
def _show(args: argparse.Namespace) -> int:
    _print_json(_client(args).get_record(args.record_id))
    return 0


@_guard
def _lineage(args: argparse.Namespace) -> int:
    _print_json(_client(args).lineage(args.id))
    return 0


@_guard
def _label(args: argparse.Namespace) -> int:
    body = {"discard": True} if args.discard else {"label": args.label}
    outcome = _client(args).respond(args.record_id, {**body, "note": args.note})
    print(
        f"{args.record_id}: {outcome['status']}"
        + (f" as {outcome['final_label']}" if outcome["final_label"] else "")
    )
    return 0


@_guard
def _export(args: argparse.Namespace) -> int:
    exported, skipped = _client(args).export(args.format, args.output, lineage=args.lineage)
    print(f"exported {exported} record(s) to {args.output}; skipped {skipped} without a final label")
    return 0


@_guard
def _agreement(args: argparse.Namespace) -> int:
    report = _client(args).agreement()
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
def _settings(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.min_submitted is None:
        current = client.get_settings()
    else:
        current = client.put_settings({"min_submitted": args.min_submitted})
    for name, value in current.items():
        print(f"{name:<16} {value}")
    return 0


@_guard
def _users_add(args: argparse.Namespace) -> int:
    user = _client(args).create_user(args.name, args.role)
    print(f"created {user['role']} {user['name']}; API key (shown once): {user['api_key']}")
    return 0


@_guard
def _users_list(args: argparse.Namespace) -> int:
    for user in _client(args).list_users():
        print(f"{user['name']:<24} {user['role']}{'' if user.get('active', True) else ' (deactivated)'}")
    return 0


@_guard
def _users_remove(args: argparse.Namespace) -> int:
    _client(args).delete_user(args.name)
    print(f"removed {args.name}")
    return 0


@_guard
def _users_role(args: argparse.Namespace) -> int:
    user = _client(args).update_user(args.name, role=args.role)
    print(f"{user['name']} is now {user['role']}")
    return 0


@_guard
def _users_deactivate(args: argparse.Namespace) -> int:
    user = _client(args).update_user(args.name, active=False)
    print(f"deactivated {user['name']}")
    return 0


@_guard
def _webhooks_add(args: argparse.Namespace) -> int:
    hook = _client(args).create_webhook(args.webhook_url, args.events)
    print(f"created webhook {hook['id']} -> {hook['url']} for {', '.join(hook['events'])}")
    print(f"signing secret (shown once): {hook['secret']}")
    return 0


@_guard
def _webhooks_list(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.webhook_id:
        _print_json(client.get_webhook(args.webhook_id))
        return 0
    for hook in client.list_webhooks():
        print(f"{hook['id']:<20} {hook['url']}  [{', '.join(hook['events'])}]")
    return 0


@_guard
def _webhooks_remove(args: argparse.Namespace) -> int:
    _client(args).delete_webhook(args.webhook_id)
    print(f"removed webhook {args.webhook_id}")
    return 0


@_guard
def _audit(args: argparse.Namespace) -> int:
    client = None if args.dry_run else _client(args)  # checks the key before minutes of work
    from glassbox.annotation.audit import audit_labels
    from glassbox.pipeline.config import load_config

    config = load_config(args.config)
    result = audit_labels(
        config, args.top_k, folds=args.folds, seed=args.seed, version=args.version, max_rows=args.max_rows,
        **({"out_of_fold": args.out_of_fold} if getattr(args, "out_of_fold", None) else {}),  # Ray: batch.cli
    )  # fmt: skip
    print(f"audited {result.rows_audited} row(s) with {args.folds}-fold out-of-fold probabilities; "
          f"top {len(result.records)} loss from {result.records[0]['metadata']['loss']:.3f}" if result.records
          else "nothing to audit")  # fmt: skip
    if args.output:
        args.output.write_text("".join(json.dumps(r) + "\n" for r in result.records))
    if client is None:  # --dry-run
        return 0
    answer = client.send_bulk(result.records)
    print(
        f"queue: {answer['created']} created, {answer['existing']} already there, "
        f"{len(answer['errors'])} invalid"
    )
    for error in answer["errors"]:
        print(f"  record {error['index']} ({error['id']}): {error['error']}", file=sys.stderr)
    return 1 if answer["errors"] else 0
