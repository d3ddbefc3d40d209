"""Drafts, schedules, expiry, redirects and the asset checks, on fixtures and real corpora."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from wryte_pipeline.definitions import defs
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.schedules import publish_schedule
from wryte_pipeline.store import ContentStore
from wryte_pipeline_tests.corpora import commit_files, make_repo

NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def post(title: str, *fields: str) -> bytes:
    return (
        "---\ntitle: " + title + "\n" + "".join(f"{f}\n" for f in fields) + "---\nBody\n"
    ).encode()


FILES = {
    "posts/live.md": post("Live", f"date: {stamp(NOW - timedelta(days=3))}"),
    "posts/draft.md": post("Draft", "draft: true"),
    "posts/later.md": post("Later", f"publishDate: {stamp(NOW + timedelta(hours=2))}"),
    "posts/future-dated.md": post("Future", f"date: {stamp(NOW + timedelta(days=1))}"),
    "posts/expired.md": post("Expired", f"expiryDate: {stamp(NOW - timedelta(hours=1))}"),
    "posts/expiring.md": post("Expiring", f"expiryDate: {stamp(NOW + timedelta(hours=1))}"),
    "posts/undated.md": b"No front matter at all.\n",
}


def run_job(name: str, resource: WryteResource, instance: dg.DagsterInstance):
    result = defs.resolve_job_def(name).execute_in_process(
        instance=instance, resources={"wryte": resource}
    )
    assert result.success
    return result


def check_results(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()
    }


@pytest.fixture
def synced(tmp_path, database_url):
    make_repo(tmp_path / "repo", FILES)
    resource = WryteResource(repository=str(tmp_path / "repo"), database_url=database_url)
    with dg.instance_for_test() as instance:
        result = run_job("sync_job", resource, instance)
        yield tmp_path / "repo", resource, instance, result


def published_paths(resource: WryteResource) -> set[str]:
    store = ContentStore(resource.settings().resolved_database_url)
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT path FROM published_documents")
        return {row[0] for row in rows}


def test_published_excludes_drafts_and_future(synced):
    _repo, resource, _instance, _result = synced
    assert published_paths(resource) == {"posts/live.md", "posts/expiring.md", "posts/undated.md"}


def test_published_refresh_at_time(synced):
    _repo, resource, _instance, _result = synced
    store = ContentStore(resource.settings().resolved_database_url)
    store.refresh_published(NOW + timedelta(hours=3))
    with store.engine.connect() as connection:
        paths = {
            row[0] for row in connection.exec_driver_sql("SELECT path FROM published_documents")
        }
    assert "posts/later.md" in paths
    assert "posts/expiring.md" not in paths
    assert "posts/future-dated.md" not in paths


def test_publish_schedule_skips_until_due(synced):
    _repo, resource, instance, _result = synced
    quiet = NOW + timedelta(minutes=30)
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=quiet, resources={"wryte": resource}
    ) as context:
        result = publish_schedule(context)
    assert isinstance(result, dg.SkipReason)
    due = NOW + timedelta(hours=2, minutes=1)
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=due, resources={"wryte": resource}
    ) as context:
        request = publish_schedule(context)
    assert isinstance(request, dg.RunRequest)


def test_site_timezone_applies_to_naive_times(tmp_path, monkeypatch):
    monkeypatch.setenv("WRYTE_SITE_TIMEZONE", "Europe/Paris")
    make_repo(tmp_path / "repo", {"a.md": post("A", "publishDate: 2030-01-01T09:00:00")})
    resource = WryteResource(
        repository=str(tmp_path / "repo"), database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )
    with dg.instance_for_test() as instance:
        run_job("sync_job", resource, instance)
    row = ContentStore(resource.settings().resolved_database_url).document_rows(["a.md"])["a.md"]
    assert row["publish_at"].replace(tzinfo=UTC) == datetime(2030, 1, 1, 8, 0, tzinfo=UTC)


def test_invalid_site_timezone_named(tmp_path, monkeypatch):
    from wryte_pipeline.errors import ConfigurationError
    from wryte_pipeline.settings import load_settings

    with pytest.raises(ConfigurationError, match="WRYTE_SITE_TIMEZONE 'Mars/Olympus'"):
        load_settings({"WRYTE_SITE_TIMEZONE": "Mars/Olympus"})


def test_rename_records_redirect(synced):
    repo, resource, instance, _result = synced
    commit_files(
        repo, {"posts/live.md": None, "posts/live-renamed.md": FILES["posts/live.md"]}, "rename"
    )
    run_job("sync_job", resource, instance)
    store = ContentStore(resource.settings().resolved_database_url)
    redirects = store.redirect_rows()
    assert len(redirects) == 1
    assert redirects[0]["from_path"] == "posts/live.md"
    assert redirects[0]["from_slug"] == "live"
    assert redirects[0]["to_slug"] == "live-renamed"
    assert "posts/live.md" not in store.stored_blobs()


def test_checks_pass_on_clean_sync(synced):
    _repo, resource, instance, result = synced
    checks = check_results(result)
    assert checks["last_batch_parsed"].passed
    assert checks["published_slugs_unique"].passed
    assert "content_matches_repository" not in checks
    repository_check = check_results(run_job("content_check_job", resource, instance))
    assert repository_check["content_matches_repository"].passed


def test_checks_name_broken_and_duplicate(synced):
    repo, resource, instance, _result = synced
    commit_files(
        repo,
        {
            "posts/broken.md": b"---\ntitle: Notes: part two\n---\n",
            "other/live.md": FILES["posts/live.md"].replace(b"Live", b"Copy"),
        },
        "break",
    )
    checks = check_results(run_job("sync_job", resource, instance))
    parsed = checks["last_batch_parsed"]
    assert not parsed.passed
    assert "posts/broken.md, line 2" in parsed.metadata["errors"].value
    slugs = checks["published_slugs_unique"]
    assert not slugs.passed
    assert "`other/live.md`" in slugs.metadata["files"].value
    assert "`posts/live.md`" in slugs.metadata["files"].value
    repository = check_results(run_job("content_check_job", resource, instance))
    matches = repository["content_matches_repository"]
    assert not matches.passed
    assert "posts/broken.md" in matches.metadata["paths"].value


@pytest.mark.parametrize("corpus", ["rust-blog", "hugo-docs"])
def test_corpus_published_and_checked(corpus, corpus_clones, database_url):
    resource = WryteResource(repository=str(corpus_clones[corpus]), database_url=database_url)
    with dg.instance_for_test() as instance:
        result = run_job("sync_job", resource, instance)
        repository = check_results(run_job("content_check_job", resource, instance))
    assert repository["content_matches_repository"].passed
    assert check_results(result)["last_batch_parsed"].passed
    store = ContentStore(database_url)
    now = datetime.now(UTC)
    rows = store.document_rows(store.stored_blobs())
    expected = {path for path, row in rows.items() if _visible(row, now)}
    assert published_paths(resource) == expected
    assert len(expected) > 100


def _visible(row: dict, now: datetime) -> bool:
    publish_time = row["publish_at"] or row["date"]
    if row["draft"]:
        return False
    if publish_time is not None and _utc(publish_time) > now:
        return False
    return row["expire_at"] is None or _utc(row["expire_at"]) > now


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_cli_sync_publishes_due_post(tmp_path, monkeypatch, capsys):
    """A sync with nothing to fetch still rebuilds `published_documents` once a post is due."""
    from wryte_pipeline import assets, cli

    make_repo(tmp_path / "repo", {"posts/later.md": FILES["posts/later.md"]})
    monkeypatch.setenv("WRYTE_REPO", str(tmp_path / "repo"))
    monkeypatch.setenv("WRYTE_DATABASE_URL", f"sqlite:///{tmp_path / 'content.db'}")
    resource = WryteResource()
    assert cli.main(["sync"]) == 0
    assert published_paths(resource) == set()

    assert cli.main(["sync"]) == 0
    assert "published_documents rebuilt" not in capsys.readouterr().out

    later = NOW + timedelta(hours=3)
    monkeypatch.setattr(cli, "utc_now", lambda: later)
    monkeypatch.setattr(assets, "utc_now", lambda: later)
    assert cli.main(["sync"]) == 0
    output = capsys.readouterr().out
    assert "nothing to sync" in output
    assert "published_documents rebuilt" in output
    assert published_paths(resource) == {"posts/later.md"}
