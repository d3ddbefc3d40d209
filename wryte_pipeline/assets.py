"""Assets: one partition per Markdown file, the content table, and the batch report.

A sync run is shaped by batch, not by file: the sensor puts every changed path of a tick into
one run of ``content_table``, which applies them in one pass and logs a materialization of
``markdown_document`` for each path. The partition stays the unit of record (each path has its
own materialization and outcome row) while the run is the unit of execution, because a Dagster
run costs seconds of overhead and a file costs milliseconds. ``markdown_document`` can still be
materialized alone, or as a backfill, for chosen paths.
"""

import time
import warnings
from collections.abc import Sequence
from typing import Any

import dagster as dg

from wryte_pipeline.errors import TransientSourceError, WryteError
from wryte_pipeline.locks import LeaseHeldError, hold_lease, lease_key
from wryte_pipeline.partitions import (
    PARTITIONS_NAME,
    markdown_files,
    partition_key_for_path,
    path_for_partition_key,
)
from wryte_pipeline.plan import PlannedItem, plan_sync
from wryte_pipeline.report import build_report, render_markdown
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.source import RepositorySource, TreeEntry
from wryte_pipeline.store import Batch, ContentStore, utc_now
from wryte_pipeline.sync import BatchApplier, FileOutcome

BATCH_TAG = "wryte/batch_id"

# Key under which the time of the last `published_documents` rebuild is kept.
PUBLISHED_REFRESH_KEY = "published_documents:refreshed_at"

# BackfillPolicy is marked beta in Dagster 1.13; the warning would print on every CLI start.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

# Transient failures (5xx, resets, rate limits) get three attempts: 1.5 s, then 3 s between.
DOCUMENT_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=1.5, backoff=dg.Backoff.EXPONENTIAL)

# A batch step that fails as a whole (lost database connection, tree request failed) is
# retried the same way. The retry resumes the batch and skips the files already done.
BATCH_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=1.5, backoff=dg.Backoff.EXPONENTIAL)


@dg.asset(
    partitions_def=markdown_files,
    retry_policy=DOCUMENT_RETRY_POLICY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="content",
    kinds={"github", "markdown"},
)
def markdown_document(
    context: dg.AssetExecutionContext, wryte: WryteResource
) -> dg.MaterializeResult[None]:
    """One Markdown file of the repository, parsed and stored as a row of `documents`.

    Materializing a partition fetches that path at the branch head and upserts it, or removes
    its row when the path is gone. A backfill over many partitions runs as one run.
    """
    paths = [path_for_partition_key(key) for key in context.partition_keys]
    store = wryte.open_store()
    source = wryte.open_source()
    commit_sha, entries = _read_head(source)
    items = [_item_for_path(path, entries) for path in paths]
    batch = store.create_batch(
        repo=source.name,
        base_commit=None,
        head_commit=commit_sha,
        items=[item.to_json() for item in items],
        complete=True,
        requests_used=source.requests_used,
    )
    outcomes = _apply(context, batch, source, store, wryte, log_partitions=False)
    _wait_for_rate_limit(context, outcomes, wryte.settings().max_rate_limit_wait_seconds)
    _raise_for_failures(outcomes)
    return dg.MaterializeResult(
        metadata={"paths": len(paths), "commit_sha": commit_sha, "batch_id": batch.id}
    )


@dg.asset(
    deps=[markdown_document],
    retry_policy=BATCH_RETRY_POLICY,
    group_name="content",
    kinds={"sql"},
)
def content_table(
    context: dg.AssetExecutionContext, wryte: WryteResource
) -> dg.MaterializeResult[None]:
    """The `documents` table, equal to the repository's Markdown at the branch head.

    In a sensor's run it applies the batch named by the `wryte/batch_id` tag. Materialized by
    hand, it plans a batch from the branch head itself, capped like a sensor tick.
    """
    store = wryte.open_store()
    source = wryte.open_source()
    batch = _batch_for_run(context, store, source, wryte)
    outcomes = _apply(context, batch, source, store, wryte, log_partitions=True)
    _wait_for_rate_limit(context, outcomes, wryte.settings().max_rate_limit_wait_seconds)
    failed = sum(1 for outcome in outcomes if outcome.status == "failed")
    context.log.info("batch %s: %d files, %d failed", batch.id, len(outcomes), failed)
    return dg.MaterializeResult(
        metadata={
            "documents": store.document_count(),
            "batch_id": batch.id,
            "head_commit": batch.head_commit,
            "files_in_batch": len(outcomes),
            "failed": failed,
        }
    )


@dg.asset(deps=[content_table], group_name="content", kinds={"pandas"})
def batch_report(
    context: dg.AssetExecutionContext, wryte: WryteResource
) -> dg.MaterializeResult[None]:
    """Counts, duration, GitHub requests and failed files of the latest sync batch."""
    store = wryte.open_store()
    batch_id = context.run.tags.get(BATCH_TAG)
    batch = store.get_batch(batch_id) if batch_id else store.latest_batch()
    if batch is None:
        raise dg.Failure("no sync batch found: run a sync first (`python -m wryte_pipeline sync`)")
    report = build_report(store, batch)
    context.log.info("batch %s report: %s", batch.id, report.counts)
    metadata: dict[str, Any] = dict(report.counts)
    metadata["report"] = dg.MetadataValue.md(render_markdown(report))
    metadata["batch_id"] = batch.id
    metadata["duration_seconds"] = report.duration_seconds or 0.0
    metadata["github_requests"] = report.requests_used or 0
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(deps=[content_table], group_name="content", kinds={"sql"})
def published_documents(
    context: dg.AssetExecutionContext, wryte: WryteResource
) -> dg.MaterializeResult[None]:
    """The `published_documents` table: what a site shows now.

    Drafts, documents whose publish time (`publish_at`, else `date`) is still ahead and expired
    documents are left out. The publish schedule rebuilds it at each minute a publish or expiry
    time falls due, so a scheduled post appears on time with no push.
    """
    store = wryte.open_store()
    now = utc_now()
    count = store.refresh_published(now)
    store.save_cursor(PUBLISHED_REFRESH_KEY, now.isoformat())
    context.log.info("%d documents published as of %s", count, now.isoformat())
    return dg.MaterializeResult(metadata={"published": count, "as_of": now.isoformat()})


def _read_head(source: RepositorySource) -> tuple[str, dict[str, TreeEntry]]:
    try:
        head = source.resolve_head()
        assert head.commit_sha is not None
        entries = {entry.path: entry for entry in source.list_tree(head.commit_sha)}
    except WryteError as error:
        raise dg.Failure(str(error), allow_retries=_is_transient(error)) from error
    return head.commit_sha, entries


def _item_for_path(path: str, entries: dict[str, TreeEntry]) -> PlannedItem:
    entry = entries.get(path)
    if entry is None:
        return PlannedItem("delete", path)
    reason = entry.skip_reason
    if reason:
        return PlannedItem("skip", path, entry.sha, entry.size, reason=reason)
    return PlannedItem("upsert", path, entry.sha, entry.size)


def _batch_for_run(
    context: dg.AssetExecutionContext,
    store: ContentStore,
    source: RepositorySource,
    wryte: WryteResource,
) -> Batch:
    batch_id = context.run.tags.get(BATCH_TAG)
    if batch_id:
        batch = store.get_batch(batch_id)
        if batch is None:
            raise dg.Failure(
                f"batch {batch_id!r} not found in the content store", allow_retries=False
            )
        return batch
    commit_sha, entries = _read_head(source)
    settings = wryte.settings()
    plan = plan_sync(
        list(entries.values()),
        store.stored_blobs(),
        store.settled_blobs(),
        settings.path_patterns,
        settings.max_paths_per_tick,
    )
    keys = [partition_key_for_path(item.path) for item in plan.items if item.action != "delete"]
    context.instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
    return store.create_batch(
        repo=source.name,
        base_commit=None,
        head_commit=commit_sha,
        items=[item.to_json() for item in plan.items],
        complete=plan.complete,
        requests_used=source.requests_used,
    )


def _apply(
    context: dg.AssetExecutionContext,
    batch: Batch,
    source: RepositorySource,
    store: ContentStore,
    wryte: WryteResource,
    *,
    log_partitions: bool,
) -> list[FileOutcome]:
    outcomes: list[FileOutcome] = []

    def record(outcome: FileOutcome) -> None:
        outcomes.append(outcome)
        if log_partitions:
            _log_partition_event(context, outcome)

    settings = wryte.settings()
    lease_name = lease_key(settings.repository, settings.branch)
    try:
        with hold_lease(store, lease_name, context.run_id, settings.lock_wait_seconds) as lease:
            applier = BatchApplier(
                batch_id=batch.id,
                commit_sha=batch.head_commit,
                source=source,
                store=store,
                max_file_bytes=settings.max_file_bytes,
                site_timezone=settings.site_tzinfo,
                on_outcome=record,
                on_chunk=lease.renew,
            )
            spent_before = source.requests_used
            applier.apply([PlannedItem.from_json(item) for item in batch.items])
            store.finish_batch(batch.id, source.requests_used - spent_before)
    except LeaseHeldError as error:
        raise dg.Failure(str(error), allow_retries=False) from error
    return outcomes


def _wait_for_rate_limit(
    context: dg.AssetExecutionContext, outcomes: Sequence[FileOutcome], max_wait_seconds: int
) -> None:
    """Retry the step after the rate-limit reset, or leave deferred files to the next sync.

    The wait happens between step attempts, never inside a fetch worker, and the retried
    attempt resumes the batch where it stopped.
    """
    deferred = [outcome for outcome in outcomes if outcome.status == "deferred"]
    if not deferred:
        return
    reset_at = _latest_reset(deferred)
    wait = max(reset_at - time.time(), 0.0) + 1.0
    if wait <= max_wait_seconds:
        context.log.warning(
            "rate limit spent with %d files left; retrying in %.0f s", len(deferred), wait
        )
        raise dg.RetryRequested(max_retries=2, seconds_to_wait=wait)
    context.log.warning(
        "rate limit spent with %d files left and resets in %.0f s, over the %d s ceiling; "
        "the next sync picks them up",
        len(deferred),
        wait,
        max_wait_seconds,
    )


def _latest_reset(outcomes: Sequence[FileOutcome]) -> float:
    resets = [outcome.reset_at for outcome in outcomes if outcome.reset_at is not None]
    return max(resets, default=time.time() + 60.0)


def _log_partition_event(context: dg.AssetExecutionContext, outcome: FileOutcome) -> None:
    key = partition_key_for_path(outcome.path)
    metadata = {"path": outcome.path, "status": outcome.status}
    if outcome.blob_sha:
        metadata["blob_sha"] = outcome.blob_sha
    if outcome.status == "succeeded":
        context.log_event(
            dg.AssetMaterialization(markdown_document.key, partition=key, metadata=metadata)
        )
        return
    if outcome.error:
        metadata["error"] = outcome.error
    context.log_event(dg.AssetObservation(markdown_document.key, partition=key, metadata=metadata))


def _raise_for_failures(outcomes: Sequence[FileOutcome]) -> None:
    failures = [outcome for outcome in outcomes if outcome.status in ("failed", "deferred")]
    if not failures:
        return
    listed = "; ".join(outcome.error or outcome.path for outcome in failures[:10])
    raise dg.Failure(
        f"{len(failures)} of {len(outcomes)} files failed: {listed}",
        metadata={"failed_paths": [outcome.path for outcome in failures]},
        allow_retries=all(outcome.retryable for outcome in failures),
    )


def _is_transient(error: Exception) -> bool:
    return isinstance(error, TransientSourceError)
