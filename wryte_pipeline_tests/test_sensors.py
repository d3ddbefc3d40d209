"""Step the repository sensor through its cursor, one scenario per test."""

import dagster as dg
import pytest

from wryte_pipeline.assets import BATCH_TAG, FAILED_IN_BATCH_TAG
from wryte_pipeline.definitions import defs
from wryte_pipeline.partitions import PARTITIONS_NAME, partition_key_for_path
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.sensors import SensorCursor, repository_sensor
from wryte_pipeline.store import ContentStore
from wryte_pipeline_tests.corpora import commit_files, make_repo
from wryte_pipeline_tests.helpers import partition_statuses

FILES = {
    f"posts/post-{index:02}.md": b"---\ntitle: Post %d\n---\nBody\n" % index for index in range(6)
}


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def repo(tmp_path):
    make_repo(tmp_path / "repo", FILES)
    return tmp_path / "repo"


def tick(instance, resource, cursor=None):
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"wryte": resource}, definitions=defs
    ) as context:
        return repository_sensor(context)


def run_batch(instance, resource, result):
    """Apply the tick's partition requests and execute its run, as the daemon would."""
    for request in result.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    job = defs.resolve_job_def("sync_job")
    outcome = job.execute_in_process(
        instance=instance,
        tags=result.run_requests[0].tags,
        resources={"wryte": resource},
    )
    assert outcome.success


def local_resource(repo, tmp_path):
    return WryteResource(repository=str(repo), database_url=f"sqlite:///{tmp_path / 'c.db'}")


def test_sensor_first_tick_adds_all(instance, repo, tmp_path):
    resource = local_resource(repo, tmp_path)
    result = tick(instance, resource)
    assert isinstance(result, dg.SensorResult)
    assert len(result.run_requests) == 1
    added = result.dynamic_partitions_requests[0]
    assert sorted(added.partition_keys) == sorted(partition_key_for_path(p) for p in FILES)
    cursor = SensorCursor.parse(result.cursor)
    assert cursor.complete
    assert result.run_requests[0].tags[BATCH_TAG] == cursor.batch_id


def test_sensor_skips_unchanged_tree(instance, repo, tmp_path):
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    run_batch(instance, resource, first)
    second = tick(instance, resource, first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert not second.run_requests
    assert "unchanged" in second.skip_reason.skip_message


def test_sensor_requests_only_changed(instance, repo, tmp_path):
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    run_batch(instance, resource, first)
    commit_files(
        repo,
        {"posts/post-01.md": b"changed\n", "posts/post-02.md": None, "posts/new.md": b"new\n"},
        "edit",
    )
    second = tick(instance, resource, first.cursor)
    batch = ContentStore(resource.settings().resolved_database_url).get_batch(
        second.run_requests[0].tags[BATCH_TAG]
    )
    actions = sorted((item["action"], item["path"]) for item in batch.items)
    assert actions == [
        ("delete", "posts/post-02.md"),
        ("upsert", "posts/new.md"),
        ("upsert", "posts/post-01.md"),
    ]
    deleted = [
        r
        for r in second.dynamic_partitions_requests
        if isinstance(r, dg.DeleteDynamicPartitionsRequest)
    ]
    assert deleted[0].partition_keys == [partition_key_for_path("posts/post-02.md")]


def test_sensor_caps_paths_per_tick(instance, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("WRYTE_MAX_PATHS_PER_TICK", "4")
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    assert not SensorCursor.parse(first.cursor).complete
    run_batch(instance, resource, first)
    second = tick(instance, resource, first.cursor)
    assert isinstance(second, dg.SensorResult)
    batch_id = second.run_requests[0].tags[BATCH_TAG]
    store = ContentStore(resource.settings().resolved_database_url)
    assert store.get_batch(batch_id).total == 2
    assert SensorCursor.parse(second.cursor).complete


def test_sensor_waits_for_running_batch(instance, repo, tmp_path):
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    batch_id = first.run_requests[0].tags[BATCH_TAG]
    instance.create_run_for_job(
        defs.resolve_job_def("sync_job"),
        tags={BATCH_TAG: batch_id},
        status=dg.DagsterRunStatus.STARTED,
    )
    second = tick(instance, resource, first.cursor)
    assert isinstance(second, dg.SkipReason)
    assert "still running" in second.skip_message


def test_sensor_reuses_unfinished_batch_work(instance, repo, tmp_path):
    """A batch whose run never finished leaves its paths to the next tick."""
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    second = tick(instance, resource, first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert len(second.run_requests) == 1


def test_sensor_idle_github_tick_costs_nothing(instance, fake_github, repo, tmp_path):
    fake_github.add_repo("octo/blog", repo)
    resource = WryteResource(
        repository="octo/blog",
        api_url=fake_github.url,
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
    )
    first = tick(instance, resource)
    run_batch(instance, resource, first)
    fake_github.reset_stats()
    second = tick(instance, resource, first.cursor)
    assert isinstance(second, dg.SensorResult)
    assert not second.run_requests
    assert "unchanged" in second.skip_reason.skip_message
    assert fake_github.stats.counted == 0
    assert fake_github.stats.not_modified == 1


def test_sensor_bad_token_stops_tick(instance, repo, tmp_path, monkeypatch):
    from wryte_pipeline.errors import AuthenticationError
    from wryte_pipeline_tests.fake_github import FakeGitHub

    with FakeGitHub(tokens={"good"}) as fake:
        fake.add_repo("octo/blog", repo)
        monkeypatch.setenv("GITHUB_TOKEN", "bad")
        resource = WryteResource(
            repository="octo/blog", api_url=fake.url, database_url=f"sqlite:///{tmp_path / 'c.db'}"
        )
        with pytest.raises(AuthenticationError, match="GITHUB_TOKEN"):
            tick(instance, resource)
        assert fake.stats.blobs == 0
    assert instance.get_dynamic_partitions(PARTITIONS_NAME) == []


def test_sensor_fails_run_of_dead_worker(instance, repo, tmp_path):
    import subprocess
    import sys

    import sqlalchemy as sa

    from wryte_pipeline.locks import SyncLease, lease_key

    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    batch_id = first.run_requests[0].tags[BATCH_TAG]
    run = instance.create_run_for_job(
        defs.resolve_job_def("sync_job"),
        tags={BATCH_TAG: batch_id},
        status=dg.DagsterRunStatus.STARTED,
    )
    store = ContentStore(resource.settings().resolved_database_url)
    settings = resource.settings()
    SyncLease(store, lease_key(settings.repository, settings.branch), run.run_id).acquire(0)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    with store.engine.begin() as connection:
        connection.execute(sa.update(store.tables.sync_leases).values(pid=int(dead.stdout)))

    second = tick(instance, resource, first.cursor)

    assert isinstance(second, dg.SensorResult)
    assert len(second.run_requests) == 1
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


def github_resource(fake, repo_path, tmp_path):
    fake.add_repo("octo/blog", repo_path)
    return WryteResource(
        repository="octo/blog", api_url=fake.url, database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )


def run_batch_result(instance, resource, result):
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
    return defs.resolve_job_def("sync_job").execute_in_process(
        instance=instance,
        tags=result.run_requests[0].tags,
        resources={"wryte": resource},
        raise_on_error=False,
    )


def test_spent_limit_defers_past_ceiling(instance, fake_github, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("WRYTE_TARBALL_THRESHOLD", "1000")
    monkeypatch.setenv("WRYTE_CONCURRENCY", "1")
    monkeypatch.setenv("WRYTE_MAX_RATE_LIMIT_WAIT_SECONDS", "30")
    resource = github_resource(fake_github, repo, tmp_path)
    first = tick(instance, resource)
    fake_github.set_faults(primary_limit=2, primary_window_seconds=3600)

    outcome = run_batch_result(instance, resource, first)

    assert outcome.success
    store = ContentStore(resource.settings().resolved_database_url)
    counts = store.outcome_counts(first.run_requests[0].tags[BATCH_TAG])
    assert counts["succeeded"] == 2
    assert counts["deferred"] == 4
    assert fake_github.stats.rate_limited == 1


def test_spent_limit_retried_after_reset(instance, fake_github, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("WRYTE_TARBALL_THRESHOLD", "1000")
    monkeypatch.setenv("WRYTE_CONCURRENCY", "1")
    resource = github_resource(fake_github, repo, tmp_path)
    first = tick(instance, resource)
    fake_github.set_faults(primary_limit=3, primary_window_seconds=2)

    outcome = run_batch_result(instance, resource, first)

    assert outcome.success
    store = ContentStore(resource.settings().resolved_database_url)
    batch_id = first.run_requests[0].tags[BATCH_TAG]
    assert set(store.stored_blobs()) == set(FILES)
    assert store.outcome_counts(batch_id)["deferred"] >= 1
    assert store.finished_paths(batch_id) == set(FILES)


def test_sensor_restores_partitions_on_new_instance(repo, tmp_path):
    resource = local_resource(repo, tmp_path)
    with dg.instance_for_test() as first_instance:
        first = tick(first_instance, resource)
        run_batch(first_instance, resource, first)
    with dg.instance_for_test() as fresh_instance:
        result = tick(fresh_instance, resource, first.cursor)
        assert not result.run_requests
        (request,) = result.dynamic_partitions_requests
        assert sorted(request.partition_keys) == sorted(
            partition_key_for_path(path) for path in FILES
        )


def test_capped_batch_report_says_more_follow(instance, repo, tmp_path, monkeypatch):
    from wryte_pipeline.report import build_report, render_markdown, render_text

    monkeypatch.setenv("WRYTE_MAX_PATHS_PER_TICK", "4")
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    run_batch(instance, resource, first)
    store = ContentStore(resource.settings().resolved_database_url)
    report = build_report(store, store.get_batch(first.run_requests[0].tags[BATCH_TAG]))
    assert "wait for a later tick" in render_text(report)
    assert "wait for a later tick" in render_markdown(report)


BROKEN = b"---\ntitle: Notes: part two\n---\nBody\n"


def run_failed_file_runs(instance, resource, result):
    """Execute a tick's failed-file runs as the daemon would; each is expected to fail."""
    runs = [request for request in result.run_requests if BATCH_TAG not in request.tags]
    for request in runs:
        outcome = defs.resolve_job_def(request.job_name).execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            resources={"wryte": resource},
            raise_on_error=False,
        )
        assert not outcome.success
    return runs


def test_failed_file_partition_status(instance, repo, tmp_path):
    commit_files(repo, {"posts/broken.md": BROKEN}, "add a broken file")
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    run_batch(instance, resource, first)
    broken_key = partition_key_for_path("posts/broken.md")
    assert partition_statuses(instance)[broken_key] == "MISSING"

    second = tick(instance, resource, first.cursor)
    runs = run_failed_file_runs(instance, resource, second)
    assert [run.partition_key for run in runs] == [broken_key]
    assert runs[0].job_name == "markdown_document_job"
    assert runs[0].tags["dagster/priority"] == "-1", "sync runs should start first"
    statuses = partition_statuses(instance)
    assert statuses.pop(broken_key) == "FAILED"
    assert set(statuses.values()) == {"MATERIALIZED"}
    batch_id = SensorCursor.parse(first.cursor).batch_id
    (failed_run,) = instance.get_runs(filters=dg.RunsFilter(tags={FAILED_IN_BATCH_TAG: batch_id}))
    (failure,) = instance.all_logs(failed_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert "posts/broken.md, line 2" in failure.dagster_event.step_failure_data.error.message

    third = tick(instance, resource, second.cursor)
    assert not third.run_requests, "a batch's failed files get their runs once"

    commit_files(repo, {"posts/broken.md": b"---\ntitle: 'Notes: part two'\n---\n"}, "fix")
    fourth = tick(instance, resource, third.cursor)
    run_batch(instance, resource, fourth)
    assert partition_statuses(instance)[broken_key] == "MATERIALIZED"
    assert not run_failed_file_runs(instance, resource, tick(instance, resource, fourth.cursor))


def test_failed_file_runs_capped_by_setting(instance, repo, tmp_path, monkeypatch):
    monkeypatch.setenv("WRYTE_MAX_FAILED_FILE_RUNS", "1")
    commit_files(repo, {"posts/broken-1.md": BROKEN, "posts/broken-2.md": BROKEN}, "break")
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    run_batch(instance, resource, first)
    assert (
        len(run_failed_file_runs(instance, resource, tick(instance, resource, first.cursor))) == 1
    )

    monkeypatch.setenv("WRYTE_MAX_FAILED_FILE_RUNS", "0")
    resource = local_resource(repo, tmp_path)
    commit_files(repo, {"posts/broken-3.md": BROKEN}, "break again")
    second = tick(instance, resource, first.cursor)
    run_batch(instance, resource, second)
    assert not tick(instance, resource, second.cursor).run_requests


def test_failed_file_run_refetches_changed_file(instance, repo, tmp_path):
    """A failed-file run whose file has a newer outcome does a normal fetch instead."""
    resource = local_resource(repo, tmp_path)
    first = tick(instance, resource)
    run_batch(instance, resource, first)
    outcome = defs.resolve_job_def("markdown_document_job").execute_in_process(
        instance=instance,
        partition_key=partition_key_for_path("posts/post-01.md"),
        tags={FAILED_IN_BATCH_TAG: SensorCursor.parse(first.cursor).batch_id},
        resources={"wryte": resource},
    )
    assert outcome.success
