"""The repository sensor: notice a new branch head and request one run for what changed.

Each tick checks the branch head with a conditional request, so an idle tick costs no rate
limit. When the head moved, or the last batch left work behind, it lists the tree once, diffs
blob SHAs against the content table, stores the planned batch, adds the new paths as
partitions and requests one run. The cursor moves only with a requested run or a skip, so a
failed tick is simply tried again.

After a batch ends, the next tick also requests a short run of each file the batch failed
(up to ``WRYTE_MAX_FAILED_FILE_RUNS``). It fails with the recorded error and no GitHub request,
so the partitions page shows the file failed rather than not materialized.
"""

import json
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace

import dagster as dg

from wryte_pipeline.assets import DEFAULT_ASSETS, AssetJob, RepositoryAssets
from wryte_pipeline.batches import BATCH_TAG, FAILED_IN_BATCH_TAG, create_batch
from wryte_pipeline.checks import DEFAULT_CHECKS, RepositoryChecks
from wryte_pipeline.errors import RateLimitExhaustedError
from wryte_pipeline.locks import LEASE_SECONDS, LeaseHolder, SyncLease, lease_key
from wryte_pipeline.partitions import partition_key_for_path
from wryte_pipeline.plan import Plan, PlannedItem, find_path_twins, fit_budget, plan_sync
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.settings import Settings
from wryte_pipeline.source import RateBudget
from wryte_pipeline.store import Batch, ContentStore

SENSOR_INTERVAL_SECONDS = 30
# The queued run coordinator starts runs of higher `dagster/priority` first; the default is 0.
PRIORITY_TAG = "dagster/priority"
FAILED_FILE_RUN_PRIORITY = "-1"
RATE_LIMIT_SKIP_PREFIX = "GitHub rate limit low"
# Base name of the job over file partitions; several repositories prefix it with their name.
DOCUMENT_JOB_NAME = "markdown_document_job"


def build_sync_job(assets: RepositoryAssets, checks: RepositoryChecks) -> AssetJob:
    """Define the job a sensor tick runs: the content table and everything downstream.

    The repository check costs two GitHub requests, so it runs on its own schedule instead.
    """
    return dg.define_asset_job(
        assets.config.qualified("sync_job"),
        selection=dg.AssetSelection.assets(assets.content_table).downstream()
        - dg.AssetSelection.checks(checks.content_matches_repository),
        description="Apply one sync batch to the content table, then report on it.",
    )


def build_document_job(assets: RepositoryAssets) -> AssetJob:
    """Define the job of chosen file partitions: backfills, and runs of failed files."""
    return dg.define_asset_job(
        assets.config.qualified(DOCUMENT_JOB_NAME),
        selection=[assets.markdown_document],
        partitions_def=assets.partitions,
        description="Fetch, parse and store chosen files: backfills and failed-file runs.",
    )


def build_sensor(
    assets: RepositoryAssets, sync_job: AssetJob, document_job: AssetJob
) -> dg.SensorDefinition:
    """Define the sensor that watches one repository's branch."""
    config = assets.config
    jobs = TickJobs(sync=sync_job.name, document=document_job.name)

    @dg.sensor(
        name=config.qualified("repository_sensor"),
        jobs=[sync_job, document_job],
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def repository_sensor(
        context: dg.SensorEvaluationContext, wryte: WryteResource
    ) -> dg.SensorResult | dg.SkipReason:
        """Request a sync run for the paths that changed since the content table was written."""
        return evaluate_tick(context, wryte.for_repository(config), assets.partitions, jobs)

    return repository_sensor


_FINISHED_STATUSES = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}


@dataclass(frozen=True)
class TickJobs:
    """Names of the jobs a tick requests: a batch's sync run and a failed file's run."""

    sync: str
    document: str


@dataclass(frozen=True)
class SensorCursor:
    """State the sensor keeps between ticks.

    Attributes:
        commit_sha: branch head the last batch was planned at.
        etag: validator of the last branch response, for a conditional request.
        batch_id: the last batch requested.
        complete: whether that batch covered every difference (no cap left work behind).
        branch: the branch followed, kept so an idle tick need not look up the default branch.
        failures_reported: the last batch whose failed files got their runs.
    """

    commit_sha: str | None = None
    etag: str | None = None
    batch_id: str | None = None
    complete: bool = False
    branch: str | None = None
    failures_reported: str | None = None

    @classmethod
    def parse(cls, raw: str | None) -> "SensorCursor":
        """Read a cursor string; an empty or unreadable one starts afresh."""
        if not raw:
            return cls()
        try:
            return cls(**json.loads(raw))
        except (TypeError, ValueError):
            return cls()

    def serialize(self) -> str:
        """Return the cursor as a JSON string."""
        return json.dumps(asdict(self), sort_keys=True)


def evaluate_tick(
    context: dg.SensorEvaluationContext,
    wryte: WryteResource,
    partitions: dg.DynamicPartitionsDefinition,
    jobs: TickJobs,
) -> dg.SensorResult | dg.SkipReason:
    """Run one tick: head check, budget check, diff, batch, partition requests and runs."""
    cursor = SensorCursor.parse(context.cursor)
    store = wryte.open_store()
    if cursor.batch_id and _run_in_flight(context, store, wryte.settings(), cursor.batch_id):
        return dg.SkipReason(f"batch {cursor.batch_id} is still running")

    result = _plan_tick(context, wryte, partitions, cursor, store, jobs.sync)
    if cursor.batch_id is None or cursor.batch_id == cursor.failures_reported:
        return result
    assert partitions.name is not None
    runs = failed_file_runs(
        context.instance,
        store,
        wryte.settings(),
        partitions.name,
        cursor.batch_id,
        jobs.document,
        replanned=_requested_paths(store, result),
    )
    if runs:
        context.log.info("batch %s: requesting %d failed-file runs", cursor.batch_id, len(runs))
    return _with_failed_file_runs(result, runs, cursor)


def failed_file_runs(
    instance: dg.DagsterInstance,
    store: ContentStore,
    settings: Settings,
    partitions_name: str,
    batch_id: str,
    job_name: str,
    replanned: Collection[str] = (),
) -> list[dg.RunRequest]:
    """Request a run of each file partition the batch failed for good, up to the setting.

    Paths in ``replanned`` are in a new batch already and get none. The run key names the batch
    and the partition, so a repeated request starts no second run. A low priority lets queued
    sync runs start first.
    """
    existing = set(instance.get_dynamic_partitions(partitions_name))
    paths = [path for path in store.permanent_failures(batch_id) if path not in replanned]
    keys = [partition_key_for_path(path) for path in paths]
    keys = [key for key in keys if key in existing][: settings.max_failed_file_runs]
    return [
        dg.RunRequest(
            run_key=f"{batch_id}:failed:{key}",
            job_name=job_name,
            partition_key=key,
            tags={FAILED_IN_BATCH_TAG: batch_id, PRIORITY_TAG: FAILED_FILE_RUN_PRIORITY},
        )
        for key in keys
    ]


def _with_failed_file_runs(
    result: dg.SensorResult | dg.SkipReason, runs: list[dg.RunRequest], cursor: SensorCursor
) -> dg.SensorResult | dg.SkipReason:
    """Add the failed-file runs to a tick's result and mark the last batch reported."""
    if isinstance(result, dg.SkipReason):
        if not runs:
            return result
        marked = replace(cursor, failures_reported=cursor.batch_id)
        return dg.SensorResult(run_requests=runs, cursor=marked.serialize())
    after = SensorCursor.parse(result.cursor) if result.cursor else cursor
    marked = replace(after, failures_reported=cursor.batch_id)
    requests = [*(result.run_requests or []), *runs]
    return dg.SensorResult(
        run_requests=requests or None,
        skip_reason=None if requests else result.skip_reason,
        dynamic_partitions_requests=result.dynamic_partitions_requests,
        cursor=marked.serialize(),
    )


def _requested_paths(store: ContentStore, result: dg.SensorResult | dg.SkipReason) -> set[str]:
    """Return the paths of the batch a tick requested, which need no failed-file run."""
    if isinstance(result, dg.SkipReason) or not result.run_requests:
        return set()
    batch = store.get_batch(result.run_requests[0].tags[BATCH_TAG])
    items = batch.items if batch else []
    return {item["path"] for item in items} | {
        item["previous_path"] for item in items if item.get("previous_path")
    }


def _plan_tick(
    context: dg.SensorEvaluationContext,
    wryte: WryteResource,
    partitions: dg.DynamicPartitionsDefinition,
    cursor: SensorCursor,
    store: ContentStore,
    sync_job_name: str,
) -> dg.SensorResult | dg.SkipReason:
    """Check the head, diff the tree and request a batch's run when anything changed."""
    source = wryte.open_source()
    source.branch = source.branch or cursor.branch
    etag = cursor.etag if _settled(store, cursor) else None
    try:
        head = source.resolve_head(etag)
    except RateLimitExhaustedError as error:
        reset = time.strftime("%H:%M:%S", time.gmtime(error.reset_at))
        return dg.SkipReason(f"{RATE_LIMIT_SKIP_PREFIX}: spent until {reset} UTC ({error})")
    if head.commit_sha is None:
        return dg.SensorResult(
            skip_reason=f"branch head {(cursor.commit_sha or '')[:7]} unchanged",
            dynamic_partitions_requests=missing_partitions(context.instance, partitions, store),
            cursor=context.cursor,
        )

    settings = wryte.settings()
    budget = source.rate_budget()
    available = _available_requests(budget, settings)
    if available is not None and available < 2:
        return dg.SkipReason(_budget_message(budget, settings, "no tree listed"))

    entries = source.list_tree(head.commit_sha)
    _warn_about_twins(context, [entry.path for entry in entries])
    plan = plan_sync(
        entries,
        store.stored_blobs(),
        store.settled_blobs(),
        settings.path_patterns,
        settings.max_paths_per_tick,
    )
    if available is not None:
        fitted = fit_budget(plan, available - 1, settings.tarball_threshold)
        if fitted.pending > plan.pending:
            deferred = fitted.pending - plan.pending
            context.log.warning(_budget_message(budget, settings, f"{deferred} files deferred"))
        plan = fitted
    context.log.info("tick %s: %s", head.commit_sha[:7], describe_plan(plan))
    if not plan.items:
        settled = SensorCursor(
            head.commit_sha, head.etag, cursor.batch_id, complete=True, branch=source.branch
        )
        return dg.SensorResult(
            skip_reason=f"tree at {head.commit_sha[:7]} matches the content table",
            dynamic_partitions_requests=missing_partitions(context.instance, partitions, store),
            cursor=settled.serialize(),
        )

    batch = create_batch(store, source, cursor.commit_sha, head.commit_sha, plan)
    next_cursor = SensorCursor(
        head.commit_sha, head.etag, batch.id, plan.complete, branch=source.branch
    )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=batch.id, job_name=sync_job_name, tags={BATCH_TAG: batch.id})
        ],
        dynamic_partitions_requests=partition_requests(context.instance, partitions, plan.items),
        cursor=next_cursor.serialize(),
    )


def describe_plan(plan: Plan) -> str:
    """Summarise a plan for the tick log, such as ``20 upsert, 1 delete, 972 unchanged``."""
    counts = Counter(item.action for item in plan.items)
    parts = [f"{count} {action}" for action, count in sorted(counts.items())]
    parts.append(f"{plan.unchanged} unchanged")
    if plan.pending:
        parts.append(f"{plan.pending} left for later ticks")
    return ", ".join(parts)


def partition_requests(
    instance: dg.DagsterInstance,
    partitions: dg.DynamicPartitionsDefinition,
    items: list[PlannedItem],
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """Add partitions for new paths and delete those of paths that left the repository."""
    assert partitions.name is not None
    existing = set(instance.get_dynamic_partitions(partitions.name))
    added = sorted(
        {partition_key_for_path(item.path) for item in items if item.action != "delete"} - existing
    )
    gone = {item.path for item in items if item.action == "delete"}
    gone.update(item.previous_path for item in items if item.previous_path)
    deleted = sorted({partition_key_for_path(path) for path in gone} & existing)
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(partitions.build_add_request(added))
    if deleted:
        requests.append(partitions.build_delete_request(deleted))
    return requests


def missing_partitions(
    instance: dg.DagsterInstance, partitions: dg.DynamicPartitionsDefinition, store: ContentStore
) -> list[dg.AddDynamicPartitionsRequest]:
    """Add partitions for stored documents the Dagster instance does not know yet.

    A new instance (another DAGSTER_HOME) over an already synced table would otherwise have no
    file partitions to materialize or backfill until each file changes.
    """
    assert partitions.name is not None
    existing = set(instance.get_dynamic_partitions(partitions.name))
    keys = {partition_key_for_path(path) for path in store.stored_blobs()}
    missing = sorted(keys - existing)
    return [partitions.build_add_request(missing)] if missing else []


def _warn_about_twins(context: dg.SensorEvaluationContext, paths: list[str]) -> None:
    twins = find_path_twins(paths)
    if twins:
        listed = "; ".join(" and ".join(repr(path) for path in group) for group in twins[:20])
        context.log.warning(
            "%d groups of paths differ only in case or Unicode form, each stored under its "
            "exact path: %s",
            len(twins),
            listed,
        )


def _available_requests(budget: RateBudget | None, settings: Settings) -> int | None:
    if budget is None:
        return None
    return budget.remaining - settings.reserve_for(budget.limit)


def _budget_message(budget: RateBudget | None, settings: Settings, consequence: str) -> str:
    assert budget is not None
    reserve = settings.reserve_for(budget.limit)
    reset = time.strftime("%H:%M:%S", time.gmtime(budget.reset_at))
    return (
        f"{RATE_LIMIT_SKIP_PREFIX}: {budget.remaining} of {budget.limit} requests left, "
        f"{reserve} kept in reserve, reset at {reset} UTC; {consequence}, the rest waits for "
        "a later tick"
    )


def _settled(store: ContentStore, cursor: SensorCursor) -> bool:
    """Tell whether the last batch finished with nothing left to retry."""
    if not cursor.complete or cursor.batch_id is None:
        return False
    batch = store.get_batch(cursor.batch_id)
    if batch is None or batch.finished_at is None:
        return False
    return store.retryable_failures(batch.id) == 0


def _run_in_flight(
    context: dg.SensorEvaluationContext, store: ContentStore, settings: Settings, batch_id: str
) -> bool:
    """Tell whether the batch's run is still queued or working.

    A run whose worker died (``kill -9``, a lost machine) stays STARTED in Dagster. When its
    batch is unfinished and no live lease belongs to it, the run is reported failed, so the
    next tick plans the remaining work instead of waiting for run monitoring.
    """
    instance = context.instance
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch_id}), limit=5)
    in_flight = [run for run in runs if run.status not in _FINISHED_STATUSES]
    if not in_flight:
        return False
    batch = store.get_batch(batch_id)
    lease = SyncLease(store, lease_key(settings.repository, settings.branch), owner="")
    for run in in_flight:
        if _worker_is_dead(instance, run, batch, lease.holder()):
            message = f"run {run.run_id} of batch {batch_id} lost its worker; reported failed"
            context.log.warning(message)
            instance.report_run_failed(run, message)
        else:
            return True
    return False


def _worker_is_dead(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    batch: Batch | None,
    holder: LeaseHolder | None,
) -> bool:
    if run.status != dg.DagsterRunStatus.STARTED or batch is None or batch.finished_at:
        return False
    if holder is not None and holder.owner == run.run_id:
        return holder.is_dead()
    record = instance.get_run_record_by_id(run.run_id)
    started = record.start_time if record else None
    return started is not None and time.time() - started > LEASE_SECONDS


sync_job = build_sync_job(DEFAULT_ASSETS, DEFAULT_CHECKS)
document_job = build_document_job(DEFAULT_ASSETS)
repository_sensor = build_sensor(DEFAULT_ASSETS, sync_job, document_job)
