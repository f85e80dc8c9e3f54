"""Where the queue keeps its records: ``open_store`` picks SQLite or PostgreSQL from the URL."""

from __future__ import annotations

from glassbox.annotation.store.base import SqlStore
from glassbox.errors import ConfigError

Store = SqlStore


def open_store(
    url: str, schema: str = "", pool_size: int = 4, migrate: bool = True, timeout: float = 5.0
) -> SqlStore:
    """A store for ``sqlite:///path`` or ``postgresql://...``, migrated to the newest schema.

    ``timeout``: PostgreSQL only, seconds a request waits for a connection before it answers 503.
    """
    if url.startswith("sqlite:///"):
        from glassbox.annotation.store.sqlite import SQLiteStore

        store: SqlStore = SQLiteStore(url.removeprefix("sqlite:///"), pool_size)
    elif url.startswith(("postgresql://", "postgres://")):
        from glassbox.annotation.store.postgres import PostgresStore

        store = PostgresStore(url, schema, pool_size, timeout)
    else:
        raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///<path> or postgresql://...")
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["Store", "open_store"]
