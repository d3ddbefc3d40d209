import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from wryte_pipeline_tests.corpora import commit_files, make_repo
from wryte_pipeline_tests.fake_github import FakeGitHub
from wryte_pipeline_tests.helpers import (
    POSTGRES_INSTANCE_STORAGES,
    expected_documents,
    instance_at,
    partition_statuses,
    postgres_dagster_home,
    run_cli,
    stored_documents,
)


def github_env(fake: FakeGitHub, repo: str, tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        "WRYTE_REPO": repo,
        "WRYTE_GITHUB_API_URL": fake.url,
        "WRYTE_DATABASE_URL": database_url,
        "WRYTE_HOME": str(tmp_path / "home"),
    }


@pytest.mark.parametrize("corpus", ["hugo-docs", "jekyll-docs", "rust-blog"])
def test_cli_sync_corpus_matches_tree(corpus, corpus_clones, fake_github, tmp_path):
    repo = corpus_clones[corpus]
    head = fake_github.add_repo(f"corpora/{corpus}", repo)
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    env = github_env(fake_github, f"corpora/{corpus}", tmp_path, database_url)

    first = run_cli("sync", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert stored_documents(database_url) == expected_documents(repo, head)
    assert " of " in first.stdout
    assert "succeeded" in first.stdout

    fake_github.reset_stats()
    second = run_cli("sync", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to sync" in second.stdout
    assert fake_github.stats.blobs == 0
    assert fake_github.stats.tarballs == 0


@pytest.mark.postgres
def test_cli_sync_postgres_store(corpus_clones, fake_github, tmp_path, postgres_url):
    repo = corpus_clones["jekyll-docs"]
    head = fake_github.add_repo("corpora/jekyll-docs", repo)
    env = github_env(fake_github, "corpora/jekyll-docs", tmp_path, postgres_url)
    result = run_cli("sync", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_documents(postgres_url) == expected_documents(repo, head)


def test_cli_broken_file_fails_alone(fake_github, tmp_path):
    files = {
        f"posts/post-{index}.md": b"---\ntitle: Post %d\n---\nBody\n" % index
        for index in range(12)
    }
    files["posts/broken.md"] = b"---\ntitle: Notes: part two\n---\nBody\n"
    make_repo(tmp_path / "repo", files)
    fake_github.add_repo("octo/blog", tmp_path / "repo")
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    env = github_env(fake_github, "octo/blog", tmp_path, database_url)

    result = run_cli("sync", env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "posts/broken.md, line 2" in result.stdout
    assert "failed 1" in result.stdout
    stored = stored_documents(database_url)
    assert len(stored) == 12
    assert "posts/broken.md" not in stored


def test_cli_broken_file_not_retried(fake_github, tmp_path):
    make_repo(tmp_path / "repo", {"ok.md": b"fine\n", "bad.md": b"---\nx: [\n---\n"})
    fake_github.add_repo("octo/blog", tmp_path / "repo")
    env = github_env(fake_github, "octo/blog", tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    assert run_cli("sync", env=env).returncode == 1
    fake_github.reset_stats()
    again = run_cli("sync", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert fake_github.stats.blobs == 0


def test_cli_fixed_file_synced_next_time(fake_github, tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo, {"bad.md": b"---\nx: [\n---\n"})
    fake_github.add_repo("octo/blog", repo)
    database_url = f"sqlite:///{tmp_path / 'c.db'}"
    env = github_env(fake_github, "octo/blog", tmp_path, database_url)
    assert run_cli("sync", env=env).returncode == 1
    fixed = commit_files(repo, {"bad.md": b"---\nx: [1]\n---\n"}, "fix front matter")
    fake_github.set_head("octo/blog", fixed)
    result = run_cli("sync", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_documents(database_url) == expected_documents(repo, fixed)


def test_cli_bad_token_exits_2(tmp_path):
    make_repo(tmp_path / "repo", {"a.md": b"A\n"})
    with FakeGitHub(tokens={"good"}) as fake:
        fake.add_repo("octo/blog", tmp_path / "repo")
        env = github_env(fake, "octo/blog", tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
        env["GITHUB_TOKEN"] = "not-the-token"
        result = run_cli("sync", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "GITHUB_TOKEN" in result.stderr
    assert "not-the-token" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_repository_exits_2(fake_github, tmp_path):
    env = github_env(fake_github, "octo/nothing", tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    result = run_cli("sync", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "WRYTE_REPO" in result.stderr


def test_cli_invalid_setting_exits_2(tmp_path):
    result = run_cli("sync", env={"WRYTE_REPO": "not a repo name", "WRYTE_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "WRYTE_REPO" in result.stderr


def test_cli_sample_default_syncs(tmp_path):
    result = run_cli("sync", env={"WRYTE_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "993 of 993 files" in result.stdout
    assert "succeeded 993" in result.stdout


def test_cli_status_prints_progress(tmp_path):
    env = {"WRYTE_HOME": str(tmp_path / "home")}
    make_repo(tmp_path / "repo", {"a.md": b"A\n", "b.md": b"B\n"})
    env["WRYTE_REPO"] = str(tmp_path / "repo")
    assert run_cli("sync", env=env).returncode == 0
    status = run_cli("status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "2 of 2 files" in status.stdout


@pytest.mark.postgres
@pytest.mark.parametrize("storage", sorted(POSTGRES_INSTANCE_STORAGES))
def test_cli_postgres_instance_storage(fake_github, tmp_path, postgres_instance_url, storage):
    import sqlalchemy as sa

    files = {f"p{i}.md": b"---\ntitle: T\n---\n" for i in range(5)}
    files["broken.md"] = b"---\ntitle: [unclosed\n---\n"
    make_repo(tmp_path / "repo", files)
    fake_github.add_repo("octo/blog", tmp_path / "repo")
    home = postgres_dagster_home(tmp_path / "dagster-home", postgres_instance_url, storage)
    env = github_env(fake_github, "octo/blog", tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    env["DAGSTER_HOME"] = str(home)

    result = run_cli("sync", env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    engine = sa.create_engine(postgres_instance_url)
    with engine.connect() as connection:
        runs = connection.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
    engine.dispose()
    assert runs == 2, "the batch's run and the run that marks broken.md failed"
    with instance_at(home) as instance:
        statuses = partition_statuses(instance)
    assert statuses["broken.md"] == "FAILED"
    materialized = sorted(key for key, status in statuses.items() if status == "MATERIALIZED")
    assert materialized == sorted(f"p{i}.md" for i in range(5))


@pytest.mark.postgres
@pytest.mark.parametrize("storage", sorted(POSTGRES_INSTANCE_STORAGES))
def test_cli_rejects_psycopg3_instance_url(fake_github, tmp_path, postgres_instance_url, storage):
    make_repo(tmp_path / "repo", {"p.md": b"---\ntitle: T\n---\n"})
    fake_github.add_repo("octo/blog", tmp_path / "repo")
    psycopg3_url = postgres_instance_url.replace("postgresql+psycopg2://", "postgresql://")
    home = postgres_dagster_home(tmp_path / "dagster-home", psycopg3_url, storage)
    env = github_env(fake_github, "octo/blog", tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    env["DAGSTER_HOME"] = str(home)

    result = run_cli("sync", env=env)

    assert result.returncode == 2, result.stdout + result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert "psycopg 3" in error_lines[0]
    assert "postgresql+psycopg2://postgres@127.0.0.1:5432/" in error_lines[0]
    assert "Traceback" not in result.stderr
    assert fake_github.stats.blobs == 0


def test_cli_one_change_costs_three_requests(fake_github, tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo, {f"p{i}.md": b"---\ntitle: T\n---\n" for i in range(5)})
    fake_github.add_repo("octo/blog", repo)
    database_url = f"sqlite:///{tmp_path / 'c.db'}"
    env = github_env(fake_github, "octo/blog", tmp_path, database_url)
    assert run_cli("sync", env=env).returncode == 0
    edited = commit_files(repo, {"p3.md": b"---\ntitle: Edited\n---\n"}, "edit")
    fake_github.set_head("octo/blog", edited)
    fake_github.reset_stats()

    result = run_cli("sync", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert stored_documents(database_url) == expected_documents(repo, edited)
    assert fake_github.stats.requests == 3, fake_github.stats.log
    assert fake_github.stats.blobs == 1


def test_cli_low_budget_leaves_work(fake_github, tmp_path):
    repo = tmp_path / "repo"
    make_repo(repo, {f"p{i}.md": b"---\ntitle: T\n---\n" for i in range(8)})
    fake_github.add_repo("octo/blog", repo)
    database_url = f"sqlite:///{tmp_path / 'c.db'}"
    env = github_env(fake_github, "octo/blog", tmp_path, database_url)
    env.update(
        {
            "WRYTE_RATE_LIMIT_RESERVE": "0",
            "WRYTE_MAX_RATE_LIMIT_WAIT_SECONDS": "5",
            "WRYTE_TARBALL_THRESHOLD": "1000",
            "WRYTE_CONCURRENCY": "1",
        }
    )
    fake_github.set_faults(primary_limit=5, primary_window_seconds=3600)

    result = run_cli("sync", env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "GitHub rate limit low" in result.stdout
    assert "not fully synced yet" in result.stdout
    assert "Traceback" not in result.stderr
    assert fake_github.stats.rate_limited <= 1
    fake_github.set_faults(primary_limit=5000, primary_window_seconds=3600)
    again = run_cli("sync", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert stored_documents(database_url) == expected_documents(repo, "HEAD")


def test_cli_status_watch_ends(tmp_path):
    env = {"WRYTE_HOME": str(tmp_path / "home")}
    make_repo(tmp_path / "repo", {"a.md": b"A\n", "b.md": b"---\nx: [\n---\n"})
    env["WRYTE_REPO"] = str(tmp_path / "repo")
    assert run_cli("sync", env=env).returncode == 1
    status = run_cli("status", "--watch", env=env)
    assert status.returncode == 1
    assert "2 of 2 files, 1 failed" in status.stdout
    assert "b.md, line 3: invalid YAML front matter" in status.stdout


def test_cli_status_watch_waits_for_batch(tmp_path):
    """`status --watch` started before any sync waits, then reports the finished batch."""
    env = {"WRYTE_HOME": str(tmp_path / "home")}
    make_repo(tmp_path / "repo", {f"p{i}.md": b"---\ntitle: T\n---\n" for i in range(30)})
    env["WRYTE_REPO"] = str(tmp_path / "repo")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "wryte_pipeline", "status", "--watch"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert watcher.poll() is None, "status --watch exited before any batch existed"
        sync = run_cli("sync", env=env)
        output, _ = watcher.communicate(timeout=60)
    finally:
        watcher.kill()

    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert watcher.returncode == 0, output
    assert "waiting for the first sync batch" in output
    assert "30 of 30 files" in output
    duration = re.search(r"duration \S+ s", sync.stdout)
    assert duration is not None, sync.stdout
    assert duration.group() in output


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param({"WRYTE_DATABASE_URL": "nonsense"}, "invalid WRYTE_DATABASE_URL", id="url"),
        pytest.param(
            {"WRYTE_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
            "check WRYTE_DATABASE_URL",
            id="unreachable-database",
        ),
        pytest.param(
            {"WRYTE_GITHUB_API_URL": "notaurl", "WRYTE_REPO": "octo/blog"},
            "invalid WRYTE_GITHUB_API_URL 'notaurl'",
            id="api-url",
        ),
        pytest.param(
            {"WRYTE_REPO": "/nonexistent/repository"},
            "local repository '/nonexistent/repository' not found",
            id="missing-path",
        ),
    ],
)
def test_cli_bad_setting_named(tmp_path, variables, message):
    env = {"WRYTE_HOME": str(tmp_path / "home"), **variables}
    result = run_cli("sync", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_marks_failed_partition(fake_github, tmp_path, database_url):
    """With a DAGSTER_HOME, the broken file's partition ends failed, at no extra GitHub cost."""
    files = {"posts/ok.md": b"---\ntitle: Fine\n---\n", "posts/bad.md": b"---\nx: [\n---\n"}
    make_repo(tmp_path / "repo", files)
    fake_github.add_repo("octo/blog", tmp_path / "repo")
    env = github_env(fake_github, "octo/blog", tmp_path, database_url)
    env["DAGSTER_HOME"] = str(tmp_path / "dagster_home")
    (tmp_path / "dagster_home").mkdir()

    result = run_cli("sync", env=env)

    assert result.returncode == 1, result.stdout + result.stderr
    assert fake_github.stats.blobs == len(files)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        statuses = partition_statuses(instance)
    assert statuses == {
        "posts/ok.md": "MATERIALIZED",
        "posts/bad.md": "FAILED",
    }
