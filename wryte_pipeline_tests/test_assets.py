import dagster as dg
import pytest

from wryte_pipeline.assets import batch_report, content_table, markdown_document
from wryte_pipeline.partitions import PARTITIONS_NAME, partition_key_for_path
from wryte_pipeline.resources import WryteResource
from wryte_pipeline.store import ContentStore
from wryte_pipeline_tests.corpora import commit_files, make_repo
from wryte_pipeline_tests.helpers import expected_documents, stored_documents

FILES = {
    "posts/hello world.md": b"---\ntitle: Hello\ndraft: no\n---\nBody\r\n",
    "posts/second.md": b'+++\ntitle = "Second"\n+++\nText\n',
    "posts/broken.md": b"---\ntitle: Notes: part two\n---\n",
}


@pytest.fixture
def setup(tmp_path, database_url):
    head = make_repo(tmp_path / "repo", FILES)
    resource = WryteResource(repository=str(tmp_path / "repo"), database_url=database_url)
    return tmp_path / "repo", head, resource, database_url


def test_markdown_document_materializes_partition(setup):
    _repo, head, resource, database_url = setup
    key = partition_key_for_path("posts/hello world.md")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
        context = dg.build_asset_context(partition_key=key, instance=instance)
        result = markdown_document(context, resource)
    assert result.metadata["commit_sha"] == head
    row = ContentStore(database_url).document_rows(["posts/hello world.md"])
    assert row["posts/hello world.md"]["title"] == "Hello"
    assert row["posts/hello world.md"]["body"] == "Body\r\n"
    assert row["posts/hello world.md"]["draft"] is False


def test_markdown_document_broken_fails_without_retry(setup):
    _repo, _head, resource, database_url = setup
    key = partition_key_for_path("posts/broken.md")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
        context = dg.build_asset_context(partition_key=key, instance=instance)
        with pytest.raises(dg.Failure, match="line 2") as caught:
            markdown_document(context, resource)
    assert caught.value.allow_retries is False
    outcomes = ContentStore(database_url).outcomes(ContentStore(database_url).latest_batch().id)
    assert outcomes[0]["status"] == "failed"
    assert "posts/broken.md, line 2" in outcomes[0]["error"]


def test_markdown_document_removed_path_deletes_row(setup):
    repo, _head, resource, database_url = setup
    key = partition_key_for_path("posts/second.md")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
        markdown_document(dg.build_asset_context(partition_key=key, instance=instance), resource)
        commit_files(repo, {"posts/second.md": None}, "remove")
        markdown_document(dg.build_asset_context(partition_key=key, instance=instance), resource)
    assert "posts/second.md" not in stored_documents(database_url)


def test_content_table_materializes_whole_repository(setup):
    repo, head, resource, database_url = setup
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [markdown_document, content_table, batch_report],
            selection=[content_table, batch_report],
            instance=instance,
            resources={"wryte": resource},
        )
        assert result.success
        partitions = instance.get_dynamic_partitions(PARTITIONS_NAME)
        materialized = instance.get_materialized_partitions(markdown_document.key)
    expected = expected_documents(repo, head)
    expected.pop("posts/broken.md")
    assert stored_documents(database_url) == expected
    assert len(partitions) == 3
    assert materialized == {partition_key_for_path(path) for path in expected}
    report = result.asset_materializations_for_node("batch_report")[0].metadata
    assert report["failed"].value == 1
    assert "posts/broken.md" in report["report"].value


def test_cli_backfill_materializes_partitions(setup, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    repo, head, resource, database_url = setup
    home = tmp_path / "dagster-home"
    home.mkdir()
    keys = [partition_key_for_path(path) for path in ("posts/hello world.md", "posts/second.md")]
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "WRYTE_REPO": str(repo),
        "WRYTE_DATABASE_URL": database_url,
    }
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions(PARTITIONS_NAME, keys)
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "wryte_pipeline.definitions",
        "--select",
        "markdown_document",
        "--partition-range",
        f"{keys[0]}...{keys[1]}",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stored = stored_documents(database_url)
    assert set(stored) == {"posts/hello world.md", "posts/second.md"}
