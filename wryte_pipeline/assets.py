"""Assets: a partition per Markdown file, the content table, the report, the published set.

A sync run is shaped by batch, not by file: the sensor puts every changed path of a tick into
one run of ``content_table``, which applies them in one pass and logs a materialization of
``markdown_document`` for each path. The partition stays the unit of record (each path has its
own materialization and outcome row) while the run is the unit of execution, because a Dagster
run costs seconds of overhead and a file costs milliseconds. ``markdown_document`` can still be
materialized alone, or as a backfill, for chosen paths.

``build_assets`` makes one set per repository. The single repository configured by ``WRYTE_*``
variables gets unprefixed keys; each repository of a config file gets its name as key prefix.
"""

import warnings
from dataclasses import dataclass
from typing import Any, TypeAlias

import dagster as dg

from wryte_pipeline.batches import (
    BATCH_TAG,
    FAILED_IN_BATCH_TAG,
    apply_batch,
    batch_for_run,
    item_for_path,
    raise_for_failures,
    raise_recorded_failures,
    read_head,
    wait_for_rate_limit,
)
from wryte_pipeline.partitions import PARTITIONS_NAME, path_for_partition_key
from wryte_pipeline.report import build_report, render_markdown
from wryte_pipeline.repositories import RepositoryConfig
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.store import utc_now

__all__ = [
    "BATCH_TAG",
    "FAILED_IN_BATCH_TAG",
    "PUBLISHED_REFRESH_KEY",
    "AssetJob",
    "RepositoryAssets",
    "build_assets",
]

# Return type of `dg.define_asset_job`, a class that Dagster does not export.
AssetJob: TypeAlias = Any

# Key under which the time of the last `published_documents` rebuild is kept.
PUBLISHED_REFRESH_KEY = "published_documents:refreshed_at"

# BackfillPolicy is marked beta in Dagster 1.13; the warning would print on every CLI start.
warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)

# Transient failures (5xx, resets, rate limits) get three attempts: 1.5 s, then 3 s between.
DOCUMENT_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=1.5, backoff=dg.Backoff.EXPONENTIAL)

# A batch step that fails as a whole (lost database connection, tree request failed) is
# retried the same way. The retry resumes the batch and skips the files already done.
BATCH_RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=1.5, backoff=dg.Backoff.EXPONENTIAL)


@dataclass(frozen=True)
class RepositoryAssets:
    """The assets of one repository and the partitions of its files."""

    config: RepositoryConfig
    partitions: dg.DynamicPartitionsDefinition
    markdown_document: dg.AssetsDefinition
    content_table: dg.AssetsDefinition
    batch_report: dg.AssetsDefinition
    published_documents: dg.AssetsDefinition

    @property
    def all(self) -> list[dg.AssetsDefinition]:
        """Return every asset of the repository."""
        return [
            self.markdown_document,
            self.content_table,
            self.batch_report,
            self.published_documents,
        ]


def build_assets(config: RepositoryConfig) -> RepositoryAssets:
    """Define the assets of one repository."""
    partitions_name = config.qualified(PARTITIONS_NAME)
    partitions = dg.DynamicPartitionsDefinition(name=partitions_name)
    prefix = config.key_prefix
    group = config.name or "content"
    document_key = dg.AssetKey([*prefix, "markdown_document"])

    @dg.asset(
        key=document_key,
        partitions_def=partitions,
        retry_policy=DOCUMENT_RETRY_POLICY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=group,
        kinds={"github", "markdown"},
    )
    def markdown_document(
        context: dg.AssetExecutionContext, wryte: WryteResource
    ) -> dg.MaterializeResult[None]:
        """One Markdown file of the repository, parsed and stored as a row of `documents`.

        Materializing a partition fetches that path at the branch head and upserts it, or
        removes its row when the path is gone. A backfill over many partitions is one run.
        The sensor also runs it for each file a batch failed, to mark the partition failed.
        """
        return materialize_documents(context, wryte.for_repository(config))

    @dg.asset(
        key=[*prefix, "content_table"],
        deps=[markdown_document],
        retry_policy=BATCH_RETRY_POLICY,
        group_name=group,
        kinds={"sql"},
    )
    def content_table(
        context: dg.AssetExecutionContext, wryte: WryteResource
    ) -> dg.MaterializeResult[None]:
        """The `documents` table, equal to the repository's Markdown at the branch head.

        In a sensor's run it applies the batch named by the `wryte/batch_id` tag. Materialized
        by hand, it plans a batch from the branch head itself, capped like a sensor tick.
        """
        return materialize_content(
            context, wryte.for_repository(config), partitions_name, document_key
        )

    @dg.asset(key=[*prefix, "batch_report"], deps=[content_table], group_name=group)
    def batch_report(
        context: dg.AssetExecutionContext, wryte: WryteResource
    ) -> dg.MaterializeResult[None]:
        """Counts, duration, GitHub requests and failed files of the latest sync batch."""
        return materialize_report(context, wryte.for_repository(config))

    @dg.asset(key=[*prefix, "published_documents"], deps=[content_table], group_name=group)
    def published_documents(
        context: dg.AssetExecutionContext, wryte: WryteResource
    ) -> dg.MaterializeResult[None]:
        """The `published_documents` table: what a site shows now.

        Drafts, documents whose publish time (`publish_at`, else `date`) is still ahead and
        expired documents are left out. The publish schedule rebuilds it at each minute a
        publish or expiry time falls due, so a scheduled post appears on time with no push.
        """
        return materialize_published(context, wryte.for_repository(config))

    return RepositoryAssets(
        config, partitions, markdown_document, content_table, batch_report, published_documents
    )


def materialize_documents(
    context: dg.AssetExecutionContext, wryte: WryteResource
) -> dg.MaterializeResult[None]:
    """Fetch, parse and store the run's file partitions at the branch head."""
    paths = [path_for_partition_key(key) for key in context.partition_keys]
    store = wryte.open_store()
    # `get_tag` rather than `context.run`, which a directly invoked asset does not have.
    if context.op_execution_context.get_tag(FAILED_IN_BATCH_TAG):
        raise_recorded_failures(store, paths)
    source = wryte.open_source()
    commit_sha, entries = read_head(source)
    items = [item_for_path(path, entries) for path in paths]
    batch = store.create_batch(
        repo=source.name,
        base_commit=None,
        head_commit=commit_sha,
        items=[item.to_json() for item in items],
        complete=True,
        requests_used=source.requests_used,
    )
    outcomes = apply_batch(context, batch, source, store, wryte, document_key=None)
    wait_for_rate_limit(context, outcomes, wryte.settings().max_rate_limit_wait_seconds)
    raise_for_failures(outcomes)
    return dg.MaterializeResult(
        metadata={"paths": len(paths), "commit_sha": commit_sha, "batch_id": batch.id}
    )


def materialize_content(
    context: dg.AssetExecutionContext,
    wryte: WryteResource,
    partitions_name: str,
    document_key: dg.AssetKey,
) -> dg.MaterializeResult[None]:
    """Apply the run's batch and log one materialization or observation per file."""
    store = wryte.open_store()
    source = wryte.open_source()
    batch = batch_for_run(context, store, source, wryte, partitions_name)
    outcomes = apply_batch(context, batch, source, store, wryte, document_key=document_key)
    wait_for_rate_limit(context, outcomes, wryte.settings().max_rate_limit_wait_seconds)
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


def materialize_report(
    context: dg.AssetExecutionContext, wryte: WryteResource
) -> dg.MaterializeResult[None]:
    """Summarise the run's batch, or the latest one, as metadata with a Markdown table."""
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


def materialize_published(
    context: dg.AssetExecutionContext, wryte: WryteResource
) -> dg.MaterializeResult[None]:
    """Rebuild `published_documents` for the current time."""
    store = wryte.open_store()
    now = utc_now()
    count = store.refresh_published(now)
    store.save_cursor(PUBLISHED_REFRESH_KEY, now.isoformat())
    context.log.info("%d documents published as of %s", count, now.isoformat())
    return dg.MaterializeResult(metadata={"published": count, "as_of": now.isoformat()})


DEFAULT_ASSETS = build_assets(RepositoryConfig())
markdown_document = DEFAULT_ASSETS.markdown_document
content_table = DEFAULT_ASSETS.content_table
batch_report = DEFAULT_ASSETS.batch_report
published_documents = DEFAULT_ASSETS.published_documents
