"""``glassbox serve-v2``: run the model or the explainer on MLServer (Open Inference Protocol V2).

It writes MLServer's ``settings.json`` (ports, host, workers) and the component's
``model-settings.json`` (name, runtime class, artifacts as ``parameters.uri``, the model version) into
a run directory, then replaces itself with ``mlserver start`` on that directory, so signals reach MLServer
directly. The rest of the component's configuration comes from the same ``GLASSBOX_MODEL_*`` /
``GLASSBOX_EXPLAINER_*`` variables as the Seldon components. Runs in the V2 virtualenv (``make install-v2``,
``.venv-v2``); nothing here imports MLServer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from glassbox.errors import GlassboxError

PROTOCOL_ENV = "GLASSBOX_EXPLAINER_MODEL_PROTOCOL"
RUNTIMES = {
    "model": "glassbox.serving.mlserver_runtime.GlassboxModel",
    "explainer": "glassbox.explain.mlserver_runtime.GlassboxExplainer",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve-v2", help="serve the model or the explainer on MLServer (Open Inference Protocol V2)"
    )
    serve.add_argument("--component", choices=sorted(RUNTIMES), required=True, help="what to serve")
    serve.add_argument("--artifacts", required=True, help="a version dir, or a model dir with LATEST")
    serve.add_argument("--name", default=None, help="V2 model name (default: loanclassifier[-explainer])")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a pod)")
    serve.add_argument("--http-port", type=int, default=8080, help="REST port")
    serve.add_argument("--grpc-port", type=int, default=8081, help="gRPC port")
    serve.add_argument("--metrics-port", type=int, default=8082, help="Prometheus port (/metrics)")
    serve.add_argument(
        "--parallel-workers",
        type=int,
        default=0,
        help="MLServer inference worker processes; 0 (default) predicts in the server process",
    )
    serve.add_argument(
        "--model-url", default=None, help="explainer: the V2 model's infer URL (sets the protocol to v2)"
    )
    serve.add_argument("--queue-url", default=None, help="model: the review queue (GLASSBOX_MODEL_QUEUE_URL)")
    serve.add_argument("--run-dir", default=None, help="where to write the settings (default: a temp dir)")
    serve.add_argument("--print-only", action="store_true", help="write the settings, print the dir, exit")
    serve.set_defaults(func=cmd_serve_v2)


def cmd_serve_v2(args: argparse.Namespace) -> int:
    try:
        run_dir, env = prepare(args)
    except GlassboxError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if args.print_only:
        print(run_dir)
        return 0
    mlserver = Path(sys.executable).parent / "mlserver"
    if not mlserver.exists():
        print(f"error: {mlserver} not found: run in the V2 virtualenv (make install-v2)", file=sys.stderr)
        return 2
    os.environ.update(env)
    sys.stdout.flush()
    os.execv(str(mlserver), [str(mlserver), "start", str(run_dir)])
    return 0  # not reached


def prepare(args: argparse.Namespace) -> tuple[Path, dict[str, str]]:
    """Write ``settings.json`` and ``model-settings.json``; the environment additions for the runtime."""
    artifacts = Path(args.artifacts).resolve()
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix=f"glassbox-v2-{args.component}-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    name = args.name or ("loanclassifier" if args.component == "model" else "loanclassifier-explainer")
    settings = server_settings(
        run_dir, args.host, args.http_port, args.grpc_port, args.metrics_port, args.parallel_workers
    )
    parameters: dict[str, Any] = {"uri": str(artifacts)}
    version = _model_version(artifacts)
    if version:
        parameters["version"] = version
    model_settings = {"name": name, "implementation": RUNTIMES[args.component], "parameters": parameters}
    (run_dir / "settings.json").write_text(json.dumps(settings, indent=2))
    (run_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))

    env: dict[str, str] = {}
    if args.component == "model" and args.queue_url:
        env["GLASSBOX_MODEL_QUEUE_URL"] = args.queue_url
    if args.component == "explainer":
        env["GLASSBOX_EXPLAINER_ARTIFACTS"] = str(artifacts)
        if args.model_url:
            env["GLASSBOX_EXPLAINER_MODEL_URL"] = args.model_url
            env[PROTOCOL_ENV] = os.environ.get(PROTOCOL_ENV, "v2")  # a V2 URL, unless told otherwise
    return run_dir, env


def server_settings(
    run_dir: Path, host: str, http_port: int, grpc_port: int, metrics_port: int, parallel_workers: int = 0
) -> dict[str, Any]:
    """MLServer's ``settings.json`` for a server whose settings live in ``run_dir`` (the benchmark's
    other MLServer servers use the same)."""
    return {
        "debug": False,  # no access log per request
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "metrics_endpoint": "/metrics",
        "parallel_workers": parallel_workers,
        "metrics_dir": str(run_dir / "metrics"),
        "environments_dir": str(run_dir / "envs"),
        "model_repository_root": str(run_dir),
        "load_models_at_startup": True,
        # Answers are a few KB at most and travel in the cluster: compressing them costs both ends more
        # than it saves (MLServer gzips any answer over 1 KB for a client that accepts it).
        "gzip_enabled": False,
    }


def _model_version(artifacts: Path) -> str | None:
    """The version the artifacts hold (V2 URLs name it), read from the manifest without unpickling."""
    from glassbox.pipeline.artifacts import read_manifest, resolve_version_dir

    try:
        return str(read_manifest(resolve_version_dir(artifacts)).version)
    except GlassboxError:
        return None  # the runtime's load() fails loudly on the same problem
