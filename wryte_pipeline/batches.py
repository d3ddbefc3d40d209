"""Steps shared by the assets: read the head, plan or load a batch, apply it, report files.

They raise Dagster's `Failure` and `RetryRequested`, so they live apart from the plain modules
(`plan`, `sync`, `store`) that know nothing of Dagster.
"""

import time
from collections.abc import Sequence

import dagster as dg

from wryte_pipeline.errors import TransientSourceError, WryteError
from wryte_pipeline.locks import LeaseHeldError, hold_lease, lease_key
from wryte_pipeline.partition_events import PartitionEventLog
from wryte_pipeline.partitions import partition_key_for_path
from wryte_pipeline.plan import Plan, PlannedItem, plan_sync
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.source import RepositorySource, TreeEntry
from wryte_pipeline.store import Batch, ContentStore
from wryte_pipeline.sync import BatchApplier, FileOutcome

BATCH_TAG = "wryte/batch_id"

# Tag of a run that reports a file's recorded failure. Its value is the batch that failed it.
FAILED_IN_BATCH_TAG = "wryte/failed_in_batch"


def read_head(source: RepositorySource) -> tuple[str, dict[str, TreeEntry]]:
    """Return the branch head and its tree; a source error becomes a Dagster failure."""
    try:
        head = source.resolve_head()
        assert head.commit_sha is not None
        entries = {entry.path: entry for entry in source.list_tree(head.commit_sha)}
    except WryteError as error:
        raise dg.Failure(str(error), allow_retries=_is_transient(error)) from error
    return head.commit_sha, entries


def item_for_path(path: str, entries: dict[str, TreeEntry]) -> PlannedItem:
    """Plan one chosen path: upsert it, skip it, or delete it when it left the tree."""
    entry = entries.get(path)
    if entry is None:
        return PlannedItem("delete", path)
    reason = entry.skip_reason
    if reason:
        return PlannedItem("skip", path, entry.sha, entry.size, reason=reason)
    return PlannedItem("upsert", path, entry.sha, entry.size)


def batch_for_run(
    context: dg.AssetExecutionContext,
    store: ContentStore,
    source: RepositorySource,
    wryte: WryteResource,
    partitions_name: str,
) -> Batch:
    """Return the batch named by the run's tag, or plan one from the branch head."""
    batch_id = context.run.tags.get(BATCH_TAG)
    if batch_id:
        batch = store.get_batch(batch_id)
        if batch is None:
            raise dg.Failure(
                f"batch {batch_id!r} not found in the content store", allow_retries=False
            )
        return batch
    commit_sha, entries = read_head(source)
    settings = wryte.settings()
    plan = plan_sync(
        list(entries.values()),
        store.stored_blobs(),
        store.settled_blobs(),
        settings.path_patterns,
        settings.max_paths_per_tick,
    )
    keys = [partition_key_for_path(item.path) for item in plan.items if item.action != "delete"]
    context.instance.add_dynamic_partitions(partitions_name, keys)
    return create_batch(store, source, None, commit_sha, plan)


def create_batch(
    store: ContentStore,
    source: RepositorySource,
    base_commit: str | None,
    head_commit: str,
    plan: Plan,
) -> Batch:
    """Store a plan as a batch, with the requests the source spent on planning it."""
    return store.create_batch(
        repo=source.name,
        base_commit=base_commit,
        head_commit=head_commit,
        items=[item.to_json() for item in plan.items],
        complete=plan.complete,
        requests_used=source.requests_used,
    )


def apply_batch(
    context: dg.AssetExecutionContext,
    batch: Batch,
    source: RepositorySource,
    store: ContentStore,
    wryte: WryteResource,
    *,
    document_key: dg.AssetKey | None,
) -> list[FileOutcome]:
    """Apply a batch under the repository's lease; log each file against ``document_key``."""
    outcomes: list[FileOutcome] = []
    events = PartitionEventLog(context, document_key)

    def record(outcome: FileOutcome) -> None:
        outcomes.append(outcome)
        events.add(outcome)

    settings = wryte.settings()
    lease_name = lease_key(settings.repository, settings.branch)
    try:
        with hold_lease(store, lease_name, context.run_id, settings.lock_wait_seconds) as lease:

            def end_chunk() -> None:
                events.flush()
                lease.renew()

            applier = BatchApplier(
                batch_id=batch.id,
                commit_sha=batch.head_commit,
                source=source,
                store=store,
                max_file_bytes=settings.max_file_bytes,
                site_timezone=settings.site_tzinfo,
                on_outcome=record,
                on_chunk=end_chunk,
            )
            spent_before = source.requests_used
            try:
                applier.apply([PlannedItem.from_json(item) for item in batch.items])
            finally:
                # Outcomes whose rows are committed get their events, even when a later chunk
                # fails and the step is retried.
                events.flush()
            store.finish_batch(batch.id, source.requests_used - spent_before)
    except LeaseHeldError as error:
        raise dg.Failure(str(error), allow_retries=False) from error
    return outcomes


def wait_for_rate_limit(
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


def raise_for_failures(outcomes: Sequence[FileOutcome]) -> None:
    """Fail the step when any chosen file failed or was deferred, naming them."""
    failures = [outcome for outcome in outcomes if outcome.status in ("failed", "deferred")]
    if not failures:
        return
    listed = "; ".join(outcome.error or outcome.path for outcome in failures[:10])
    raise dg.Failure(
        f"{len(failures)} of {len(outcomes)} files failed: {listed}",
        metadata={"failed_paths": [outcome.path for outcome in failures]},
        allow_retries=all(outcome.retryable for outcome in failures),
    )


def raise_recorded_failures(store: ContentStore, paths: Sequence[str]) -> None:
    """Fail the step with the files' recorded errors when each one's latest outcome failed.

    A sync run logs materializations for the files of a batch but targets no file partition,
    so Dagster cannot show a failed file on the partitions page. The sensor therefore requests
    a run of the file's partition, which fails here with the error its batch recorded, without
    a GitHub request. When a file has changed state since, the step does a normal fetch.
    """
    failures = store.latest_failures(paths)
    if not paths or len(failures) < len(paths):
        return
    rows = [failures[path] for path in paths]
    listed = "; ".join(row["error"] or row["path"] for row in rows[:10])
    raise dg.Failure(
        f"{len(rows)} of {len(paths)} files failed in batch {rows[0]['batch_id']}: {listed}",
        metadata={
            "failed_paths": [row["path"] for row in rows],
            "blob_shas": [row["blob_sha"] or "" for row in rows],
        },
        allow_retries=False,
    )


def _is_transient(error: Exception) -> bool:
    return isinstance(error, TransientSourceError)
