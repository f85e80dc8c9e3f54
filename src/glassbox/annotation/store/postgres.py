"""The production store: PostgreSQL through psycopg 3 and ``psycopg_pool``, optionally in its own schema.

The pool checks each connection as it hands it out (``ConnectionPool.check_connection``, one empty
query), so the connections a database restart closed are replaced instead of failing one request
each; the first failed check tests the whole pool at once. Reconnection gives up after
``reconnect_timeout`` and starts afresh at the next request, which bounds the time from "the database
is back" to "the queue answers" by a few seconds instead of psycopg_pool's exponential back-off
(which grows to minutes over a long outage).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from glassbox.annotation.store.base import Cursor, SqlStore
from glassbox.errors import ConfigError, UpstreamUnavailable

log = logging.getLogger(__name__)

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Any fixed 64-bit number: the advisory lock that serialises migrations across processes.
_MIGRATION_LOCK = 0x61626F78_71756575


def _bind(params: Sequence[Any]) -> tuple | None:
    return tuple(params) if params else None


class PostgresStore(SqlStore):
    dialect = "postgresql"
    lock_row = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        dsn: str,
        schema: str = "",
        pool_size: int = 4,
        timeout: float = 5.0,
        reconnect_timeout: float = 2.0,
    ):
        if schema and not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"invalid PostgreSQL schema name {schema!r}")
        self.dsn = dsn
        self.schema = schema
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            # RawCursor: statements go to the server as written, with its own $n placeholders.
            kwargs={"row_factory": dict_row, "cursor_factory": psycopg.RawCursor, "connect_timeout": 5},
            configure=self._configure,
            check=self._check,
            timeout=timeout,
            reconnect_timeout=reconnect_timeout,
            reconnect_failed=lambda pool: log.warning("PostgreSQL unreachable; retried at the next request"),
            name="glassbox-queue",
            open=True,
        )

    def _check(self, conn: psycopg.Connection) -> None:
        """psycopg_pool's check, run on every connection handed out.

        One closed connection means the server went away (a restart), and the others in the pool are
        closed too: they are all tested at once, not one per request with the pool's growing pause
        (1 s, 2 s, 4 s...) in between, which would hold the first request after a restart for seconds.
        """
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            self._pool.check()  # uses check_connection itself, not this method: no recursion
            raise

    def _configure(self, conn: psycopg.Connection) -> None:
        if self.schema:
            conn.execute(f'SET search_path TO "{self.schema}"')
            conn.commit()

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Cursor]:
        # psycopg opens the transaction at the first statement; the pool's connection context commits
        # on success and rolls back on an error.
        try:
            with self._pool.connection() as conn:
                yield Cursor(conn.cursor(), _bind)
        except PoolTimeout as exc:
            raise UpstreamUnavailable(f"PostgreSQL unavailable: no connection ({exc})") from exc
        except psycopg.OperationalError as exc:
            raise UpstreamUnavailable(f"PostgreSQL unavailable: {str(exc).strip()[:300]}") from exc

    def close(self) -> None:
        self._pool.close()

    def _before_migrations(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock($1)", (_MIGRATION_LOCK,))
        if self.schema:  # under the lock: two processes creating it at once would collide
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
