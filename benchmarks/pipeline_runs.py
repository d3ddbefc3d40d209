"""The pipeline through its real Dagster path: ``python -m wryte_pipeline sync`` in a subprocess.

Each target is one Dagster instance (``DAGSTER_HOME`` with its own ``dagster.yaml``) and one
SQLite content store. The instance keeps its storage in SQLite files or in a PostgreSQL database
created for the benchmark and dropped at the end.
"""

from __future__ import annotations

import secrets
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from benchmarks.fake_server import loopback_environment
from benchmarks.proctree import BenchmarkError, Measurement, run_measured

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
INSTANCE_STORAGES = ("sqlite", "postgres")
# Suffix of a target that uses Dagster's own storage class in place of the pooled one.
STOCK_SUFFIX = "-stock"
SYNC_COMMAND = (sys.executable, "-m", "wryte_pipeline", "sync")
_TELEMETRY_OFF = "telemetry:\n  enabled: false\n"
# The storage block of the project's dagster.yaml, with the folder written out in place of
# `env: DAGSTER_HOME`, so the benchmark process can open the instance without that variable.
_POOLED_SQLITE_STORAGE = """\
storage:
  custom:
    module: wryte_pipeline.instance_storage.sqlite
    class: PooledSqliteStorage
    config:
      base_dir: "{dagster_home}"
"""
# psycopg2, not psycopg 3: dagster-postgres 0.29.27 sends `NOTIFY run_events, %(notify_id)s`
# with each event it stores, and psycopg 3 binds that parameter on the server, where NOTIFY
# rejects it ("syntax error at or near $1"), so every run fails.
_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
_POOLED_POSTGRES_STORAGE = f"""\
storage:
  custom:
    module: wryte_pipeline.instance_storage.postgres
    class: PooledPostgresStorage
    config:
      postgres_url: "{_POSTGRES_URL}"
"""
_STOCK_POSTGRES_STORAGE = f"""\
storage:
  postgres:
    postgres_url: "{_POSTGRES_URL}"
"""
_INSTANCE_CONFIGS = {
    "sqlite": _POOLED_SQLITE_STORAGE + _TELEMETRY_OFF,
    "postgres": _POOLED_POSTGRES_STORAGE + _TELEMETRY_OFF,
    "sqlite" + STOCK_SUFFIX: _TELEMETRY_OFF,
    "postgres" + STOCK_SUFFIX: _STOCK_POSTGRES_STORAGE + _TELEMETRY_OFF,
}


@dataclass(frozen=True)
class PipelineTarget:
    """One Dagster instance and one content store that a sequence of syncs shares.

    Attributes:
        storage: ``sqlite`` or ``postgres``, the instance storage the project's dagster.yaml
            and README set up, or either with ``-stock`` for Dagster's own storage class.
        folder: working folder holding ``DAGSTER_HOME``, ``WRYTE_HOME`` and the content store.
    """

    storage: str
    folder: Path

    @property
    def dagster_home(self) -> Path:
        """Folder of the instance's ``dagster.yaml``."""
        return self.folder / "dagster-home"

    @property
    def content_database(self) -> Path:
        """SQLite file of the content store."""
        return self.folder / "content.db"

    def environment(self, full_name: str, api_url: str, code_root: Path) -> dict[str, str]:
        """Return the sync command's environment: repository, fake URL, store and instance."""
        return {
            **loopback_environment(code_root),
            "WRYTE_REPO": full_name,
            "WRYTE_GITHUB_API_URL": api_url,
            "WRYTE_DATABASE_URL": f"sqlite:///{self.content_database}",
            "WRYTE_HOME": str(self.folder / "wryte-home"),
            "DAGSTER_HOME": str(self.dagster_home),
        }


class PostgresDatabases:
    """Databases named ``wryte_bench_<random>_<label>`` on the local server, dropped on exit."""

    def __init__(self, admin_url: str = POSTGRES_ADMIN_URL) -> None:
        """Choose a random name prefix. Nothing is created before ``create``."""
        self.admin_url = admin_url
        self.prefix = f"wryte_bench_{secrets.token_hex(4)}"
        self.created: list[str] = []

    def create(self, label: str) -> str:
        """Create an empty database and return its name."""
        name = f"{self.prefix}_{label}"
        try:
            with psycopg.connect(self.admin_url, autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as error:
            raise BenchmarkError(
                f"failed to create database {name!r} at {self.admin_url}: {error}. Start "
                "PostgreSQL there or pass --instance-storage sqlite."
            ) from error
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        """Drop every database this object created, closing their open connections."""
        if not self.created:
            return
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            for name in self.created:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@contextmanager
def postgres_databases() -> Iterator[PostgresDatabases]:
    """Yield a PostgresDatabases and drop its databases when the block ends."""
    databases = PostgresDatabases()
    try:
        yield databases
    finally:
        databases.drop_all()


def create_target(
    storage: str, folder: Path, databases: PostgresDatabases | None
) -> PipelineTarget:
    """Create a target's folders and ``dagster.yaml``, and a new database for Postgres."""
    target = PipelineTarget(storage, folder)
    target.dagster_home.mkdir(parents=True)
    database = ""
    if storage.startswith("postgres"):
        if databases is None:
            raise ValueError("a postgres target needs PostgresDatabases to create its database")
        database = databases.create(folder.name.replace("-", "_"))
    config = _INSTANCE_CONFIGS[storage].replace("{database}", database)
    config = config.replace("{dagster_home}", str(target.dagster_home))
    (target.dagster_home / "dagster.yaml").write_text(config)
    return target


def run_sync(
    target: PipelineTarget,
    full_name: str,
    api_url: str,
    *,
    code_root: Path,
    timeout_seconds: float,
    probe: Callable[[], bool] | None = None,
) -> Measurement:
    """Run one ``python -m wryte_pipeline sync`` against the target, measured.

    The pipeline is imported from ``code_root``.
    """
    return run_measured(
        SYNC_COMMAND,
        env=target.environment(full_name, api_url, code_root),
        cwd=target.folder,
        timeout_seconds=timeout_seconds,
        probe=probe,
    )


@dataclass(frozen=True)
class RunFacts:
    """One Dagster run as its instance recorded it.

    Attributes:
        seconds: time from the run's start event to its end event.
        events: entries in the run's event log.
    """

    run_id: str
    status: str
    seconds: float
    events: int


def dagster_runs(target: PipelineTarget) -> dict[str, RunFacts]:
    """Return every run of the target's instance by run id."""
    import dagster as dg

    facts: dict[str, RunFacts] = {}
    with dg.DagsterInstance.from_config(str(target.dagster_home)) as instance:
        for record in instance.get_run_records():
            run_id = record.dagster_run.run_id
            seconds = (record.end_time or 0.0) - (record.start_time or 0.0)
            events = len(instance.all_logs(run_id))
            facts[run_id] = RunFacts(run_id, record.dagster_run.status.value, seconds, events)
    return facts


def landed_count(database: Path, expected: Mapping[str, str]) -> int:
    """Count the expected paths whose stored blob SHA is the expected one."""
    if not database.exists() or not expected:
        return 0
    paths = list(expected)
    placeholders = ",".join("?" * len(paths))
    query = f"SELECT path, blob_sha FROM documents WHERE path IN ({placeholders})"
    try:
        with closing(sqlite3.connect(database, timeout=1)) as connection:
            rows = connection.execute(query, paths).fetchall()
    except sqlite3.Error:
        return 0
    return sum(1 for path, blob_sha in rows if expected.get(path) == blob_sha)


def document_count(database: Path) -> int:
    """Count the rows of the content store's ``documents`` table."""
    if not database.exists():
        return 0
    with closing(sqlite3.connect(database, timeout=5)) as connection:
        return int(connection.execute("SELECT count(*) FROM documents").fetchone()[0])
