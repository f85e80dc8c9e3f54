"""Clean shutdown of Seldon's microservice process tree on SIGTERM (Seldon Core 1.19).

``seldon-core-microservice`` runs the REST gunicorn arbiter in its main process and forks, with
multiprocessing, a gRPC server parent (not a daemon; it forks ``--grpc-workers`` gRPC workers) and the
metrics gunicorn. Left alone, SIGTERM stops only the REST arbiter; its exit then joins the gRPC parent,
which never got a signal, and the tree lives until SIGKILL (the buffered rows of every worker lost).

``install_for_microservice`` runs in the component's ``__init__``, which Seldon calls in its main process
before it starts any server, and rewires the microservice through the module attributes it looks up at
call time. SIGTERM to the main process (the kubelet's signal to PID 1) then:

1. refuses new connections at once: gunicorn closes its listening socket, and each worker takes what
   is already in the listen backlog and closes its own copy as soon as it stops accepting, so readiness
   probes fail from then on;
2. answers the requests in flight: gunicorn's ``graceful_timeout`` and gRPC's ``server.stop(grace)`` get
   the drain time, while the gRPC and metrics servers stop in parallel with the REST workers;
3. runs each worker's ``on_stop`` callbacks as it exits (the model's forwarding buffer goes to its
   outbox), and SIGKILLs whatever is still alive when the grace is over: the tree is gone within it.

Every child also gets ``PR_SET_PDEATHSIG``: if the main process dies without cleaning up (SIGKILL, OOM),
its servers are sent SIGTERM instead of living on as orphans.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import logging
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any, NoReturn

log = logging.getLogger(__name__)

# Part of the grace kept for the stop callbacks (spilling a buffer to SQLite takes milliseconds) after
# requests in flight had their time; the rest is the drain.
STOP_RESERVE_S = 1.0
POLL_S = 0.05
BACKLOG_DRAIN_S = 1.0  # at most this long taking connections from the listen backlog before closing
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def drain_seconds(grace: float) -> float:
    """How long requests in flight may take once SIGTERM arrived, out of ``grace``."""
    return max(grace - STOP_RESERVE_S, grace / 2)


# --- per process: what to do before it exits ---------------------------------------------------------

_callbacks: list[Callable[[], None]] = []
_callbacks_pid = 0  # the process whose atexit runs them: a fork starts with a copy of its parent's list


def on_stop(callback: Callable[[], None]) -> None:
    """Run ``callback`` once when this process stops: at exit (gunicorn workers, plain processes) or on
    SIGTERM in a gRPC worker (a multiprocessing child, which skips ``atexit``)."""
    global _callbacks_pid
    if _callbacks_pid != os.getpid():
        _callbacks.clear()
        _callbacks_pid = os.getpid()
        atexit.register(run_stop_callbacks)
    _callbacks.append(callback)


def run_stop_callbacks() -> None:
    """Run (and forget) the registered callbacks, the last registered first; each failure is logged."""
    while _callbacks:
        callback = _callbacks.pop()
        try:
            callback()
        except Exception:  # one failing callback must not keep the others from running
            log.exception("stop callback %r failed", callback)


def exit_now(code: object) -> NoReturn:
    """Exit once the ``atexit`` handlers have run, skipping Python's teardown of every module.

    With numba, llvmlite, Flask and gRPC loaded that teardown costs each process 1-2 s of CPU, paid out
    of the pod's grace; nothing in it matters once the handlers (stop callbacks, Seldon's metrics
    Manager, log flushing) are done. Non-daemon threads are not waited for: an explanation still running
    past the drain is abandoned, as SIGKILL would.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code is None:
        os._exit(0)
    if isinstance(code, int):
        os._exit(code)
    print(code, file=sys.stderr, flush=True)  # what sys.exit("message") prints
    os._exit(1)


# --- installing into the microservice's main process -------------------------------------------------

_installed = False


def install_for_microservice(grace: float) -> bool:
    """Rewire the running ``seldon-core-microservice`` for a clean shutdown within ``grace`` seconds.

    Does nothing (returns False) unless Seldon's ``main`` is on the calling thread's stack in the main
    process: a test or a script that builds the component installs nothing.
    """
    global _installed
    module = _running_microservice()
    if module is None:
        return False
    if not _installed:
        _installed = True
        _install(module, grace)
        log.info("clean shutdown installed: SIGTERM drains for %.1fs, the tree exits within %.1fs",
                 drain_seconds(grace), grace)  # fmt: skip
    return True


def _running_microservice() -> ModuleType | None:
    if multiprocessing.parent_process() is not None:
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        names = frame.f_globals
        spec = names.get("__spec__")
        is_seldon = names.get("__name__") == "seldon_core.microservice" or (
            spec is not None and spec.name == "seldon_core.microservice"  # python -m seldon_core.microservice
        )
        main = names.get("main")
        if is_seldon and main is not None and frame.f_code is getattr(main, "__code__", None):
            return sys.modules[names["__name__"]]
        frame = frame.f_back
    return None


def _install(module: ModuleType, grace: float) -> None:
    drain = drain_seconds(grace)
    tree = _Tree(grace)
    module.start_servers = _start_servers(module.start_servers, module.mp, tree)
    module._run_grpc_server = _grpc_worker(module._run_grpc_server, drain)
    wrapper = module.seldon_microservice  # seldon_core.wrapper, as the microservice names it
    wrapper.get_grpc_server = _keep_grpc_server(wrapper.get_grpc_server)
    # REST and metrics servers: UserModelApplication subclasses StandaloneApplication.
    module.StandaloneApplication.load_config = _gunicorn_config(
        module.StandaloneApplication.load_config, drain, tree
    )


# --- the main process: stop every server, then whatever is left ------------------------------------


class _Tree:
    """The main process's view of the servers it started, and the deadline SIGTERM set for them."""

    def __init__(self, grace: float):
        self.grace = grace
        self.main_pid = os.getpid()
        self.servers: list[int] = []  # gRPC parent, custom service, metrics gunicorn
        self.keep: set[int] = set()  # children older than the servers (Seldon's metrics Manager)
        self.started: float | None = None

    def watch(self, arbiter: Any) -> None:
        """Called in every gunicorn arbiter once it is ready; acts in the main process's (REST) only."""
        if os.getpid() != self.main_pid:
            return
        for name in ("handle_term", "handle_int", "handle_quit"):
            setattr(arbiter, name, self._first_begin(getattr(arbiter, name)))

    def _first_begin(self, handler: Callable[[], None]) -> Callable[[], None]:
        @functools.wraps(handler)
        def handle() -> None:
            self.begin()
            handler()  # gunicorn's own: stop listening, SIGTERM the workers, wait, exit

        return handle

    def begin(self) -> None:
        """SIGTERM the other servers' trees now, so that they drain while the REST workers do."""
        if self.started is not None:
            return
        self.started = time.monotonic()
        log.info("stopping: %d server process(es) besides REST; all gone within %.1fs",
                 len(self.servers), self.grace)  # fmt: skip
        for pid in self.servers:  # each passes it on to its own children; finish() makes sure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def finish(self) -> None:
        """Wait for every descendant until the deadline, then SIGKILL what is left."""
        import psutil

        self.begin()
        assert self.started is not None
        deadline = self.started + self.grace
        me = psutil.Process()
        left = [p for p in me.children(recursive=True) if p.pid not in self.keep]
        for process in left:  # anything the servers did not pass SIGTERM on to (a second one is harmless)
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGTERM)
        while True:
            left = [p for p in left if _running(p)]
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        for process in left:
            log.warning("pid %d still running after %.1fs: killed", process.pid, self.grace)
            with contextlib.suppress(psutil.Error):
                process.kill()
        # Not psutil.wait_procs: it would reap multiprocessing's children behind its back.
        killed_by = time.monotonic() + 1.0
        while any(_running(p) for p in left) and time.monotonic() < killed_by:
            time.sleep(POLL_S)
        log.info("process tree stopped %.2fs after SIGTERM", time.monotonic() - self.started)


def _running(process: Any) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _start_servers(original: Callable[..., None], mp: Any, tree: _Tree) -> Callable[..., None]:
    @functools.wraps(original)
    def start_servers(target1: Callable, target2: Callable, target3: Callable, metrics_target: Callable):
        before = {p.pid for p in mp.active_children()}

        def serve_rest() -> None:  # runs in the main process once the other servers are forked
            tree.keep = before
            tree.servers = [p.pid for p in mp.active_children() if p.pid not in before]
            try:
                target1()
            except BaseException as exc:
                if os.getpid() != tree.main_pid:  # a gunicorn worker forked from here, on its way out
                    raise
                tree.finish()
                if isinstance(exc, SystemExit):  # gunicorn's arbiter has stopped
                    exit_now(exc.code)
                raise
            tree.finish()

        return original(serve_rest, _child(target2), _child(target3), _child(metrics_target))

    return start_servers


def _child(target: Callable[[], None] | None) -> Callable[[], None] | None:
    """A server started by ``start_servers``: dies with the main process, passes SIGTERM to its children
    (the gRPC parent only waits for its workers; gunicorn replaces this handler with its own)."""
    if target is None:
        return None
    parent = os.getpid()

    @functools.wraps(target)
    def run() -> None:
        _die_with_parent(parent)
        signal.signal(signal.SIGTERM, _pass_to_children)
        target()

    return run


def _pass_to_children(signum: int, frame: FrameType | None) -> None:
    import psutil

    children = psutil.Process().children()
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.send_signal(signum)
    if not children:  # nothing to wait for (the gRPC parent returns once its workers have exited)
        raise SystemExit(0)


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


# --- gunicorn (REST and metrics servers) ------------------------------------------------------------


def _gunicorn_config(original: Callable[[Any], None], drain: float, tree: _Tree) -> Callable[[Any], None]:
    @functools.wraps(original)
    def load_config(app: Any) -> None:
        original(app)
        cfg = app.cfg
        cfg.set("graceful_timeout", max(1, math.floor(drain)))  # whole seconds only
        # gunicorn 23+'s control socket: unused by Seldon, one path ($HOME/.gunicorn/gunicorn.ctl) for
        # both arbiters, and stopping its thread held the REST arbiter's exit for 2 s.
        cfg.set("control_socket_disable", True)
        when_ready, post_worker_init, worker_exit = cfg.when_ready, cfg.post_worker_init, cfg.worker_exit

        def ready(arbiter: Any) -> None:
            when_ready(arbiter)
            tree.watch(arbiter)

        def worker_ready(worker: Any) -> None:
            post_worker_init(worker)
            _close_listeners_when_draining(worker)

        def worker_done(arbiter: Any, worker: Any) -> None:  # in the worker, once it served its last request
            leaving = sys.exc_info()[1]  # gunicorn calls this hook while the worker's SystemExit propagates
            if worker.booted and isinstance(leaving, SystemExit) and not leaving.code:  # a clean stop
                _accept_then_close(worker)  # the sync worker's listening sockets
            worker_exit(arbiter, worker)
            run_stop_callbacks()
            if isinstance(leaving, SystemExit):
                exit_now(leaving.code)

        cfg.set("when_ready", ready)
        cfg.set("post_worker_init", worker_ready)
        cfg.set("worker_exit", worker_done)

    return load_config


def _close_listeners_when_draining(worker: Any) -> None:
    """Make a threaded worker close its listening sockets as soon as it stops accepting on SIGTERM.

    Gunicorn's gthread worker only stops polling them and keeps them open while it drains: connections
    keep landing in the kernel's backlog, unanswered, and are reset when the worker exits. Closed (the
    arbiter has closed its copy already) the port refuses them at once. The sync worker serves the
    request in hand and leaves its loop: ``worker_exit`` closes its sockets.
    """
    enable = getattr(worker, "set_accept_enabled", None)
    if enable is None:
        return

    @functools.wraps(enable)
    def set_accept_enabled(enabled: bool) -> None:
        enable(enabled)
        if not enabled and not worker.alive:
            _accept_then_close(worker)

    worker.set_accept_enabled = set_accept_enabled


def _accept_then_close(worker: Any) -> None:
    """Take the connections already in the listen backlog, then close the listening sockets.

    The kernel completed those connections' handshakes and their clients have sent a request: closing
    the socket would reset them. Taken first (gthread queues them for its threads, sync serves them at
    once), only connections arriving in the microseconds between the last ``accept`` and ``close`` are
    left to a reset; after the close the port refuses new ones.
    """
    deadline = time.monotonic() + BACKLOG_DRAIN_S
    for listener in worker.sockets:
        if listener.sock is None:  # closed already
            continue
        listener.setblocking(False)
        while time.monotonic() < deadline:
            queued = getattr(worker, "nr_conns", None)
            try:
                worker.accept(listener)
            except OSError:  # the sync worker's accept raises EAGAIN: the backlog is empty
                break
            if queued is not None and worker.nr_conns == queued:  # gthread's accept swallows EAGAIN
                break
        listener.close()  # gunicorn's socket wrapper: closing twice is a no-op


# --- gRPC workers -----------------------------------------------------------------------------------

_grpc_server: Any = None
_stopping = False


def _keep_grpc_server(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get_grpc_server(*args: Any, **kwargs: Any) -> Any:
        global _grpc_server
        _grpc_server = original(*args, **kwargs)
        return _grpc_server

    return get_grpc_server


def _grpc_worker(original: Callable[..., None], drain: float) -> Callable[..., None]:
    @functools.wraps(original)
    def run_grpc_server(user_object, seldon_metrics, args, annotations, bind_address) -> None:
        parent = multiprocessing.parent_process()
        _die_with_parent(parent.pid if parent is not None else os.getppid())
        signal.signal(signal.SIGTERM, functools.partial(_stop_grpc_worker, drain))
        original(user_object, seldon_metrics, args, annotations, bind_address)

    return run_grpc_server


def _stop_grpc_worker(drain: float, signum: int, frame: FrameType | None) -> None:
    """SIGTERM in a gRPC worker, whose main thread only sleeps: refuse new calls, let the calls in flight
    finish, run the stop callbacks, exit."""
    global _stopping
    if _stopping:  # the same SIGTERM from the main process and from the gRPC parent
        return
    _stopping = True
    if _grpc_server is not None:
        _grpc_server.stop(drain).wait(drain)
    run_stop_callbacks()
    raise SystemExit(0)
