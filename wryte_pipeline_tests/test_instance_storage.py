"""The pooled instance storages: same records as Dagster's classes, open connections reused."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from wryte_pipeline.errors import ConfigurationError
from wryte_pipeline.instance_storage import check_postgres_driver
from wryte_pipeline.instance_storage.sqlite import (
    MAX_OPEN_SHARDS,
    PooledSqliteEventLogStorage,
)
from wryte_pipeline_tests.conftest import POSTGRES_ADMIN_URL
from wryte_pipeline_tests.helpers import PROJECT_ROOT, postgres_dagster_home

DOCUMENT_KEY = dg.AssetKey("document")


def sqlite_home(path: Path, *, pooled: bool = True) -> Path:
    """Create a DAGSTER_HOME with the project's dagster.yaml, or with Dagster's default storage."""
    path.mkdir(parents=True, exist_ok=True)
    config = (PROJECT_ROOT / "dagster.yaml").read_text(encoding="utf-8")
    if not pooled:
        config = "telemetry:\n  enabled: false\n"
    (path / "dagster.yaml").write_text(config, encoding="utf-8")
    return path


def open_instance(home: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.get()


def log_documents(instance: dg.DagsterInstance, paths: list[str], failed: list[str]) -> None:
    """Run one step that logs a materialization per path and an observation per failure."""

    @dg.asset(key="batch")
    def batch(context) -> None:
        for path in paths:
            metadata = {"path": path, "status": "succeeded"}
            context.log_event(
                dg.AssetMaterialization(DOCUMENT_KEY, partition=path, metadata=metadata)
            )
        for path in failed:
            metadata = {"path": path, "status": "failed"}
            context.log_event(dg.AssetObservation(DOCUMENT_KEY, partition=path, metadata=metadata))

    result = dg.materialize([batch], instance=instance)
    assert result.success


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def pooled_instance(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """Yield an instance on each pooled storage, configured as the project documents it."""
    home = tmp_path / "dagster-home"
    if request.param == "sqlite":
        sqlite_home(home)
    else:
        postgres_dagster_home(home, request.getfixturevalue("postgres_instance_url"))
    with open_instance(home, monkeypatch) as instance:
        yield instance


def test_project_config_selects_pooled_sqlite(tmp_path, monkeypatch):
    with open_instance(sqlite_home(tmp_path / "home"), monkeypatch) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert (tmp_path / "home" / "history" / "runs" / "index.db").exists()


def test_sqlite_shards_sync_wal_normally(tmp_path, monkeypatch):
    with open_instance(sqlite_home(tmp_path / "home"), monkeypatch) as instance:
        log_documents(instance, ["a.md"], failed=[])
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)

        with storage.index_connection() as connection:
            journal_mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()

    assert journal_mode == "wal"
    assert synchronous == 1, "1 is NORMAL, 2 is FULL"


def test_pooled_storage_records_each_partition(pooled_instance):
    paths = [f"posts/{number}.md" for number in range(40)]

    log_documents(pooled_instance, paths, failed=["posts/broken.md"])

    materialized = pooled_instance.get_materialized_partitions(DOCUMENT_KEY)
    assert materialized == set(paths)
    records = pooled_instance.fetch_materializations(DOCUMENT_KEY, limit=100).records
    assert len(records) == len(paths)
    observations = pooled_instance.fetch_observations(DOCUMENT_KEY, limit=10).records
    assert [record.partition_key for record in observations] == ["posts/broken.md"]


def test_pooled_storage_second_run_adds_events(pooled_instance):
    log_documents(pooled_instance, ["a.md", "b.md"], failed=[])
    log_documents(pooled_instance, ["b.md", "c.md"], failed=[])

    assert pooled_instance.get_materialized_partitions(DOCUMENT_KEY) == {"a.md", "b.md", "c.md"}
    records = pooled_instance.fetch_materializations(DOCUMENT_KEY, limit=10).records
    assert len(records) == 4
    assert len(pooled_instance.get_run_records()) == 2


def test_sqlite_history_shared_with_dagster_storage(tmp_path, monkeypatch):
    home = sqlite_home(tmp_path / "home")
    with open_instance(home, monkeypatch) as instance:
        log_documents(instance, ["a.md", "b.md"], failed=[])

    sqlite_home(home, pooled=False)
    with open_instance(home, monkeypatch) as instance:
        assert not isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert instance.get_materialized_partitions(DOCUMENT_KEY) == {"a.md", "b.md"}
        log_documents(instance, ["c.md"], failed=[])

    sqlite_home(home)
    with open_instance(home, monkeypatch) as instance:
        assert instance.get_materialized_partitions(DOCUMENT_KEY) == {"a.md", "b.md", "c.md"}
        assert len(instance.get_run_records()) == 2


def test_sqlite_open_engines_bounded(tmp_path, monkeypatch):
    with open_instance(sqlite_home(tmp_path / "home"), monkeypatch) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        for number in range(MAX_OPEN_SHARDS + 3):
            log_documents(instance, [f"{number}.md"], failed=[])

        assert len(storage._engines) <= MAX_OPEN_SHARDS
        assert len(instance.get_materialized_partitions(DOCUMENT_KEY)) == MAX_OPEN_SHARDS + 3
        for record in instance.get_run_records():
            assert len(instance.all_logs(record.dagster_run.run_id)) > 0


def test_sqlite_wipe_closes_and_reopens(tmp_path, monkeypatch):
    home = sqlite_home(tmp_path / "home")
    with open_instance(home, monkeypatch) as instance:
        log_documents(instance, ["a.md"], failed=[])
        instance.wipe()

        assert list((home / "history" / "runs").glob("*-*.db")) == []
        log_documents(instance, ["b.md"], failed=[])
        assert instance.get_materialized_partitions(DOCUMENT_KEY) == {"b.md"}


def test_sqlite_threads_share_storage(tmp_path, monkeypatch):
    errors: list[BaseException] = []
    with open_instance(sqlite_home(tmp_path / "home"), monkeypatch) as instance:

        def report(thread: int) -> None:
            try:
                for number in range(25):
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(DOCUMENT_KEY, partition=f"{thread}-{number}.md")
                    )
            except BaseException as error:  # noqa: BLE001 - collected for the assert below
                errors.append(error)

        threads = [threading.Thread(target=report, args=(thread,)) for thread in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert len(instance.get_materialized_partitions(DOCUMENT_KEY)) == 100


def _report_in_child(home: str, path: str) -> None:
    with dg.DagsterInstance.from_config(home) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(DOCUMENT_KEY, partition=path))


def test_sqlite_forked_child_opens_own_connection(tmp_path, monkeypatch):
    home = sqlite_home(tmp_path / "home")
    with open_instance(home, monkeypatch) as instance:
        log_documents(instance, ["parent.md"], failed=[])
        storage = instance.event_log_storage
        assert isinstance(storage, PooledSqliteEventLogStorage)
        assert storage._engines, "the parent should hold an open engine before the fork"

        child = multiprocessing.get_context("fork").Process(
            target=_report_in_child, args=(str(home), "child.md")
        )
        child.start()
        child.join(timeout=60)

        assert child.exitcode == 0
        log_documents(instance, ["after.md"], failed=[])
        partitions = instance.get_materialized_partitions(DOCUMENT_KEY)
        assert partitions == {"parent.md", "child.md", "after.md"}


@pytest.mark.postgres
def test_postgres_reconnects_after_connection_killed(tmp_path, monkeypatch, postgres_instance_url):
    home = postgres_dagster_home(tmp_path / "home", postgres_instance_url)
    database = postgres_instance_url.rsplit("/", 1)[1]
    with open_instance(home, monkeypatch) as instance:
        log_documents(instance, ["a.md"], failed=[])

        # What a PostgreSQL restart does to the pooled connection: the server closes it.
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            killed = connection.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :database AND pid <> pg_backend_pid()"
                ),
                {"database": database},
            ).scalar_one()
        admin.dispose()

        assert killed >= 1
        log_documents(instance, ["b.md"], failed=[])
        assert instance.get_materialized_partitions(DOCUMENT_KEY) == {"a.md", "b.md"}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://dagster:s3cret@db.internal/dagster",
        "postgresql+psycopg://dagster:s3cret@db.internal/dagster",
    ],
)
def test_psycopg3_url_rejected_without_password(url):
    with pytest.raises(ConfigurationError) as raised:
        check_postgres_driver(url)

    message = str(raised.value)
    assert "s3cret" not in message
    assert "postgresql+psycopg2://dagster:***@db.internal/dagster" in message


def test_psycopg2_url_accepted():
    check_postgres_driver("postgresql+psycopg2://dagster@db.internal/dagster")
