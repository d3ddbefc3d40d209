"""Fixtures: a clean environment, content stores on SQLite and PostgreSQL, git corpora."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from wryte_pipeline.store import ContentStore
from wryte_pipeline_tests.corpora import clone_corpus
from wryte_pipeline_tests.fake_github import FakeGitHub

POSTGRES_ADMIN_URL = os.environ.get(
    "WRYTE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Remove settings and tokens so no test reads the developer's setup or reaches GitHub."""
    for name in list(os.environ):
        if name.startswith(("WRYTE_", "GITHUB_")) and name != "WRYTE_CORPORA_DIR":
            monkeypatch.delenv(name)
        if name.startswith("WRYTE_TEST_"):
            continue
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setenv("WRYTE_HOME", str(tmp_path / "wryte-home"))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Yield a URL whose connections use a fresh schema, dropped after the test."""
    schema = f"wryte_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, pool_pre_ping=True)
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as error:
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {error}")
    try:
        yield f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_instance_url() -> Iterator[str]:
    """Yield a psycopg2 URL of a new database for a Dagster instance, dropped afterwards."""
    database = f"wryte_instance_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE "{database}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Yield a content store URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'content.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[ContentStore]:
    """Yield an empty content store on each database."""
    content_store = ContentStore(database_url)
    yield content_store
    content_store.dispose()


@pytest.fixture(scope="session")
def corpus_clones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clone each shared corpus once per test session."""
    root = tmp_path_factory.mktemp("corpora")
    names = ("hugo-docs", "jekyll-docs", "rust-blog")
    return {name: clone_corpus(name, root / name) for name in names}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its standard output."""
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True)
    return result.stdout.decode()


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """Yield a fake GitHub REST server on 127.0.0.1, stopped after the test."""
    with FakeGitHub() as server:
        yield server
