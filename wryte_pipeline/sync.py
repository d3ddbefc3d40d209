"""Apply a planned batch: fetch, parse and store each file, and record one outcome per file.

Files are fetched in one pass (a tarball or a bounded pool of blob requests), parsed as they
arrive, and written in chunks: each chunk's documents and outcome rows commit together. A file
that fails is recorded and the rest go on. A chunk the database rejects is retried row by row,
so only the offending file fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from wryte_pipeline.errors import (
    DocumentError,
    FrontMatterError,
    RateLimitExhaustedError,
    SkippedDocumentError,
    SourceError,
)
from wryte_pipeline.front_matter import ParsedDocument, parse_document
from wryte_pipeline.plan import PlannedItem
from wryte_pipeline.source import FetchedBlob, RepositorySource, TreeEntry
from wryte_pipeline.store import ContentStore, utc_now

logger = logging.getLogger(__name__)

WRITE_CHUNK_SIZE = 200

# Errors caused by one row's content. A lost connection is not among them: it fails the
# step, which is retried and resumes the batch, instead of failing every file.
ROW_ERRORS = (DataError, IntegrityError, ProgrammingError)


@dataclass(frozen=True)
class FileOutcome:
    """The outcome of one path in a batch, as written to ``sync_outcomes``."""

    path: str
    status: str
    blob_sha: str | None = None
    attempts: int = 1
    retryable: bool = False
    error: str | None = None
    reset_at: float | None = None

    def to_row(self, batch_id: str) -> dict[str, Any]:
        """Return the ``sync_outcomes`` row for this outcome."""
        return {
            "batch_id": batch_id,
            "path": self.path,
            "blob_sha": self.blob_sha,
            "status": self.status,
            "attempts": self.attempts,
            "retryable": self.retryable,
            "error": self.error,
        }


@dataclass(frozen=True)
class _Change:
    """One file's outcome with the document writes that go with it."""

    outcome: FileOutcome
    upsert: dict[str, Any] | None = None
    delete: str | None = None
    redirect: dict[str, Any] | None = None


OutcomeCallback = Callable[[FileOutcome], None]


class BatchApplier:
    """Applies one batch's planned items to the content store."""

    def __init__(
        self,
        *,
        batch_id: str,
        commit_sha: str,
        source: RepositorySource,
        store: ContentStore,
        max_file_bytes: int,
        site_timezone: tzinfo = UTC,
        on_outcome: OutcomeCallback | None = None,
        on_chunk: Callable[[], None] | None = None,
    ) -> None:
        """Bind the batch to its source, store and per-file callback."""
        self.batch_id = batch_id
        self.commit_sha = commit_sha
        self.source = source
        self.store = store
        self.max_file_bytes = max_file_bytes
        self.site_timezone = site_timezone
        self.on_outcome = on_outcome
        self.on_chunk = on_chunk
        self._pending: list[_Change] = []
        self._previous_rows: dict[str, dict[str, Any]] = {}

    def apply(self, items: Sequence[PlannedItem]) -> None:
        """Process every item not yet finished in this batch, one outcome row per file.

        Items that already have a final outcome in this batch are left alone, so applying an
        interrupted batch again resumes it.
        """
        finished = self.store.finished_paths(self.batch_id)
        if finished:
            logger.info("resuming batch %s: %d files already done", self.batch_id, len(finished))
        to_fetch: list[PlannedItem] = []
        for item in items:
            if item.path in finished:
                continue
            if item.action == "delete":
                self._add(FileOutcome(item.path, "deleted"), delete=item.path)
            elif item.action == "skip":
                reason = f"{item.path}: {item.reason}"
                outcome = FileOutcome(item.path, "skipped", item.sha, 0, error=reason)
                self._add(outcome, delete=item.path)
            elif item.size is not None and item.size > self.max_file_bytes:
                self._add(self._too_large(item))
            else:
                to_fetch.append(item)
        renamed_from = [item.previous_path for item in to_fetch if item.previous_path]
        self._previous_rows = self.store.document_rows(renamed_from)
        self._fetch_and_parse(to_fetch)
        self._flush()

    def _fetch_and_parse(self, items: Sequence[PlannedItem]) -> None:
        by_path = {item.path: item for item in items}
        entries = [TreeEntry(item.path, "100644", item.sha or "", item.size) for item in items]
        logger.info("fetching %d files at %s", len(entries), self.commit_sha[:7])
        try:
            for blob in self.source.fetch_blobs(entries, self.commit_sha):
                item = by_path.pop(blob.path)
                self._store_blob(item, blob)
        except SourceError as error:
            logger.warning("fetch stopped with %d files left: %s", len(by_path), error)
            for item in by_path.values():
                self._add(
                    FileOutcome(item.path, "failed", item.sha, retryable=True, error=str(error))
                )

    def _store_blob(self, item: PlannedItem, blob: FetchedBlob) -> None:
        if isinstance(blob.error, RateLimitExhaustedError):
            message = f"{item.path}: deferred, {blob.error}"
            outcome = FileOutcome(
                item.path, "deferred", item.sha, blob.attempts, True, message, blob.error.reset_at
            )
            self._add(outcome)
            return
        if blob.data is None:
            error = str(blob.error) if blob.error else "fetch failed"
            outcome = FileOutcome(item.path, "failed", item.sha, blob.attempts, True, error)
            self._add(outcome)
            return
        try:
            document = self._parse(item.path, blob.data)
        except SkippedDocumentError as error:
            self._add(
                FileOutcome(item.path, "skipped", item.sha, blob.attempts, error=str(error)),
                delete=item.path,
            )
            return
        except DocumentError as error:
            self._add(FileOutcome(item.path, "failed", item.sha, blob.attempts, error=str(error)))
            return
        except Exception as error:  # noqa: BLE001 - one file's parser crash must not stop the rest
            logger.exception("unexpected error parsing %s", item.path)
            message = f"{item.path}: unexpected {type(error).__name__}: {error}"
            self._add(FileOutcome(item.path, "failed", item.sha, blob.attempts, True, message))
            return
        row = document_row(item.path, item.sha or blob.sha, self.commit_sha, document)
        outcome = FileOutcome(item.path, "succeeded", item.sha, blob.attempts)
        redirect = self._redirect(item, document.slug)
        self._add(outcome, upsert=row, delete=item.previous_path, redirect=redirect)

    def _redirect(self, item: PlannedItem, new_slug: str) -> dict[str, Any] | None:
        """Record a moved document's old path and slug, so links to it can be redirected."""
        if item.previous_path is None:
            return None
        previous = self._previous_rows.get(item.previous_path, {})
        return {
            "from_path": item.previous_path,
            "from_slug": previous.get("slug"),
            "to_path": item.path,
            "to_slug": new_slug,
            "commit_sha": self.commit_sha,
        }

    def _parse(self, path: str, data: bytes) -> ParsedDocument:
        if len(data) > self.max_file_bytes:
            raise SkippedDocumentError(path, self._size_message(len(data)))
        if b"\0" in data:
            line = data.count(b"\n", 0, data.index(b"\0")) + 1
            raise FrontMatterError(
                path,
                line,
                "contains a NUL byte, so it is binary, not Markdown: remove the byte or "
                "leave the path out of WRYTE_PATHS",
            )
        return parse_document(path, data, site_timezone=self.site_timezone)

    def _too_large(self, item: PlannedItem) -> FileOutcome:
        message = f"{item.path}: {self._size_message(item.size or 0)}"
        return FileOutcome(item.path, "skipped", item.sha, 0, error=message)

    def _size_message(self, size: int) -> str:
        return (
            f"{size} bytes is over the {self.max_file_bytes}-byte ceiling: skipped; raise "
            "WRYTE_MAX_FILE_BYTES to store it"
        )

    def _add(
        self,
        outcome: FileOutcome,
        *,
        upsert: dict[str, Any] | None = None,
        delete: str | None = None,
        redirect: dict[str, Any] | None = None,
    ) -> None:
        self._pending.append(_Change(outcome, upsert, delete, redirect))
        if len(self._pending) >= WRITE_CHUNK_SIZE:
            self._flush()

    def _flush(self) -> None:
        changes, self._pending = self._pending, []
        if not changes:
            return
        try:
            self._write(changes)
        except ROW_ERRORS as error:
            logger.warning(
                "bulk write of %d rows failed (%s); writing one by one",
                len(changes),
                error.__class__.__name__,
            )
            self._write_one_by_one(changes)
        else:
            self._notify([change.outcome for change in changes])
        if self.on_chunk is not None:
            self.on_chunk()

    def _write(self, changes: Sequence[_Change]) -> None:
        upserts = [change.upsert for change in changes if change.upsert is not None]
        deletes = [change.delete for change in changes if change.delete is not None]
        outcomes = [change.outcome.to_row(self.batch_id) for change in changes]
        moved = [change.redirect for change in changes if change.redirect is not None]
        self.store.write_results(upserts, deletes, outcomes, moved)

    def _write_one_by_one(self, changes: Sequence[_Change]) -> None:
        for change in changes:
            try:
                self._write([change])
            except ROW_ERRORS as error:
                outcome = change.outcome
                failed = FileOutcome(
                    outcome.path,
                    "failed",
                    outcome.blob_sha,
                    outcome.attempts,
                    True,
                    f"{outcome.path}: database rejected the row: {error}",
                )
                self.store.insert_outcomes([failed.to_row(self.batch_id)])
                self._notify([failed])
                continue
            self._notify([change.outcome])

    def _notify(self, outcomes: Iterable[FileOutcome]) -> None:
        if self.on_outcome is None:
            return
        for outcome in outcomes:
            self.on_outcome(outcome)


def document_row(
    path: str, blob_sha: str, commit_sha: str, document: ParsedDocument
) -> dict[str, Any]:
    """Build the ``documents`` row of a parsed file."""
    return {
        "path": path,
        "blob_sha": blob_sha,
        "commit_sha": commit_sha,
        "format": document.format,
        "front_matter": document.front_matter,
        "title": document.title,
        "slug": document.slug,
        "date": _utc(document.date),
        "publish_at": _utc(document.publish_at),
        "expire_at": _utc(document.expire_at),
        "draft": document.draft,
        "tags": list(document.tags),
        "categories": list(document.categories),
        "description": document.description,
        "body": document.body,
        "updated_at": utc_now(),
    }


def _utc(value: datetime | None) -> datetime | None:
    """Store times in UTC: SQLite keeps no offset, so every row must use the same one."""
    return value.astimezone(UTC) if value is not None else None
