from datetime import UTC, datetime

from wryte_pipeline.store import ContentStore


def document(path: str, blob_sha: str = "a" * 40, **values) -> dict:
    row = {
        "path": path,
        "blob_sha": blob_sha,
        "commit_sha": "c" * 40,
        "format": "yaml",
        "front_matter": {"title": "Hello", "tags": ["a", "b"], "nested": {"k": 1}},
        "title": "Hello",
        "slug": "hello",
        "date": datetime(2024, 2, 3, 4, 5, tzinfo=UTC),
        "publish_at": None,
        "expire_at": None,
        "draft": False,
        "tags": ["a", "b"],
        "categories": [],
        "description": None,
        "body": "Body\r\nline two\r",
        "updated_at": datetime.now(UTC),
    }
    row.update(values)
    return row


def outcome(batch_id: str, path: str, status: str = "succeeded", **values) -> dict:
    return {"batch_id": batch_id, "path": path, "status": status, **values}


def new_batch(store: ContentStore, items=()):
    return store.create_batch(
        repo="owner/name",
        base_commit=None,
        head_commit="c" * 40,
        items=list(items),
        complete=True,
    )


def test_store_upsert_keeps_body_exact(store):
    store.write_results([document("a.md")], [], [])
    row = store.document_rows(["a.md"])["a.md"]
    assert row["body"] == "Body\r\nline two\r"
    assert row["front_matter"] == {"title": "Hello", "tags": ["a", "b"], "nested": {"k": 1}}
    assert row["tags"] == ["a", "b"]


def test_store_upsert_replaces_row(store):
    store.write_results([document("a.md")], [], [])
    store.write_results([document("a.md", "b" * 40, title="New")], [], [])
    assert store.stored_blobs() == {"a.md": "b" * 40}
    assert store.document_rows(["a.md"])["a.md"]["title"] == "New"


def test_store_upsert_idempotent(store):
    for _ in range(3):
        store.write_results([document("a.md"), document("b.md")], [], [])
    assert store.document_count() == 2


def test_store_delete_removes_rows(store):
    store.write_results([document("a.md"), document("b.md")], [], [])
    store.write_results([], ["a.md"], [])
    assert store.stored_blobs() == {"b.md": "a" * 40}


def test_store_outcomes_are_rows(store):
    batch = new_batch(store, [{"action": "upsert", "path": "a.md"}])
    store.insert_outcomes([outcome(batch.id, "a.md"), outcome(batch.id, "b.md", "failed")])
    store.insert_outcomes([outcome(batch.id, "c.md", "deleted")])
    counts = store.outcome_counts(batch.id)
    assert counts == {"succeeded": 1, "failed": 1, "deleted": 1, "skipped": 0, "deferred": 0}
    assert [row["path"] for row in store.outcomes(batch.id)] == ["a.md", "b.md", "c.md"]


def test_store_settled_uses_latest_outcome(store):
    batch = new_batch(store)
    sha = "d" * 40
    store.insert_outcomes([outcome(batch.id, "bad.md", "failed", blob_sha=sha)])
    assert store.settled_blobs() == {"bad.md": sha}
    store.insert_outcomes([outcome(batch.id, "bad.md", "succeeded", blob_sha="e" * 40)])
    assert store.settled_blobs() == {}


def test_store_retryable_failure_not_settled(store):
    batch = new_batch(store)
    store.insert_outcomes([outcome(batch.id, "x.md", "failed", retryable=True)])
    assert store.settled_blobs() == {}
    assert store.retryable_failures(batch.id) == 1


def test_store_permanent_failures_use_latest_outcome(store):
    batch = new_batch(store)
    store.insert_outcomes(
        [
            outcome(batch.id, "bad.md", "failed"),
            outcome(batch.id, "flaky.md", "failed", retryable=True),
            outcome(batch.id, "retried.md", "failed", retryable=True),
            outcome(batch.id, "retried.md", "succeeded"),
            outcome(batch.id, "good.md"),
        ]
    )
    assert store.permanent_failures(batch.id) == ["bad.md"]


def test_store_latest_failures_across_batches(store):
    first = new_batch(store)
    store.insert_outcomes(
        [
            outcome(first.id, "bad.md", "failed", error="bad"),
            outcome(first.id, "fixed.md", "failed"),
        ]
    )
    second = new_batch(store)
    store.insert_outcomes([outcome(second.id, "fixed.md", "succeeded")])
    failures = store.latest_failures(["bad.md", "fixed.md", "unknown.md"])
    assert list(failures) == ["bad.md"]
    assert failures["bad.md"]["batch_id"] == first.id
    assert failures["bad.md"]["error"] == "bad"
    assert store.latest_failures([]) == {}


def test_store_batch_round_trip(store):
    items = [{"action": "upsert", "path": "a.md", "sha": "a" * 40}]
    batch = new_batch(store, items)
    assert store.get_batch(batch.id).items == items
    assert store.latest_batch().id == batch.id
    store.finish_batch(batch.id, requests_used=7)
    finished = store.get_batch(batch.id)
    assert finished.requests_used == 7
    assert finished.finished_at is not None
    assert finished.finished_at.tzinfo is not None


def test_store_rejects_unknown_status(store):
    batch = new_batch(store)
    try:
        store.insert_outcomes([outcome(batch.id, "a.md", "exploded")])
    except ValueError as error:
        assert "exploded" in str(error)
    else:
        raise AssertionError("an unknown status was stored")


def test_store_stores_unicode_paths(store):
    nfc = "notes/caf\u00e9.md"
    nfd = "notes/cafe\u0301.md"
    store.write_results([document(nfc), document(nfd)], [], [])
    assert set(store.stored_blobs()) == {nfc, nfd}
