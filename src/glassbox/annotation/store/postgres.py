"""The production store: PostgreSQL through psycopg 3, optionally inside its own schema."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.rows import dict_row

from glassbox.annotation.store.base import SqlStore, _Cursor
from glassbox.errors import ConfigError

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Any fixed 64-bit number: the advisory lock that serialises migrations across processes.
_MIGRATION_LOCK = 0x61626F78_71756575


class PostgresStore(SqlStore):
    dialect = "postgresql"
    lock_row = " FOR UPDATE"

    def __init__(self, dsn: str, schema: str = "", pool_size: int = 4):
        if schema and not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"invalid PostgreSQL schema name {schema!r}")
        self.dsn = dsn
        self.schema = schema
        super().__init__(pool_size)

    def _connect(self) -> Any:
        conn = psycopg.connect(self.dsn, row_factory=dict_row, connect_timeout=10)
        if self.schema:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            conn.execute(f'SET search_path TO "{self.schema}"')
            conn.commit()
        return conn

    def _rewrite(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _begin(self, conn: Any, write: bool) -> None:
        pass  # psycopg opens a transaction with the first statement

    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _rollback(self, conn: Any) -> None:
        if not conn.closed:
            conn.rollback()

    def _lock_migrations(self, cur: _Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
