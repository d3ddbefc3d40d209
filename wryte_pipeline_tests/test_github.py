import pytest

from wryte_pipeline.errors import (
    AuthenticationError,
    RateLimitExhaustedError,
    RepositoryNotFoundError,
)
from wryte_pipeline.github import GitHubSource
from wryte_pipeline.source import git_blob_sha
from wryte_pipeline_tests.corpora import ls_tree, make_repo

FILES = {
    "README.md": b"# Readme\n",
    "docs/a.md": b"---\ntitle: A\n---\nBody A\n",
    "docs/deep/b.md": b"---\ntitle: B\n---\nBody B\n",
    "docs/deep/er/c.md": b"C\n",
    "docs/link.md": ("symlink", "../README.md"),
}


@pytest.fixture
def served(fake_github, tmp_path):
    head = make_repo(tmp_path / "repo", FILES)
    fake_github.add_repo("octo/docs", tmp_path / "repo")
    return fake_github, tmp_path / "repo", head


def source_for(fake, **options) -> GitHubSource:
    options.setdefault("sleep", lambda seconds: None)
    return GitHubSource("octo/docs", api_url=fake.url, **options)


def test_github_check_access_finds_default_branch(served):
    fake, _repo, _head = served
    source = source_for(fake)
    source.check_access()
    assert source.branch == "main"


def test_github_unknown_repository_named(served):
    fake, _repo, _head = served
    source = GitHubSource("octo/missing", api_url=fake.url)
    with pytest.raises(RepositoryNotFoundError, match="WRYTE_REPO"):
        source.check_access()


def test_github_bad_token_rejected(tmp_path):
    from wryte_pipeline_tests.fake_github import FakeGitHub

    make_repo(tmp_path / "repo", FILES)
    with FakeGitHub(tokens={"right-token"}) as fake:
        fake.add_repo("octo/docs", tmp_path / "repo")
        source = GitHubSource("octo/docs", api_url=fake.url, token="wrong-token")
        with pytest.raises(AuthenticationError, match="GITHUB_TOKEN") as caught:
            source.check_access()
    assert "wrong-token" not in str(caught.value)
    assert "wrong-token" not in repr(source)


def test_github_head_unchanged_costs_nothing(served):
    fake, _repo, head = served
    source = source_for(fake, branch="main")
    first = source.resolve_head()
    assert first.commit_sha == head
    used = source.requests_used
    again = source.resolve_head(first.etag)
    assert again.commit_sha is None
    assert source.requests_used == used
    assert fake.stats.not_modified == 1


def test_github_tree_lists_modes(served):
    fake, repo, head = served
    entries = {entry.path: entry for entry in source_for(fake).list_tree(head)}
    expected = ls_tree(repo, head)
    assert {path: (e.mode, e.sha) for path, e in entries.items()} == expected
    assert entries["docs/link.md"].skip_reason is not None


def test_github_truncated_tree_walks_subtrees(served):
    fake, repo, head = served
    fake.set_faults(truncate_trees_over=2)
    entries = source_for(fake).list_tree(head)
    assert {e.path: (e.mode, e.sha) for e in entries} == ls_tree(repo, head)


def test_github_blob_pool_fetches_each(served):
    fake, _repo, head = served
    source = source_for(fake, tarball_threshold=1000)
    entries = [e for e in source.list_tree(head) if e.skip_reason is None]
    blobs = {blob.path: blob for blob in source.fetch_blobs(entries, head)}
    for entry in entries:
        assert git_blob_sha(blobs[entry.path].data) == entry.sha
    assert fake.stats.blobs == len(entries)
    assert fake.stats.tarballs == 0


def test_github_tarball_above_threshold(served):
    fake, _repo, head = served
    source = source_for(fake, tarball_threshold=2)
    entries = [e for e in source.list_tree(head) if e.skip_reason is None]
    blobs = {blob.path: blob for blob in source.fetch_blobs(entries, head)}
    assert set(blobs) == {e.path for e in entries}
    assert fake.stats.tarballs == 1
    assert fake.stats.blobs == 0


def test_github_retries_server_errors(served):
    fake, _repo, head = served
    source = source_for(fake, tarball_threshold=1000, concurrency=1)
    entries = [e for e in source.list_tree(head) if e.skip_reason is None]
    fake.set_faults(error_rate=0.5, seed=3)
    blobs = list(source.fetch_blobs(entries, head))
    fetched = [blob for blob in blobs if blob.data is not None]
    assert fake.stats.errors_injected > 0
    assert any(blob.attempts > 1 for blob in fetched)
    for blob in blobs:
        if blob.data is None:
            assert blob.attempts == 3
            assert "502" in str(blob.error)


def test_github_spent_limit_stops_without_sleep(served):
    fake, _repo, head = served
    waits: list[float] = []
    source = GitHubSource(
        "octo/docs", api_url=fake.url, tarball_threshold=1000, concurrency=1, sleep=waits.append
    )
    entries = [e for e in source.list_tree(head) if e.skip_reason is None]
    fake.set_faults(primary_limit=0, primary_window_seconds=1000)
    blobs = list(source.fetch_blobs(entries, head))
    assert waits == []
    assert all(isinstance(blob.error, RateLimitExhaustedError) for blob in blobs)
    assert blobs[0].error.retry_after_seconds > 900
    assert fake.stats.rate_limited == 1


def test_github_secondary_limit_slows_down(served):
    fake, _repo, head = served
    waits: list[float] = []
    source = GitHubSource(
        "octo/docs", api_url=fake.url, tarball_threshold=1000, concurrency=4, sleep=waits.append
    )
    entries = [e for e in source.list_tree(head) if e.skip_reason is None]
    fake.set_faults(secondary_limit_concurrency=1, secondary_retry_after=2, latency_seconds=0.05)
    blobs = list(source.fetch_blobs(entries * 3, head))
    assert fake.stats.rate_limited > 0
    assert waits
    assert min(waits) >= 2
    assert source.current_concurrency < 4
    assert sum(blob.data is not None for blob in blobs) >= len(blobs) - 1
