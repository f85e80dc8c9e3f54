"""``seldon-core-microservice`` bound to 127.0.0.1 instead of 0.0.0.0.

Seldon Core 1.19's microservice writes ``0.0.0.0`` literally into its gunicorn ``bind`` options
(REST and metrics servers) and into its gRPC ``add_insecure_port`` address; there is no option or
environment variable to change it (gunicorn's ``GUNICORN_CMD_ARGS`` is read only by
``gunicorn.app.base.Application``, and Seldon uses ``BaseApplication``). A local stack must not
listen on every interface, so this launcher rewrites those two addresses and then runs Seldon's own
``main`` with the same command-line arguments. Run it as
``python -m glassbox.stack.loopback <interface> --http-port ...``.
"""

from __future__ import annotations

import functools

from seldon_core import gunicorn_utils, microservice

LOOPBACK = "127.0.0.1"


def _rebind(address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"{LOOPBACK}:{port}" if host in ("0.0.0.0", "", "[::]") else address


def patch_bind_addresses() -> None:
    """Make every server the microservice starts listen on loopback."""
    original_load_config = gunicorn_utils.StandaloneApplication.load_config

    @functools.wraps(original_load_config)
    def load_config(self) -> None:
        original_load_config(self)
        self.cfg.set("bind", [_rebind(b) for b in self.cfg.bind])

    gunicorn_utils.StandaloneApplication.load_config = load_config

    # gRPC workers are forked with ``target=_run_grpc_server`` looked up in the module at call time.
    original_run_grpc = microservice._run_grpc_server

    @functools.wraps(original_run_grpc)
    def run_grpc_server(user_object, seldon_metrics, args, annotations, bind_address):
        return original_run_grpc(user_object, seldon_metrics, args, annotations, _rebind(bind_address))

    microservice._run_grpc_server = run_grpc_server


def main() -> None:
    patch_bind_addresses()
    microservice.main()


if __name__ == "__main__":
    main()
