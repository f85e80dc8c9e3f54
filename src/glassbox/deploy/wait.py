"""Wait until SeldonDeployments are Available, showing progress, within a deadline."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

from glassbox.deploy.errors import DeploymentNotFound, NotAvailable
from glassbox.deploy.status import SeldonStatus

Fetch = Callable[[str], SeldonStatus]


def _describe(statuses: Sequence[SeldonStatus | str]) -> str:
    return "; ".join(s if isinstance(s, str) else s.summary() for s in statuses)


def wait_available(
    fetch: Fetch,
    names: Sequence[str],
    timeout_s: float,
    poll_s: float = 5.0,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[SeldonStatus]:
    """Poll ``fetch(name)`` for every name until all are Available; return their last statuses.

    A deployment that is not there yet counts as pending (the operator may not have seen it); one
    that reports Failed stops the wait at once with the operator's description, rather than
    sitting out the timeout.
    Raises ``NotAvailable`` naming each deployment's last state when the deadline passes.
    """
    report = progress or (lambda text: print(text, file=sys.stderr, flush=True))
    start = clock()
    last = ""
    while True:
        statuses: list[SeldonStatus | str] = []
        for name in names:
            try:
                statuses.append(fetch(name))
            except DeploymentNotFound:
                statuses.append(f"{name}: not found yet")
        elapsed = clock() - start
        described = _describe(statuses)
        if described != last:  # one line per change keeps a ten-minute wait readable
            report(f"[{elapsed:5.0f}s] {described}")
            last = described
        ready = [s for s in statuses if isinstance(s, SeldonStatus)]
        failed = [s for s in ready if s.failed]
        if failed:
            raise NotAvailable("; ".join(s.summary() for s in failed))
        if len(ready) == len(names) and all(s.available for s in ready):
            return ready
        if elapsed >= timeout_s:
            raise NotAvailable(f"not Available after {timeout_s:.0f}s: {described}")
        sleep(min(poll_s, max(0.0, timeout_s - elapsed)))
