"""Several repositories from one config file: separate tables, one run queue, fair turns."""

import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from wryte_pipeline.partitions import partition_key_for_path
from wryte_pipeline_tests.corpora import commit_files, make_repo
from wryte_pipeline_tests.helpers import (
    expected_documents,
    instance_at,
    partition_statuses,
    run_cli,
    start_dagster_dev,
    wait_until,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BROKEN_PATH = "broken.md"


def table_blobs(database_url: str, table: str) -> dict[str, str]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(f"SELECT path, blob_sha FROM {table}"))
            return {row.path: row.blob_sha for row in rows}
    finally:
        engine.dispose()


@pytest.fixture
def two_repositories(tmp_path):
    docs = tmp_path / "docs"
    blog = tmp_path / "blog"
    make_repo(docs, {f"docs/page-{i}.md": b"---\ntitle: Page %d\n---\n" % i for i in range(5)})
    make_repo(blog, {"posts/hello.md": b'+++\ntitle = "Hello"\n+++\nHi\n'})
    config = tmp_path / "repositories.yaml"
    config.write_text(
        "repositories:\n"
        f"  - {{name: docs, repo: '{docs}', table_prefix: docs_}}\n"
        f"  - {{name: blog, repo: '{blog}', table_prefix: blog_}}\n"
    )
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    env = {
        **os.environ,
        "WRYTE_CONFIG": str(config),
        "WRYTE_DATABASE_URL": database_url,
        "WRYTE_HOME": str(tmp_path / "home"),
    }
    return docs, blog, env, database_url


def test_sync_all_repositories_separate_tables(two_repositories):
    docs, blog, env, database_url = two_repositories
    result = run_cli("sync", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "repository docs" in result.stdout
    assert "repository blog" in result.stdout
    assert table_blobs(database_url, "docs_documents") == expected_documents(docs, "HEAD")
    assert table_blobs(database_url, "blog_documents") == expected_documents(blog, "HEAD")


def test_sync_one_repository_by_name(two_repositories):
    _docs, blog, env, database_url = two_repositories
    result = run_cli("sync", "--repository", "blog", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert table_blobs(database_url, "blog_documents") == expected_documents(blog, "HEAD")
    assert "repository docs" not in result.stdout


def test_unknown_repository_exits_2(two_repositories):
    _docs, _blog, env, _url = two_repositories
    result = run_cli("sync", "--repository", "wiki", env=env)
    assert result.returncode == 2
    assert "'wiki' not found in WRYTE_CONFIG" in result.stderr


def test_missing_token_variable_exits_2(two_repositories, tmp_path):
    _docs, _blog, env, _url = two_repositories
    config = tmp_path / "token.yaml"
    config.write_text("repositories:\n  - {name: gh, repo: octo/blog, token_env: GH_TOKEN_X}\n")
    result = run_cli("sync", env={**env, "WRYTE_CONFIG": str(config)})
    assert result.returncode == 2
    assert "'GH_TOKEN_X' is not set" in result.stderr


@pytest.mark.slow
def test_small_edit_lands_before_big_import(corpus_clones, fake_github, tmp_path):
    """A 1-file edit in one repository finishes while another repository imports 993 files."""
    big = corpus_clones["hugo-docs"]
    small = tmp_path / "small"
    make_repo(small, {"a.md": b"---\ntitle: A\n---\n", "b.md": b"---\ntitle: B\n---\n"})
    fake_github.add_repo("octo/big", big)
    fake_github.add_repo("octo/small", small)
    config = tmp_path / "repositories.yaml"
    config.write_text(
        "repositories:\n"
        "  - {name: big, repo: octo/big, table_prefix: big_}\n"
        "  - {name: small, repo: octo/small, table_prefix: small_}\n"
    )
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    env = {
        **os.environ,
        "WRYTE_CONFIG": str(config),
        "WRYTE_DATABASE_URL": database_url,
        "WRYTE_GITHUB_API_URL": fake_github.url,
        "WRYTE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(home),
        "WRYTE_TARBALL_THRESHOLD": "100000",
    }
    assert run_cli("sync", "--repository", "small", env=env).returncode == 0
    edit = {"a.md": b"---\ntitle: A, edited\n---\n", BROKEN_PATH: b"---\ntitle: Notes: two\n---\n"}
    edited = commit_files(small, edit, "edit, and add a file with broken front matter")
    fake_github.set_head("octo/small", edited)
    fake_github.set_faults(latency_seconds=0.03)

    daemon = start_dagster_dev(env)
    try:
        small_done = wait_until(lambda: _edit_landed(database_url, edited), 180)
        big_done = wait_until(lambda: len(table_blobs(database_url, "big_documents")) >= 993, 300)
        # The sensor's next tick requests a failed run of the broken file's partition.
        wait_until(lambda: _partition_status(home, "small", BROKEN_PATH) == "FAILED", 120)
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(timeout=60)
    assert small_done < big_done
    expected = expected_documents(small, edited)
    del expected[BROKEN_PATH]
    assert table_blobs(database_url, "small_documents") == expected
    assert _partition_status(home, "small", "a.md") == "MATERIALIZED"
    assert table_blobs(database_url, "big_documents") == expected_documents(big, "HEAD")


def _partition_status(home: Path, name: str, path: str) -> str:
    """Return the partitions page's status of a file of the named repository."""
    with instance_at(home) as instance:
        return partition_statuses(instance, name).get(partition_key_for_path(path), "MISSING")


def _edit_landed(database_url: str, commit: str) -> bool:
    try:
        rows = table_blobs(database_url, "small_documents")
    except sa.exc.OperationalError:
        return False
    return bool(rows) and _commit_of(database_url, "a.md") == commit


def _commit_of(database_url: str, path: str) -> str | None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT commit_sha FROM small_documents WHERE path = :path"),
                {"path": path},
            ).scalar_one_or_none()
    finally:
        engine.dispose()
