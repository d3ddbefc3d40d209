"""Shared test helpers: expected table contents from git, and reading the documents table."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from wryte_pipeline.partitions import PARTITIONS_NAME
from wryte_pipeline.repositories import RepositoryConfig
from wryte_pipeline.settings import DEFAULT_PATH_PATTERNS
from wryte_pipeline.source import REGULAR_FILE_MODES, matches_patterns
from wryte_pipeline_tests.corpora import ls_tree

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m wryte_pipeline ARGS`` with ``env`` added to this environment."""
    return subprocess.run(
        [sys.executable, "-m", "wryte_pipeline", *args],
        env={**os.environ, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def expected_documents(repo: Path, commit: str) -> dict[str, str]:
    """Return path -> blob SHA of the Markdown files the content table should hold."""
    return {
        path: sha
        for path, (mode, sha) in ls_tree(repo, commit).items()
        if mode in REGULAR_FILE_MODES and matches_patterns(path, DEFAULT_PATH_PATTERNS)
    }


def stored_documents(database_url: str) -> dict[str, str]:
    """Return path -> blob SHA as stored in the documents table."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT path, blob_sha FROM documents"))
            return {row.path: row.blob_sha for row in rows}
    finally:
        engine.dispose()


def changed_paths(repo: Path, old: str | None, new: str) -> set[str]:
    """Return the Markdown paths whose blob at ``new`` was not at the same path at ``old``."""
    before = expected_documents(repo, old) if old else {}
    after = expected_documents(repo, new)
    return {path for path, sha in after.items() if before.get(path) != sha}


def start_dagster_dev(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `dagster dev` on a free 127.0.0.1 port in its own process group."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "dagster", "dev", "-m", "wryte_pipeline.definitions"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        command,
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """Poll ``condition`` until it is true and return the monotonic time it became true.

    A table the sync has not created yet counts as not true.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return time.monotonic()
        except (sa.exc.OperationalError, sa.exc.ProgrammingError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s")


# Storage classes a PostgreSQL Dagster instance can name in dagster.yaml, by short name.
POSTGRES_INSTANCE_STORAGES = {
    "dagster-postgres": "  postgres:\n    postgres_url: {url}\n",
    "pooled": (
        "  custom:\n"
        "    module: wryte_pipeline.instance_storage.postgres\n"
        "    class: PooledPostgresStorage\n"
        "    config:\n"
        "      postgres_url: {url}\n"
    ),
}


def postgres_dagster_home(home: Path, url: str, storage: str = "pooled") -> Path:
    """Create a DAGSTER_HOME whose instance lives in the PostgreSQL database at ``url``.

    ``storage`` is a key of POSTGRES_INSTANCE_STORAGES.
    """
    home.mkdir(parents=True, exist_ok=True)
    block = POSTGRES_INSTANCE_STORAGES[storage].format(url=url)
    config = f"storage:\n{block}telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(config, encoding="utf-8")
    return home


@contextmanager
def instance_at(home: Path) -> Iterator[dg.DagsterInstance]:
    """Open the Dagster instance in ``home`` with DAGSTER_HOME set, as `dagster` commands do.

    The project's dagster.yaml reads its storage folder from DAGSTER_HOME.
    """
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if previous is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = previous


def partition_statuses(
    instance: dg.DagsterInstance, repository: str | None = None
) -> dict[str, str]:
    """Return the partitions page's status of each file partition of ``markdown_document``.

    ``repository`` is a name from WRYTE_CONFIG, or None for the single unprefixed repository.
    A partition never materialized or failed reads "MISSING".
    """
    config = RepositoryConfig(name=repository)
    partitions = dg.DynamicPartitionsDefinition(name=config.qualified(PARTITIONS_NAME))
    asset_key = dg.AssetKey([*config.key_prefix, "markdown_document"])
    keys = instance.get_dynamic_partitions(config.qualified(PARTITIONS_NAME))
    statuses = instance.get_status_by_partition(asset_key, keys, partitions)
    return {key: status.value if status else "MISSING" for key, status in statuses.items()}
