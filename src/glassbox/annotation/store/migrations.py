"""Versioned schema migrations, applied in order and recorded in ``schema_migrations``.

A small migration table instead of Alembic: the queue speaks plain DB-API to two dialects and has
a handful of tables; Alembic would pull in SQLAlchemy for that. Each migration is a list of
statements written in the SQL both SQLite and PostgreSQL accept, applied in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records, responses, users, settings",
        (
            """CREATE TABLE records (
                id TEXT PRIMARY KEY,
                source TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'pending',
                model_name TEXT NOT NULL,
                model_version TEXT NOT NULL,
                predicted_label TEXT NOT NULL,
                max_probability DOUBLE PRECISION NOT NULL,
                loss DOUBLE PRECISION,
                request_id TEXT NOT NULL,
                timestamp TEXT NOT NULL,
                payload TEXT NOT NULL,
                explanation TEXT,
                final_label TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                completed_at DOUBLE PRECISION,
                feedback_sent_at DOUBLE PRECISION,
                feedback_attempts INTEGER NOT NULL DEFAULT 0,
                feedback_error TEXT
            )""",
            "CREATE INDEX records_status_certainty ON records (status, max_probability)",
            "CREATE INDEX records_status_loss ON records (status, loss)",
            "CREATE INDEX records_created ON records (created_at)",
            """CREATE TABLE responses (
                record_id TEXT NOT NULL REFERENCES records (id),
                user_name TEXT NOT NULL,
                kind TEXT NOT NULL,
                label TEXT,
                note TEXT NOT NULL DEFAULT '',
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (record_id, user_name)
            )""",
            "CREATE INDEX responses_user ON responses (user_name)",
            """CREATE TABLE users (
                name TEXT PRIMARY KEY,
                role TEXT NOT NULL,
                key_hash TEXT NOT NULL UNIQUE,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
    Migration(
        2,
        "index for the feedback sweep",
        ("CREATE INDEX records_feedback ON records (status, source, feedback_sent_at)",),
    ),
    Migration(
        3,
        "feedback outbox: state, next attempt (back-off and claim lease)",
        (
            "ALTER TABLE records ADD COLUMN feedback_state TEXT",
            "ALTER TABLE records ADD COLUMN feedback_next_attempt_at DOUBLE PRECISION",
            "UPDATE records SET feedback_state = 'sent' WHERE feedback_sent_at IS NOT NULL",
            "UPDATE records SET feedback_state = 'pending', feedback_next_attempt_at = 0 "
            "WHERE feedback_sent_at IS NULL AND status = 'completed' AND source = 'prediction'",
            "DROP INDEX records_feedback",
            # Only the due rows are indexed: the claim's scan never walks the sent ones.
            "CREATE INDEX records_feedback_due ON records (feedback_next_attempt_at, id) "
            "WHERE feedback_state = 'pending'",
        ),
    ),
    Migration(
        4,
        "list view: disagreement flag, an index in each sort's order",
        (
            # Kept by add_response: a filter on it is an index lookup, not a subquery per record.
            "ALTER TABLE records ADD COLUMN disagreement INTEGER NOT NULL DEFAULT 0",
            "UPDATE records SET disagreement = 1 WHERE id IN (SELECT record_id FROM responses "
            "GROUP BY record_id HAVING COUNT(DISTINCT kind || ':' || COALESCE(label, '')) > 1)",
            # The full least-certain order, so a page is an index range scan with or without status.
            "DROP INDEX records_status_certainty",
            "CREATE INDEX records_status_least_certain ON records (status, max_probability, created_at, id)",
            "CREATE INDEX records_least_certain ON records (max_probability, created_at, id)",
            "DROP INDEX records_created",
            "CREATE INDEX records_newest ON records (created_at, id)",
            # Only disagreeing records are in it: free for the intake, which inserts none.
            "CREATE INDEX records_disagreeing ON records (max_probability, created_at, id) "
            "WHERE disagreement = 1",
        ),
    ),
    Migration(
        5,
        "users: deactivation, a session generation for signing out everywhere",
        (
            "ALTER TABLE users ADD COLUMN active INTEGER NOT NULL DEFAULT 1",
            # A page session names the generation it began in; bumping it ends every session at once.
            "ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    Migration(
        6,
        "webhooks and their delivery outbox",
        (
            # The secret is kept as given: signing needs it (unlike an API key, which is only compared).
            """CREATE TABLE webhooks (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                events TEXT NOT NULL,
                secret TEXT NOT NULL,
                created_by TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            # One row per (event, webhook), written in the transaction of the change that caused it.
            """CREATE TABLE webhook_deliveries (
                id TEXT PRIMARY KEY,
                webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
                event_id TEXT NOT NULL,
                event TEXT NOT NULL,
                body TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending',
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at DOUBLE PRECISION,
                last_status INTEGER,
                last_error TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                delivered_at DOUBLE PRECISION
            )""",
            "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, id) "
            "WHERE state = 'pending'",
            "CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (webhook_id, created_at)",
        ),
    ),
    Migration(
        7,
        "lineage: each explanation's method and fetch time, records by prediction id",
        (
            # Set when the queue fetches an explanation from the explainer; NULL for one given at intake.
            "ALTER TABLE records ADD COLUMN explanation_method TEXT",
            "ALTER TABLE records ADD COLUMN explanation_fetched_at DOUBLE PRECISION",
            # A lineage by Seldon puid reads every record of that request.
            "CREATE INDEX records_request ON records (request_id)",
        ),
    ),
    Migration(
        8,
        "background explanations: each record's explanation state, attempts and error",
        (
            # NULL: none asked for (given no explainer); 'pending' (due or being computed), 'done',
            # 'failed' (with its error; due again at explanation_next_attempt_at unless that is NULL).
            "ALTER TABLE records ADD COLUMN explanation_state TEXT",
            "ALTER TABLE records ADD COLUMN explanation_attempts INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE records ADD COLUMN explanation_next_attempt_at DOUBLE PRECISION",
            "ALTER TABLE records ADD COLUMN explanation_error TEXT",
            "UPDATE records SET explanation_state = 'done' WHERE explanation IS NOT NULL",
            # The claim's scan: only the few records still owed an explanation are indexed.
            "CREATE INDEX records_explanation_due ON records (explanation_next_attempt_at, id) "
            "WHERE explanation_state IN ('pending', 'failed')",
        ),
    ),
)

MIGRATION_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)"""
