import dagster as dg

from wryte_pipeline.definitions import build_definitions, defs
from wryte_pipeline.repositories import RepositoryConfig


def test_definitions_load_offline(monkeypatch):
    monkeypatch.setenv("WRYTE_GITHUB_API_URL", "http://127.0.0.1:9")
    assert defs.resolve_job_def("sync_job") is not None
    assert defs.resolve_job_def("markdown_document_job") is not None
    assert defs.resolve_job_def("publish_job") is not None
    assert defs.resolve_job_def("content_check_job") is not None
    assert defs.resolve_sensor_def("repository_sensor") is not None
    assert defs.resolve_schedule_def("publish_schedule") is not None


def test_definitions_asset_graph():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"markdown_document", "content_table", "batch_report", "published_documents"}
    document = defs.resolve_assets_def("markdown_document")
    assert document.partitions_def is not None
    assert document.op.retry_policy.max_retries == 2
    assert document.op.retry_policy.delay == 1.5
    assert document.op.retry_policy.backoff == dg.Backoff.EXPONENTIAL
    checks = {key.name for key in graph.asset_check_keys}
    assert checks == {"content_matches_repository", "last_batch_parsed", "published_slugs_unique"}


def test_sync_job_selects_table_and_report():
    job = defs.resolve_job_def("sync_job")
    names = {node.name for node in job.nodes}
    assert "content_table" in names
    assert "batch_report" in names
    assert "published_documents" in names
    assert not any("content_matches_repository" in name for name in names)


def test_definitions_one_set_per_repository():
    configs = [
        RepositoryConfig(name="docs", repo="octo/docs", table_prefix="docs_"),
        RepositoryConfig(name="blog", repo="octo/blog", table_prefix="blog_"),
    ]
    several = build_definitions(configs)
    keys = {key.to_user_string() for key in several.resolve_asset_graph().get_all_asset_keys()}
    assert "docs/markdown_document" in keys
    assert "blog/content_table" in keys
    assert several.resolve_sensor_def("docs_repository_sensor") is not None
    assert several.resolve_sensor_def("blog_repository_sensor") is not None
    assert several.resolve_job_def("blog_sync_job") is not None
    document = several.resolve_assets_def(dg.AssetKey(["docs", "markdown_document"]))
    assert document.partitions_def.name == "docs_markdown_files"
