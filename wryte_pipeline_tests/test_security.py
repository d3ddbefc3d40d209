"""The token stays secret, tarball members cannot escape, front matter builds no objects."""

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from wryte_pipeline.github import safe_member_path
from wryte_pipeline.settings import load_settings
from wryte_pipeline_tests.corpora import make_repo
from wryte_pipeline_tests.fake_github import FakeGitHub
from wryte_pipeline_tests.helpers import instance_at

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "ghp_SECRETtoken1234567890abcdef"


def dump_database(url: str) -> str:
    engine = sa.create_engine(url)
    text = []
    try:
        with engine.connect() as connection:
            for table in sa.inspect(engine).get_table_names():
                rows = connection.execute(sa.text(f'SELECT * FROM "{table}"'))
                text.extend(repr(tuple(row)) for row in rows)
    finally:
        engine.dispose()
    return "\n".join(text)


def test_token_never_leaks(tmp_path):
    files = {f"p{index}.md": b"---\ntitle: T\n---\nx\n" for index in range(8)}
    files["bad.md"] = b"---\ntitle: a: b\n---\n"
    make_repo(tmp_path / "repo", files)
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    with FakeGitHub(tokens={TOKEN}) as fake:
        fake.add_repo("octo/blog", tmp_path / "repo")
        fake.set_faults(error_rate=0.3, seed=5)
        env = {
            **os.environ,
            "WRYTE_REPO": "octo/blog",
            "WRYTE_GITHUB_API_URL": fake.url,
            "WRYTE_DATABASE_URL": database_url,
            "GITHUB_TOKEN": TOKEN,
            "WRYTE_HOME": str(tmp_path / "home"),
            "DAGSTER_HOME": str(home),
        }
        result = subprocess.run(
            [sys.executable, "-m", "wryte_pipeline", "sync"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode in (0, 1), result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert TOKEN not in dump_database(database_url)
    with instance_at(home) as instance:
        records = instance.fetch_materializations(
            dg.AssetKey("markdown_document"), limit=1000
        ).records
        runs = instance.get_runs()
        logs = [repr(entry) for run in runs for entry in instance.all_logs(run.run_id)]
    assert records
    assert all(TOKEN not in repr(record) for record in records)
    assert all(TOKEN not in entry for entry in logs)
    assert all(TOKEN not in repr(run.run_config) + repr(run.tags) for run in runs)
    for path in home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_settings_repr_hides_token():
    settings = load_settings({"GITHUB_TOKEN": TOKEN, "WRYTE_REPO": "octo/blog"})
    assert settings.token == TOKEN
    assert TOKEN not in repr(settings)


def member(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def test_tarball_members_cannot_escape():
    assert safe_member_path(member("octo-blog-abc/docs/a.md")) == "docs/a.md"
    assert safe_member_path(member("octo-blog-abc/../../etc/passwd")) is None
    assert safe_member_path(member("octo-blog-abc/docs/../../x.md")) is None
    assert safe_member_path(member("/etc/passwd")) is None
    assert safe_member_path(member("top-only")) is None
    assert safe_member_path(member("octo-blog-abc//x.md")) is None
