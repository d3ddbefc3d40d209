"""Command line: ``sync`` runs the sensor and its runs in this process; ``status`` reads progress.

``sync`` evaluates the same repository sensor the Dagster daemon runs, applies its partition
requests, and executes each requested run in-process, tick after tick, until the repository is
fully synced. Progress lines are read from the outcome rows while the run works.

Exit status: 0 when every file succeeded, 1 when some files failed (they are listed) or wait
for the rate limit, 2 for a configuration or authentication error.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NoReturn, TextIO

import dagster as dg

from wryte_pipeline.assets import BATCH_TAG
from wryte_pipeline.errors import (
    AuthenticationError,
    ConfigurationError,
    RepositoryNotFoundError,
    WryteError,
)
from wryte_pipeline.instance_storage import check_postgres_driver
from wryte_pipeline.partitions import PARTITIONS_NAME, partition_key_for_path
from wryte_pipeline.report import build_report, render_progress, render_text
from wryte_pipeline.repositories import RepositoryConfig, load_repository_configs
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.schedules import publish_is_due
from wryte_pipeline.sensors import (
    DOCUMENT_JOB_NAME,
    RATE_LIMIT_SKIP_PREFIX,
    SensorCursor,
    failed_file_runs,
)
from wryte_pipeline.settings import Settings
from wryte_pipeline.store import Batch, ContentStore, utc_now

EXIT_OK = 0
EXIT_FILES_FAILED = 1
EXIT_CONFIGURATION = 2
PROGRESS_INTERVAL_SECONDS = 1.0
FINISH_WAIT_SECONDS = 5.0
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Failed-file runs fail by design, and the batch report already lists their errors.
SILENT_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def run() -> NoReturn:
    """Run the command line and exit the process with its status."""
    status = main()
    # The interpreter's last garbage collection walks every object that Dagster and pandas
    # loaded (about 0.6 s) only to free memory that exiting frees anyway. Frozen objects are
    # left out of it. `main` does not freeze, because tests call it many times in one process.
    gc.freeze()
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the command, and return the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args, sys.stdout))
    except Exception as error:  # noqa: BLE001 - report our own errors on one line
        wryte_error = _find_wryte_error(error)
        if wryte_error is None:
            raise
        print(f"error: {wryte_error}", file=sys.stderr)
        return _exit_status_for(wryte_error)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wryte_pipeline", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    sync = commands.add_parser("sync", help="sync the repository into the content table")
    sync.add_argument(
        "--max-ticks",
        type=int,
        default=100,
        help="most sensor ticks to run before stopping (default 100)",
    )
    sync.add_argument(
        "--repository", help="name of one repository in WRYTE_CONFIG (default: all of them)"
    )
    sync.set_defaults(handler=run_sync)
    status = commands.add_parser("status", help="print a batch's progress from outcome rows")
    status.add_argument("batch", nargs="?", help="batch id (default: the latest batch)")
    status.add_argument("--watch", action="store_true", help="redraw until the batch ends")
    status.add_argument(
        "--repository", help="name of the repository in WRYTE_CONFIG (default: the first)"
    )
    status.set_defaults(handler=run_status)
    keys = commands.add_parser("partition-key", help="print the partition key of each path")
    keys.add_argument("paths", nargs="+", help="file paths in the repository")
    keys.set_defaults(handler=run_partition_key)
    return parser


def run_sync(args: argparse.Namespace, out: TextIO) -> int:
    """Sync each selected repository, tick after tick, until nothing is left to do."""
    from wryte_pipeline.definitions import defs

    statuses = []
    with _open_instance() as instance:
        for config in _selected_configs(args.repository):
            if config.name:
                out.write(f"repository {config.name}: {config.repo}\n")
            statuses.append(_sync_repository(defs, instance, config, args.max_ticks, out))
    return max(statuses)


def _sync_repository(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    config: RepositoryConfig,
    max_ticks: int,
    out: TextIO,
) -> int:
    resource = WryteResource().for_repository(config)
    store = resource.open_store()
    settings = resource.settings()
    cursor_key = f"cli:{settings.repository}@{settings.branch or ''}"
    cursor = store.load_cursor(cursor_key)
    batches: list[Batch] = []
    work_left = True
    for _tick in range(max_ticks):
        result = _evaluate_sensor(defs, instance, config, cursor)
        if isinstance(result, dg.SensorResult):
            cursor = result.cursor or cursor
            _apply_partition_requests(instance, result.dynamic_partitions_requests or [])
        requests = (result.run_requests if isinstance(result, dg.SensorResult) else None) or []
        _execute_failed_file_runs(defs, instance, [r for r in requests if BATCH_TAG not in r.tags])
        batch_requests = [request for request in requests if BATCH_TAG in request.tags]
        if not batch_requests:
            reason = _print_skip(result, out)
            work_left = reason.startswith(RATE_LIMIT_SKIP_PREFIX)
            break
        job_name = config.qualified("sync_job")
        batch = _execute_run(defs, instance, store, job_name, batch_requests[0], out)
        batches.append(batch)
        store.save_cursor(cursor_key, cursor or "")
        if SensorCursor.parse(cursor).complete:
            work_left = False
            break
    cursor = _report_last_failures(defs, instance, config, store, settings, cursor)
    if not batches and not work_left:
        _publish_if_due(defs, instance, config, store, out)
    if cursor:
        store.save_cursor(cursor_key, cursor)
    status = _print_reports(store, batches, out)
    if work_left:
        out.write("the repository is not fully synced yet: run sync again later\n")
        return EXIT_FILES_FAILED
    return status


def _selected_configs(name: str | None) -> list[RepositoryConfig]:
    configs = load_repository_configs()
    if name is None:
        return configs
    chosen = [config for config in configs if config.name == name]
    if not chosen:
        names = ", ".join(repr(config.name) for config in configs if config.name) or "none"
        raise ConfigurationError(
            f"repository {name!r} not found in WRYTE_CONFIG; configured repositories: {names}"
        )
    return chosen


def run_status(args: argparse.Namespace, out: TextIO) -> int:
    """Print a batch's progress, redrawing with ``--watch`` until every file has an outcome."""
    config = _selected_configs(args.repository)[0]
    store = WryteResource().for_repository(config).open_store()
    batch = _find_batch(store, args.batch, args.watch, out)
    settle_deadline = None
    while True:
        batch = store.get_batch(batch.id) or batch
        report = build_report(store, batch)
        out.write(f"\r{_progress_bar(report.done, report.total)} {render_progress(report)}")
        out.flush()
        if not args.watch or batch.finished_at:
            break
        if report.done >= report.total:
            # The run writes the finish time just after the last outcome, so wait a moment for it.
            settle_deadline = settle_deadline or time.monotonic() + FINISH_WAIT_SECONDS
            if time.monotonic() > settle_deadline:
                break
        time.sleep(PROGRESS_INTERVAL_SECONDS)
    out.write("\n" + render_text(report) + "\n")
    return EXIT_FILES_FAILED if report.failed else EXIT_OK


def _find_batch(store: ContentStore, batch_id: str | None, watch: bool, out: TextIO) -> Batch:
    """Return the named batch or the latest one. With ``watch``, wait for a first batch."""
    if batch_id:
        batch = store.get_batch(batch_id)
        if batch is None:
            raise ConfigurationError(f"batch {batch_id!r} not found")
        return batch
    batch = store.latest_batch()
    if batch is None and watch:
        out.write("waiting for the first sync batch (Ctrl-C stops)\n")
        out.flush()
        while batch is None:
            time.sleep(PROGRESS_INTERVAL_SECONDS)
            batch = store.latest_batch()
    if batch is None:
        raise ConfigurationError(
            "no sync batch found yet: run `python -m wryte_pipeline sync` first"
        )
    return batch


def run_partition_key(args: argparse.Namespace, out: TextIO) -> int:
    """Print the partition key of each path, for `dagster asset materialize --partition`."""
    for path in args.paths:
        out.write(partition_key_for_path(path) + "\n")
    return EXIT_OK


def _open_instance() -> dg.DagsterInstance:
    if not os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.ephemeral()
    instance = dg.DagsterInstance.get()
    # dagster-postgres's own storage class does not check its driver, so the check runs here.
    postgres_url = getattr(instance.event_log_storage, "postgres_url", None)
    if isinstance(postgres_url, str):
        try:
            check_postgres_driver(postgres_url)
        except ConfigurationError:
            instance.dispose()
            raise
    return instance


def _evaluate_sensor(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    config: RepositoryConfig,
    cursor: str | None,
) -> dg.SensorResult | dg.SkipReason:
    sensor = defs.resolve_sensor_def(config.qualified("repository_sensor"))
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"wryte": WryteResource()}, definitions=defs
    ) as context:
        result: Any = sensor(context)
    return result  # type: ignore[no-any-return]


def _apply_partition_requests(instance: dg.DagsterInstance, requests: Sequence[Any]) -> None:
    for request in requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        elif isinstance(request, dg.DeleteDynamicPartitionsRequest):
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def _execute_run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    store: ContentStore,
    job_name: str,
    request: dg.RunRequest,
    out: TextIO,
) -> Batch:
    batch_id = request.tags[BATCH_TAG]
    batch = store.get_batch(batch_id)
    assert batch is not None, f"sensor created no batch row for {batch_id}"
    out.write(f"batch {batch.id}: {batch.total} files to sync at {batch.head_commit[:7]}\n")
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_progress, args=(store, batch, stop, out), daemon=True)
    watcher.start()
    try:
        job = defs.resolve_job_def(job_name)
        result = job.execute_in_process(
            instance=instance,
            tags=dict(request.tags),
            run_config=QUIET_RUN_CONFIG,
            raise_on_error=False,
        )
    finally:
        stop.set()
        watcher.join()
    if not result.success:
        _raise_run_failure(result)
    return store.get_batch(batch.id) or batch


def _publish_if_due(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    config: RepositoryConfig,
    store: ContentStore,
    out: TextIO,
) -> None:
    """Rebuild `published_documents` when a publish or expiry time fell due since the last build.

    A sync that applied a batch has rebuilt it already. Without this, a scheduled post would
    wait for the daemon's publish schedule or the next push.
    """
    if not publish_is_due(store, utc_now()):
        return
    result = defs.resolve_job_def(config.qualified("publish_job")).execute_in_process(
        instance=instance, run_config=QUIET_RUN_CONFIG, raise_on_error=False
    )
    if not result.success:
        _raise_run_failure(result)
    out.write("published_documents rebuilt: a publish or expiry time fell due\n")


def _report_last_failures(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    config: RepositoryConfig,
    store: ContentStore,
    settings: Settings,
    cursor: str | None,
) -> str | None:
    """Run the failed-file runs of the last batch now, as the sensor's next tick would.

    Calling the sensor once more would do the same but spend another head request.
    """
    state = SensorCursor.parse(cursor)
    if not state.batch_id or state.batch_id == state.failures_reported:
        return cursor
    requests = failed_file_runs(
        instance,
        store,
        settings,
        config.qualified(PARTITIONS_NAME),
        state.batch_id,
        config.qualified(DOCUMENT_JOB_NAME),
    )
    _execute_failed_file_runs(defs, instance, requests)
    return replace(state, failures_reported=state.batch_id).serialize()


def _execute_failed_file_runs(
    defs: dg.Definitions, instance: dg.DagsterInstance, requests: Sequence[dg.RunRequest]
) -> None:
    """Execute runs that fail on purpose with a file's recorded error.

    An ephemeral instance is gone when the command ends, so it gets none.
    """
    if instance.is_ephemeral:
        return
    for request in requests:
        assert request.job_name is not None
        defs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=dict(request.tags),
            run_config=SILENT_RUN_CONFIG,
            raise_on_error=False,
        )


def _watch_progress(store: ContentStore, batch: Batch, stop: threading.Event, out: TextIO) -> None:
    last = ""
    while True:
        finished = stop.wait(PROGRESS_INTERVAL_SECONDS)
        line = render_progress(build_report(store, batch))
        if line != last:
            out.write(line + "\n")
            out.flush()
            last = line
        if finished:
            return


def _raise_run_failure(result: Any) -> None:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            error = event.step_failure_data.error
            message = error.message.strip() if error else "step failed"
            raise WryteError(f"sync run {result.run_id} failed: {message}")
    raise WryteError(f"sync run {result.run_id} failed; see the run's logs in Dagster")


def _print_skip(result: dg.SensorResult | dg.SkipReason, out: TextIO) -> str:
    reason = result.skip_message if isinstance(result, dg.SkipReason) else None
    if isinstance(result, dg.SensorResult) and result.skip_reason:
        reason = result.skip_reason.skip_message
    if reason:
        out.write(f"nothing to sync: {reason}\n")
    return reason or ""


def _print_reports(store: ContentStore, batches: Sequence[Batch], out: TextIO) -> int:
    failed = 0
    deferred = 0
    for batch in batches:
        report = build_report(store, batch)
        failed += report.failed
        deferred += report.deferred
        out.write(render_text(report) + "\n")
    out.write(f"documents in the content table: {store.document_count()}\n")
    if deferred:
        out.write(
            f"{deferred} files deferred by the GitHub rate limit: sync again after it resets\n"
        )
    return EXIT_FILES_FAILED if failed or deferred else EXIT_OK


def _progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = width * done // total if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _find_wryte_error(error: BaseException | None) -> WryteError | None:
    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, WryteError):
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def _exit_status_for(error: WryteError) -> int:
    if isinstance(error, ConfigurationError | AuthenticationError | RepositoryNotFoundError):
        return EXIT_CONFIGURATION
    return EXIT_FILES_FAILED
