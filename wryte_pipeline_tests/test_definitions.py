import dagster as dg

from wryte_pipeline.definitions import defs


def test_definitions_load_offline(monkeypatch):
    monkeypatch.setenv("WRYTE_GITHUB_API_URL", "http://127.0.0.1:9")
    assert defs.resolve_job_def("sync_job") is not None
    assert defs.resolve_job_def("markdown_document_job") is not None
    assert defs.resolve_sensor_def("repository_sensor") is not None


def test_definitions_asset_graph():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"markdown_document", "content_table", "batch_report"}
    document = defs.resolve_assets_def("markdown_document")
    assert document.partitions_def is not None
    assert document.op.retry_policy.max_retries == 2
    assert document.op.retry_policy.delay == 1.5
    assert document.op.retry_policy.backoff == dg.Backoff.EXPONENTIAL


def test_sync_job_selects_table_and_report():
    job = defs.resolve_job_def("sync_job")
    assert {node.name for node in job.nodes} == {"content_table", "batch_report"}
