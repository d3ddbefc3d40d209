"""The content store: documents, batches and per-file outcomes, in SQLite or PostgreSQL.

Every file attempt inserts its own ``sync_outcomes`` row, so progress is a read and no row is
ever a shared counter. Documents and their outcomes are written in one transaction per chunk,
so a crash leaves each file either at its old version or at its new one, never half written.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from wryte_pipeline.errors import ConfigurationError

logger = logging.getLogger(__name__)

# "deferred": not attempted because the GitHub rate limit was spent; the next sync retries it.
OUTCOME_STATUSES = ("succeeded", "failed", "deleted", "skipped", "deferred")
TABLE_PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,29}$")


_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _document_columns() -> list[sa.Column[Any]]:
    """Return fresh columns of a document row; `documents` and `published_documents` share them."""
    return [
        sa.Column("path", sa.Text, primary_key=True),
        sa.Column("blob_sha", sa.String(64), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("format", sa.String(8)),
        sa.Column("front_matter", _json, nullable=False),
        sa.Column("title", sa.Text),
        sa.Column("slug", sa.Text),
        sa.Column("date", sa.DateTime(timezone=True)),
        sa.Column("publish_at", sa.DateTime(timezone=True)),
        sa.Column("expire_at", sa.DateTime(timezone=True)),
        sa.Column("draft", sa.Boolean, nullable=False),
        sa.Column("tags", _json, nullable=False),
        sa.Column("categories", _json, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


@dataclass(frozen=True)
class Tables:
    """The content store's tables; one name prefix lets several repositories share a database."""

    metadata: sa.MetaData
    documents: sa.Table
    published_documents: sa.Table
    redirects: sa.Table
    sync_batches: sa.Table
    sync_outcomes: sa.Table
    sync_leases: sa.Table
    sync_cursors: sa.Table


def build_tables(prefix: str = "") -> Tables:
    """Define the tables, each name starting with ``prefix`` (for example ``docs_``)."""
    if prefix and not TABLE_PREFIX_PATTERN.match(prefix):
        raise ConfigurationError(
            f"invalid table prefix {prefix!r}: use lowercase letters, digits and underscores, "
            "starting with a letter, at most 30 characters"
        )
    metadata = sa.MetaData()
    documents = sa.Table(f"{prefix}documents", metadata, *_document_columns())

    # Documents a site shows now: not drafts, publish time reached, not expired. Rebuilt whole.
    published_documents = sa.Table(f"{prefix}published_documents", metadata, *_document_columns())

    redirects = sa.Table(
        f"{prefix}redirects",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("from_path", sa.Text, nullable=False),
        sa.Column("from_slug", sa.Text),
        sa.Column("to_path", sa.Text, nullable=False),
        sa.Column("to_slug", sa.Text),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )

    sync_batches = sa.Table(
        f"{prefix}sync_batches",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("repo", sa.Text, nullable=False),
        sa.Column("base_commit", sa.String(64)),
        sa.Column("head_commit", sa.String(64), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("items", _json, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("requests_used", sa.Integer),
    )

    sync_outcomes = sa.Table(
        f"{prefix}sync_outcomes",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(36), nullable=False, index=True),
        sa.Column("path", sa.Text, nullable=False, index=True),
        sa.Column("blob_sha", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("retryable", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )

    sync_leases = sa.Table(
        f"{prefix}sync_leases",
        metadata,
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )

    sync_cursors = sa.Table(
        f"{prefix}sync_cursors",
        metadata,
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("cursor", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    return Tables(
        metadata,
        documents,
        published_documents,
        redirects,
        sync_batches,
        sync_outcomes,
        sync_leases,
        sync_cursors,
    )


@dataclass(frozen=True)
class Batch:
    """One planned unit of sync work: the items a tick requested, between two commits."""

    id: str
    repo: str
    base_commit: str | None
    head_commit: str
    total: int
    items: list[dict[str, Any]]
    complete: bool
    created_at: datetime
    finished_at: datetime | None
    requests_used: int | None


def utc_now() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Return ``value`` in UTC; SQLite hands back naive datetimes that were stored as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ContentStore:
    """Reads and writes the content tables through one SQLAlchemy engine."""

    def __init__(self, url: str, *, table_prefix: str = "", engine: Engine | None = None) -> None:
        """Connect to ``url`` (any SQLAlchemy URL) and create the tables if they are missing."""
        self.url = url
        self.engine = engine or create_engine(url)
        self.tables = build_tables(table_prefix)
        try:
            self.tables.metadata.create_all(self.engine)
        except sa.exc.OperationalError as error:
            shown = self.engine.url.render_as_string(hide_password=True)
            raise ConfigurationError(
                f"cannot open the content store at {shown!r} ({error.orig}); check "
                "WRYTE_DATABASE_URL and that the database server is running"
            ) from error

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """Open a transaction that commits on success and rolls back on error."""
        with self.engine.begin() as connection:
            yield connection

    def stored_blobs(self) -> dict[str, str]:
        """Return path -> blob SHA for every stored document."""
        query = sa.select(self.tables.documents.c.path, self.tables.documents.c.blob_sha)
        with self.engine.connect() as connection:
            return {row.path: row.blob_sha for row in connection.execute(query)}

    def settled_blobs(self) -> dict[str, str]:
        """Return path -> blob SHA for files whose latest outcome needs no retry.

        A file that failed for good (invalid front matter) or was skipped (symlink, LFS pointer)
        stays settled until its blob SHA changes, so the sensor does not request it again.
        """
        latest = (
            sa.select(sa.func.max(self.tables.sync_outcomes.c.id).label("id"))
            .group_by(self.tables.sync_outcomes.c.path)
            .subquery()
        )
        query = (
            sa.select(self.tables.sync_outcomes.c.path, self.tables.sync_outcomes.c.blob_sha)
            .join(latest, latest.c.id == self.tables.sync_outcomes.c.id)
            .where(self.tables.sync_outcomes.c.status.in_(("failed", "skipped")))
            .where(self.tables.sync_outcomes.c.retryable.is_(False))
        )
        with self.engine.connect() as connection:
            return {row.path: row.blob_sha for row in connection.execute(query)}

    def latest_failures(self, paths: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the latest outcome row of each given path whose latest outcome is `failed`."""
        requested = list(paths)
        if not requested:
            return {}
        outcomes = self.tables.sync_outcomes
        latest = (
            sa.select(sa.func.max(outcomes.c.id).label("id"))
            .where(outcomes.c.path.in_(requested))
            .group_by(outcomes.c.path)
            .subquery()
        )
        query = (
            sa.select(outcomes)
            .join(latest, latest.c.id == outcomes.c.id)
            .where(outcomes.c.status == "failed")
        )
        with self.engine.connect() as connection:
            return {row["path"]: dict(row) for row in connection.execute(query).mappings()}

    def permanent_failures(self, batch_id: str) -> list[str]:
        """Return the paths of a batch that failed for good, in the order they failed."""
        latest = {row["path"]: row for row in self.outcomes(batch_id)}
        return [
            path
            for path, row in latest.items()
            if row["status"] == "failed" and not row["retryable"]
        ]

    def retryable_failures(self, batch_id: str) -> int:
        """Count the files of a batch whose failure may pass on a later attempt."""
        query = (
            sa.select(sa.func.count())
            .select_from(self.tables.sync_outcomes)
            .where(self.tables.sync_outcomes.c.batch_id == batch_id)
            .where(self.tables.sync_outcomes.c.status == "failed")
            .where(self.tables.sync_outcomes.c.retryable.is_(True))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def create_batch(
        self,
        *,
        repo: str,
        base_commit: str | None,
        head_commit: str,
        items: Sequence[Mapping[str, Any]],
        complete: bool,
        requests_used: int = 0,
    ) -> Batch:
        """Insert a batch row holding the planned items and the requests spent planning it."""
        row: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "repo": repo,
            "base_commit": base_commit,
            "head_commit": head_commit,
            "total": len(items),
            "items": [dict(item) for item in items],
            "complete": complete,
            "created_at": utc_now(),
            "requests_used": requests_used,
        }
        with self.engine.begin() as connection:
            connection.execute(sa.insert(self.tables.sync_batches), row)
        return Batch(finished_at=None, **row)

    def get_batch(self, batch_id: str) -> Batch | None:
        """Return a batch by id, or None."""
        query = sa.select(self.tables.sync_batches).where(
            self.tables.sync_batches.c.id == batch_id
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _batch_from_row(dict(row)) if row else None

    def latest_batch(self, repo: str | None = None) -> Batch | None:
        """Return the most recently created batch, optionally of one repository."""
        query = (
            sa.select(self.tables.sync_batches)
            .order_by(self.tables.sync_batches.c.created_at.desc())
            .limit(1)
        )
        if repo is not None:
            query = query.where(self.tables.sync_batches.c.repo == repo)
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _batch_from_row(dict(row)) if row else None

    def finish_batch(self, batch_id: str, requests_used: int) -> None:
        """Stamp a batch as finished, adding the GitHub requests its run made."""
        spent = sa.func.coalesce(self.tables.sync_batches.c.requests_used, 0) + requests_used
        statement = (
            sa.update(self.tables.sync_batches)
            .where(self.tables.sync_batches.c.id == batch_id)
            .values(finished_at=utc_now(), requests_used=spent)
        )
        with self.engine.begin() as connection:
            connection.execute(statement)

    def write_results(
        self,
        upserts: Sequence[Mapping[str, Any]],
        deletes: Sequence[str],
        outcomes: Sequence[Mapping[str, Any]],
        redirect_rows: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Apply document upserts and deletions with their outcome rows in one transaction."""
        with self.engine.begin() as connection:
            if upserts:
                connection.execute(self._upsert_statement(), [dict(row) for row in upserts])
            if deletes:
                connection.execute(
                    sa.delete(self.tables.documents).where(
                        self.tables.documents.c.path.in_(deletes)
                    )
                )
            if outcomes:
                connection.execute(
                    sa.insert(self.tables.sync_outcomes), [_outcome_row(o) for o in outcomes]
                )
            if redirect_rows:
                rows = [{"created_at": utc_now(), **row} for row in redirect_rows]
                connection.execute(sa.insert(self.tables.redirects), rows)

    def refresh_published(self, now: datetime) -> int:
        """Rebuild `published_documents` as of ``now`` and return its row count.

        A document is published when it is not a draft, its publish time has come (its
        ``publish_at``, else its ``date``, as Hugo and Jekyll hold back future posts) and its
        ``expire_at``, if any, is still ahead.
        """
        publish_time = sa.func.coalesce(
            self.tables.documents.c.publish_at, self.tables.documents.c.date
        )
        visible = sa.select(self.tables.documents).where(
            self.tables.documents.c.draft.is_(False),
            sa.or_(publish_time.is_(None), publish_time <= now),
            sa.or_(
                self.tables.documents.c.expire_at.is_(None),
                self.tables.documents.c.expire_at > now,
            ),
        )
        names = [column.name for column in self.tables.documents.columns]
        with self.engine.begin() as connection:
            connection.execute(sa.delete(self.tables.published_documents))
            connection.execute(
                sa.insert(self.tables.published_documents).from_select(names, visible)
            )
            count = connection.execute(
                sa.select(sa.func.count()).select_from(self.tables.published_documents)
            ).scalar_one()
        return int(count)

    def publish_events_between(self, after: datetime, until: datetime) -> int:
        """Count publish and expiry times that fall in ``(after, until]``."""
        columns = (
            self.tables.documents.c.publish_at,
            self.tables.documents.c.date,
            self.tables.documents.c.expire_at,
        )
        conditions = [sa.and_(column > after, column <= until) for column in columns]
        query = (
            sa.select(sa.func.count())
            .select_from(self.tables.documents)
            .where(sa.or_(*conditions))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def duplicate_published_slugs(self) -> dict[str, list[str]]:
        """Return slug -> paths for every slug that more than one published document uses."""
        query = sa.select(
            self.tables.published_documents.c.slug, self.tables.published_documents.c.path
        ).order_by(self.tables.published_documents.c.slug, self.tables.published_documents.c.path)
        by_slug: dict[str, list[str]] = {}
        with self.engine.connect() as connection:
            for slug, path in connection.execute(query):
                by_slug.setdefault(slug, []).append(path)
        return {slug: paths for slug, paths in by_slug.items() if len(paths) > 1}

    def redirect_rows(self) -> list[dict[str, Any]]:
        """Return every redirect, oldest first."""
        query = sa.select(self.tables.redirects).order_by(self.tables.redirects.c.id)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def insert_outcomes(self, outcomes: Sequence[Mapping[str, Any]]) -> None:
        """Insert outcome rows alone, for files that change no document."""
        self.write_results((), (), outcomes)

    def document_rows(self, paths: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Return the stored rows of the given paths, keyed by path."""
        wanted = list(paths)
        if not wanted:
            return {}
        query = sa.select(self.tables.documents).where(self.tables.documents.c.path.in_(wanted))
        with self.engine.connect() as connection:
            return {row["path"]: dict(row) for row in connection.execute(query).mappings()}

    def finished_paths(self, batch_id: str) -> set[str]:
        """Return the paths of a batch whose latest outcome needs no further attempt."""
        rows = self.outcomes(batch_id)
        latest = {row["path"]: row for row in rows}
        return {
            path
            for path, row in latest.items()
            if row["status"] != "deferred" and not (row["status"] == "failed" and row["retryable"])
        }

    def outcomes(self, batch_id: str) -> list[dict[str, Any]]:
        """Return the outcome rows of a batch in insertion order."""
        query = (
            sa.select(self.tables.sync_outcomes)
            .where(self.tables.sync_outcomes.c.batch_id == batch_id)
            .order_by(self.tables.sync_outcomes.c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def outcome_counts(self, batch_id: str) -> dict[str, int]:
        """Count a batch's outcome rows by status: the batch's progress."""
        query = (
            sa.select(self.tables.sync_outcomes.c.status, sa.func.count())
            .where(self.tables.sync_outcomes.c.batch_id == batch_id)
            .group_by(self.tables.sync_outcomes.c.status)
        )
        with self.engine.connect() as connection:
            counts = {status: int(count) for status, count in connection.execute(query)}
        return {status: counts.get(status, 0) for status in OUTCOME_STATUSES}

    def document_count(self) -> int:
        """Count the stored self.tables.documents."""
        query = sa.select(sa.func.count()).select_from(self.tables.documents)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def load_cursor(self, source: str) -> str | None:
        """Return the sensor cursor the CLI saved for ``source``, if any."""
        query = sa.select(self.tables.sync_cursors.c.cursor).where(
            self.tables.sync_cursors.c.source == source
        )
        with self.engine.connect() as connection:
            value = connection.execute(query).scalar_one_or_none()
        return str(value) if value is not None else None

    def save_cursor(self, source: str, cursor: str) -> None:
        """Store the sensor cursor for ``source``, replacing the previous one."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.delete(self.tables.sync_cursors).where(
                    self.tables.sync_cursors.c.source == source
                )
            )
            connection.execute(
                sa.insert(self.tables.sync_cursors),
                {"source": source, "cursor": cursor, "updated_at": utc_now()},
            )

    def _upsert_statement(self) -> Any:
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            insert: Any = postgresql.insert(self.tables.documents)
        elif dialect == "sqlite":
            insert = sqlite.insert(self.tables.documents)
        else:
            raise NotImplementedError(f"content store dialect {dialect!r} is not supported")
        updated = {
            c.name: insert.excluded[c.name] for c in self.tables.documents.c if c.name != "path"
        }
        return insert.on_conflict_do_update(index_elements=["path"], set_=updated)


def create_engine(url: str) -> Engine:
    """Create an engine; a SQLite file gets WAL mode so readers see progress during a run."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        engine = sa.create_engine(url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as error:
        raise ConfigurationError(
            f"invalid WRYTE_DATABASE_URL: {error}; use a SQLAlchemy URL such as "
            "sqlite:///content.db or postgresql://user@host/database"
        ) from error
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        sa.event.listen(engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _outcome_row(outcome: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"blob_sha": None, "attempts": 1, "retryable": False, "error": None}
    row.update(outcome)
    row.setdefault("created_at", utc_now())
    if row["status"] not in OUTCOME_STATUSES:
        raise ValueError(
            f"invalid outcome status {row['status']!r}: use one of {OUTCOME_STATUSES}"
        )
    return row


def _batch_from_row(row: Mapping[str, Any]) -> Batch:
    values = dict(row)
    values["created_at"] = as_utc(values["created_at"])
    values["finished_at"] = as_utc(values["finished_at"])
    return Batch(**values)
