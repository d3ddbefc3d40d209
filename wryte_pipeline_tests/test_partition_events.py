"""Partition events written a chunk at a time: one event per file, on every instance storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from wryte_pipeline.partition_events import PartitionEventLog, partition_event
from wryte_pipeline.partitions import partition_key_for_path
from wryte_pipeline.sync import FileOutcome
from wryte_pipeline_tests.helpers import PROJECT_ROOT, instance_at, postgres_dagster_home

DOCUMENT_KEY = dg.AssetKey("markdown_document")


def outcomes_for(count: int) -> list[FileOutcome]:
    """Every fifth file failed, every seventh was skipped, the rest were stored."""
    outcomes = []
    for number in range(count):
        path = f"posts/{number:03d} note.md"
        if number % 5 == 0:
            error = f"{path}:2: invalid YAML front matter"
            outcomes.append(FileOutcome(path, "failed", f"{number:040x}", 1, error=error))
        elif number % 7 == 0:
            outcomes.append(FileOutcome(path, "skipped", f"{number:040x}", 0, error="too large"))
        else:
            outcomes.append(FileOutcome(path, "succeeded", f"{number:040x}", 1))
    return outcomes


def log_in_chunks(instance: dg.DagsterInstance, outcomes: list[FileOutcome], chunk: int) -> None:
    """Run one step that adds the outcomes and flushes after every ``chunk`` of them."""

    @dg.asset(key="content_table")
    def content_table(context) -> None:
        events = PartitionEventLog(context, DOCUMENT_KEY)
        for index, outcome in enumerate(outcomes, start=1):
            events.add(outcome)
            if index % chunk == 0:
                events.flush()
        events.flush()

    assert dg.materialize([content_table], instance=instance).success


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite-stock",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-stock", marks=pytest.mark.postgres),
    ]
)
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """Yield an instance on the pooled and on Dagster's own storages, SQLite and PostgreSQL."""
    home = tmp_path / "dagster-home"
    if request.param.startswith("postgres"):
        url = request.getfixturevalue("postgres_instance_url")
        storage = "pooled" if request.param == "postgres" else "dagster-postgres"
        postgres_dagster_home(home, url, storage)
    else:
        home.mkdir()
        config = "telemetry:\n  enabled: false\n"
        if request.param == "sqlite":
            config = (PROJECT_ROOT / "dagster.yaml").read_text(encoding="utf-8")
        (home / "dagster.yaml").write_text(config, encoding="utf-8")
    with instance_at(home) as opened:
        yield opened


def test_partition_events_one_per_file(instance):
    outcomes = outcomes_for(450)
    stored = [outcome for outcome in outcomes if outcome.status == "succeeded"]

    log_in_chunks(instance, outcomes, chunk=200)

    expected = {partition_key_for_path(outcome.path) for outcome in stored}
    assert instance.get_materialized_partitions(DOCUMENT_KEY) == expected
    materializations = instance.fetch_materializations(DOCUMENT_KEY, limit=1000).records
    assert len(materializations) == len(stored)
    observations = instance.fetch_observations(DOCUMENT_KEY, limit=1000).records
    assert len(observations) == len(outcomes) - len(stored)


def test_partition_events_keep_metadata(instance):
    outcomes = outcomes_for(30)

    log_in_chunks(instance, outcomes, chunk=8)

    by_partition = {
        record.partition_key: record.asset_materialization.metadata
        for record in instance.fetch_materializations(DOCUMENT_KEY, limit=100).records
        if record.asset_materialization is not None
    }
    stored = outcomes[1]
    metadata = by_partition[partition_key_for_path(stored.path)]
    assert metadata["path"].value == stored.path
    assert metadata["blob_sha"].value == stored.blob_sha
    observed = {
        record.partition_key: record.event_log_entry.asset_observation.metadata
        for record in instance.fetch_observations(DOCUMENT_KEY, limit=100).records
        if record.event_log_entry.asset_observation is not None
    }
    failed = observed[partition_key_for_path(outcomes[0].path)]
    assert failed["status"].value == "failed"
    assert failed["error"].value == outcomes[0].error


def test_partition_events_empty_flush(instance):
    log_in_chunks(instance, [], chunk=10)

    assert instance.get_materialized_partitions(DOCUMENT_KEY) == set()


def invoke_directly(document_key: dg.AssetKey | None, outcomes: list[FileOutcome]) -> list:
    """Invoke an asset with ``build_asset_context`` and return the events it logged."""

    @dg.asset(key="content_table")
    def content_table(context) -> None:
        events = PartitionEventLog(context, document_key)
        for outcome in outcomes:
            events.add(outcome)
        events.flush()

    context = dg.build_asset_context()
    content_table(context)
    return list(context.op_execution_context.get_events())


def test_partition_events_without_key_log_nothing():
    logged = invoke_directly(None, [FileOutcome("a.md", "succeeded", "0" * 40, 1)])

    assert logged == []


def test_partition_events_direct_invocation():
    outcomes = [
        FileOutcome("a.md", "succeeded", "0" * 40, 1),
        FileOutcome("b.md", "failed", "1" * 40, 1, error="b.md:1: broken"),
    ]

    logged = invoke_directly(DOCUMENT_KEY, outcomes)

    assert [type(event) for event in logged] == [dg.AssetMaterialization, dg.AssetObservation]
    assert [event.partition for event in logged] == ["a.md", "b.md"]


def test_partition_event_kinds():
    stored = partition_event(DOCUMENT_KEY, FileOutcome("a.md", "succeeded", "0" * 40, 1))
    failed = partition_event(
        DOCUMENT_KEY, FileOutcome("b.md", "failed", "1" * 40, 1, error="b.md:1: broken")
    )

    assert isinstance(stored, dg.AssetMaterialization)
    assert stored.partition == "a.md"
    assert isinstance(failed, dg.AssetObservation)
    assert failed.metadata["error"].value == "b.md:1: broken"


def test_partition_events_written_in_batches(instance, monkeypatch):
    storage = instance.event_log_storage
    batch_sizes: list[int] = []
    store_event_batch = storage.store_event_batch

    def counting_store_event_batch(events):
        batch_sizes.append(len(events))
        store_event_batch(events)

    monkeypatch.setattr(storage, "store_event_batch", counting_store_event_batch)
    outcomes = outcomes_for(450)
    stored = sum(1 for outcome in outcomes if outcome.status == "succeeded")

    log_in_chunks(instance, outcomes, chunk=200)

    first_chunk_stored = sum(1 for outcome in outcomes[:200] if outcome.status == "succeeded")
    assert sum(batch_sizes) == len(outcomes)
    assert first_chunk_stored in batch_sizes, "a chunk's materializations form one batch"
    assert len(instance.get_materialized_partitions(DOCUMENT_KEY)) == stored
