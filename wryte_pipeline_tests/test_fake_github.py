"""Tests of the fake GitHub server, through real HTTP and unmodified PyGithub."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import github
import pytest
import requests
from github import Auth, Github, GithubException
from github.ContentFile import ContentFile
from github.Repository import Repository

from wryte_pipeline_tests.corpora import (
    FileEntry,
    clone_corpus,
    commit_files,
    first_parent_commits,
    ls_tree,
    make_repo,
    run_git,
)
from wryte_pipeline_tests.fake_github import MAX_CONTENTS_BYTES, FakeGitHub

SUBMODULE_SHA = "1" * 40
UNICODE_PATH = "docs/with space é.md"
SMALL_FILES: dict[str, FileEntry] = {
    "README.md": b"# Small\n",
    "docs/intro.md": b"---\ntitle: Intro\n---\nHello\n",
    UNICODE_PATH: "é and space\n".encode(),
    "docs/big.md": b"x" * (MAX_CONTENTS_BYTES + 10),
    "link.md": ("symlink", "README.md"),
    "vendor/theme": ("submodule", SUBMODULE_SHA),
}


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def client(fake: FakeGitHub, token: str | None = None, base_url: str | None = None) -> Github:
    return Github(
        base_url=base_url or fake.url,
        auth=Auth.Token(token) if token else None,
        retry=None,
        seconds_between_requests=None,
        timeout=10,
    )


def get_file(repo: Repository, path: str, ref: str | None = None) -> ContentFile:
    content = repo.get_contents(path, ref=ref) if ref else repo.get_contents(path)
    assert isinstance(content, ContentFile), f"{path} is a folder"
    return content


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def http_post(url: str, payload: object) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def jekyll_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clone_corpus("jekyll-docs", tmp_path_factory.mktemp("corpora") / "jekyll-docs")


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("small") / "small"
    make_repo(repo, SMALL_FILES)
    commit_files(repo, {"docs/intro.md": b"Hello again\n", "README.md": None}, "Edit intro")
    return repo


@pytest.fixture
def fake(jekyll_repo: Path, small_repo: Path) -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_repo("jekyll/jekyll", jekyll_repo)
        server.add_repo("wryte/small", small_repo)
        yield server


def test_repo_and_branch_fields(fake, jekyll_repo):
    head = first_parent_commits(jekyll_repo)[-1]
    repo = client(fake).get_repo("jekyll/jekyll")

    assert repo.full_name == "jekyll/jekyll"
    assert repo.name == "jekyll"
    assert repo.owner.login == "jekyll"
    assert repo.default_branch == "main"
    assert repo.private is False

    branch = repo.get_branch("main")
    tree_sha = run_git(jekyll_repo, "rev-parse", f"{head}^{{tree}}").decode().strip()
    assert branch.name == "main"
    assert branch.commit.sha == head
    assert branch.commit.commit.tree.sha == tree_sha
    assert repo.get_git_ref("heads/main").object.sha == head


def test_commit_endpoints_parents(fake, jekyll_repo):
    commits = first_parent_commits(jekyll_repo)
    repo = client(fake).get_repo("jekyll/jekyll")

    commit = repo.get_commit(commits[-1])
    assert commit.sha == commits[-1]
    assert commits[-2] in [parent.sha for parent in commit.parents]
    assert commit.commit.message

    git_commit = repo.get_git_commit(commits[-1])
    assert git_commit.tree.sha == commit.commit.tree.sha
    assert [parent.sha for parent in git_commit.parents] == [p.sha for p in commit.parents]
    assert git_commit.author.date.year >= 2008


def test_recursive_tree_matches_git(fake, jekyll_repo):
    head = first_parent_commits(jekyll_repo)[-1]
    expected = ls_tree(jekyll_repo, head)
    tree = client(fake).get_repo("jekyll/jekyll").get_git_tree("main", recursive=True)

    blobs = {entry.path: (entry.mode, entry.sha) for entry in tree.tree if entry.type == "blob"}
    folders = [entry.path for entry in tree.tree if entry.type == "tree"]
    assert tree.truncated is False
    assert blobs == expected
    assert "docs" in folders
    assert all(entry.size is not None for entry in tree.tree if entry.type == "blob")
    git_order = run_git(jekyll_repo, "ls-tree", "-r", "-t", "--name-only", head).decode()
    assert [entry.path for entry in tree.tree] == git_order.splitlines()


def test_tree_accepts_commit_tree_branch(fake, jekyll_repo):
    head = first_parent_commits(jekyll_repo)[-1]
    repo = client(fake).get_repo("jekyll/jekyll")
    tree_sha = repo.get_branch("main").commit.commit.tree.sha

    by_branch = repo.get_git_tree("main", recursive=True)
    by_commit = repo.get_git_tree(head, recursive=True)
    by_tree = repo.get_git_tree(tree_sha, recursive=True)

    assert by_branch.sha == by_commit.sha == by_tree.sha == tree_sha
    assert len(by_branch.tree) == len(by_commit.tree) == len(by_tree.tree)


def test_tree_one_level_entry_types(fake, small_repo):
    tree = client(fake).get_repo("wryte/small").get_git_tree("main")
    entries = {entry.path: (entry.type, entry.mode) for entry in tree.tree}

    assert entries == {
        "docs": ("tree", "040000"),
        "link.md": ("blob", "120000"),
        "vendor": ("tree", "040000"),
    }
    nested = client(fake).get_repo("wryte/small").get_git_tree("main", recursive=True)
    submodule = [entry for entry in nested.tree if entry.path == "vendor/theme"]
    assert submodule[0].type == "commit"
    assert submodule[0].sha == SUBMODULE_SHA


def test_tree_truncation_switch(fake):
    repo = client(fake).get_repo("jekyll/jekyll")
    fake.set_faults(truncate_trees_over=10)

    truncated = repo.get_git_tree("main", recursive=True)
    one_level = repo.get_git_tree("main")
    assert truncated.truncated is True
    assert len(truncated.tree) == 10
    assert one_level.truncated is False

    fake.set_faults(truncate_trees_over=None)
    full = repo.get_git_tree("main", recursive=True)
    assert full.truncated is False
    assert len(full.tree) > 10


def test_blob_base64_and_raw(fake, jekyll_repo):
    head = first_parent_commits(jekyll_repo)[-1]
    path, (_, sha) = sorted(ls_tree(jekyll_repo, head).items())[0]
    data = (jekyll_repo / path).read_bytes()
    blob = client(fake).get_repo("jekyll/jekyll").get_git_blob(sha)

    assert blob.sha == sha
    assert blob.size == len(data)
    assert blob.encoding == "base64"
    assert base64.b64decode(blob.content) == data
    assert max(len(line) for line in blob.content.splitlines()) <= 60

    url = f"{fake.url}/repos/jekyll/jekyll/git/blobs/{sha}"
    status, _, raw = http_get(url, {"Accept": "application/vnd.github.raw+json"})
    assert status == 200
    assert raw == data


def test_etag_not_modified_is_free(fake):
    requester = client(fake).requester
    status, headers, _ = requester.requestJson("GET", "/repos/jekyll/jekyll/branches/main")
    counted_before = fake.stats.counted

    etag = headers["etag"]
    status, headers, body = requester.requestJson(
        "GET", "/repos/jekyll/jekyll/branches/main", headers={"If-None-Match": etag}
    )

    assert status == 304
    assert body == ""
    assert headers["etag"] == etag
    assert fake.stats.not_modified == 1
    assert fake.stats.counted == counted_before
    assert headers["x-ratelimit-used"] == str(counted_before)


def test_contents_files_and_folders(fake, small_repo):
    repo = client(fake).get_repo("wryte/small")

    intro = get_file(repo, "docs/intro.md")
    assert intro.decoded_content == b"Hello again\n"
    unicode_file = get_file(repo, UNICODE_PATH)
    assert unicode_file.decoded_content == "é and space\n".encode()
    assert unicode_file.name == "with space é.md"
    old_readme = get_file(repo, "README.md", ref=first_parent_commits(small_repo)[0])
    assert old_readme.decoded_content == b"# Small\n"

    listing = repo.get_contents("docs")
    assert isinstance(listing, list)
    assert sorted(item.name for item in listing) == ["big.md", "intro.md", "with space é.md"]
    assert get_file(repo, "link.md").raw_data["target"] == "README.md"
    assert get_file(repo, "vendor/theme").type == "submodule"
    with pytest.raises(github.UnknownObjectException):
        repo.get_contents("README.md")


def test_contents_empty_over_one_megabyte(fake):
    big = get_file(client(fake).get_repo("wryte/small"), "docs/big.md")

    assert big.size == MAX_CONTENTS_BYTES + 10
    assert big.encoding == "none"
    assert big.content == ""


def test_tarball_matches_tree_blobs(fake, jekyll_repo):
    head = first_parent_commits(jekyll_repo)[-1]
    expected = {path: sha for path, (_, sha) in ls_tree(jekyll_repo, head).items()}
    link = client(fake).get_repo("jekyll/jekyll").get_archive_link("tarball", "main")
    counted_after_redirect = fake.stats.counted

    found: dict[str, str] = {}
    with requests.get(link, stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert "Content-Length" not in response.headers
        with tarfile.open(fileobj=response.raw, mode="r|gz") as archive:
            for member in archive:
                if member.isfile():
                    data = archive.extractfile(member).read()  # type: ignore[union-attr]
                    found[member.name.split("/", 1)[1]] = blob_sha(data)

    assert link.endswith(f"/legacy.tar.gz/{head}")
    assert found == expected
    assert fake.stats.tarballs == 1
    assert fake.stats.counted == counted_after_redirect


def test_tarball_prefix_and_default_ref(fake, small_repo):
    head = first_parent_commits(small_repo)[-1]
    response = requests.get(f"{fake.url}/repos/wryte/small/tarball", timeout=10)

    assert response.history[0].status_code == 302
    assert response.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        names = archive.getnames()
    assert f"wryte-small-{head[:7]}/docs/intro.md" in names


def test_primary_limit_then_reset(fake):
    fake.set_faults(primary_limit=3, primary_window_seconds=1.5)
    repo = client(fake).get_repo("jekyll/jekyll")  # costs 1
    repo.get_branch("main")
    repo.get_branch("main")

    with pytest.raises(github.RateLimitExceededException) as caught:
        repo.get_branch("main")
    headers = caught.value.headers
    assert headers is not None
    assert caught.value.status == 403
    assert headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) >= int(time.time())
    assert int(headers["x-ratelimit-reset"]) <= time.time() + 1.5 + 1
    assert fake.stats.rate_limited == 1
    assert client(fake).get_rate_limit().resources.core.remaining == 0

    time.sleep(1.6)
    assert repo.get_branch("main").name == "main"


def test_primary_limit_status_429(fake):
    fake.set_faults(primary_limit=0, primary_status=429)
    status, headers, body = client(fake).requester.requestJson("GET", "/repos/jekyll/jekyll")

    assert status == 429
    assert json.loads(body)["message"].startswith("API rate limit exceeded")
    assert headers["x-ratelimit-remaining"] == "0"


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_limit_under_concurrency(fake, status):
    fake.set_faults(
        latency_seconds=0.5,
        secondary_limit_concurrency=2,
        secondary_status=status,
        secondary_retry_after=7,
    )
    barrier = threading.Barrier(6)
    results: list[tuple[int, dict[str, Any], str]] = []

    def fetch() -> None:
        requester = client(fake).requester
        barrier.wait()
        results.append(requester.requestJson("GET", "/repos/jekyll/jekyll"))

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(result[0] for result in results)
    rejected = [result for result in results if result[0] == status]
    assert statuses.count(200) == 2
    assert len(rejected) == 4
    assert all(headers["retry-after"] == "7" for _, headers, _ in rejected)
    assert all("secondary rate limit" in body for _, _, body in rejected)
    assert fake.stats.rate_limited == 4
    assert fake.stats.counted == 2
    assert fake.stats.max_in_flight == 6


def test_error_injection_is_seeded(fake):
    requester = client(fake).requester
    fake.set_faults(error_rate=0.5, seed=7)
    first = [requester.requestJson("GET", "/rate_limit")[0] for _ in range(20)]
    fake.set_faults(seed=7)
    second = [requester.requestJson("GET", "/rate_limit")[0] for _ in range(20)]

    assert first == second
    assert set(first) == {200, 502}
    assert fake.stats.errors_injected == 2 * first.count(502)


def test_error_502_costs_nothing(fake):
    fake.set_faults(error_rate=1.0)

    with pytest.raises(GithubException) as caught:
        client(fake).get_repo("jekyll/jekyll")
    assert caught.value.status == 502
    assert fake.stats.counted == 0
    assert fake.rate_snapshot()["used"] == 0


def test_connection_reset_raises(fake):
    fake.set_faults(reset_rate=1.0)

    with pytest.raises(requests.exceptions.ConnectionError):
        client(fake).get_repo("jekyll/jekyll")
    assert fake.stats.resets_injected == 1
    assert fake.stats.log[-1] == ("GET", "/repos/jekyll/jekyll", 0)

    fake.set_faults(reset_rate=0.0)
    assert client(fake).get_repo("jekyll/jekyll").name == "jekyll"


def test_tokens_and_private_repos(jekyll_repo):
    with FakeGitHub(tokens={"good-token"}) as server:
        server.add_repo("wryte/private", jekyll_repo, private=True)
        server.add_repo("wryte/public", jekyll_repo)

        with pytest.raises(github.BadCredentialsException) as caught:
            client(server, "wrong-token").get_repo("wryte/public")
        assert caught.value.status == 401
        assert client(server).get_repo("wryte/public").private is False
        with pytest.raises(github.UnknownObjectException):
            client(server).get_repo("wryte/private")
        assert client(server, "good-token").get_repo("wryte/private").private is True
        assert client(server, "good-token").get_user().login == "fake-user"


def test_unknown_objects_not_found(fake):
    gh = client(fake)
    with pytest.raises(github.UnknownObjectException):
        gh.get_repo("nobody/nothing")

    repo = gh.get_repo("jekyll/jekyll")
    with pytest.raises(github.UnknownObjectException):
        repo.get_branch("no-such-branch")
    with pytest.raises(github.UnknownObjectException):
        repo.get_git_blob("0" * 40)
    with pytest.raises(GithubException) as caught:
        repo.get_commit("0" * 40)
    assert caught.value.status == 422


def test_set_head_advances_branch(jekyll_repo):
    commits = first_parent_commits(jekyll_repo)
    with FakeGitHub() as server:
        assert server.add_repo("jekyll/jekyll", jekyll_repo, head=commits[10]) == commits[10]
        requester = client(server).requester
        _, headers, _ = requester.requestJson("GET", "/repos/jekyll/jekyll/branches/main")
        etag = headers["etag"]

        server.set_head("jekyll/jekyll", commits[11])
        status, _, body = requester.requestJson(
            "GET", "/repos/jekyll/jekyll/branches/main", headers={"If-None-Match": etag}
        )
        assert status == 200
        assert json.loads(body)["commit"]["sha"] == commits[11]
        tree = client(server).get_repo("jekyll/jekyll").get_git_tree("main", recursive=True)
        blobs = {entry.path: entry.sha for entry in tree.tree if entry.type == "blob"}
        assert blobs == {path: sha for path, (_, sha) in ls_tree(jekyll_repo, commits[11]).items()}

        with pytest.raises(ValueError, match="not a commit"):
            server.set_head("jekyll/jekyll", "f" * 40)
        with pytest.raises(KeyError, match="not served"):
            server.set_head("nobody/nothing", commits[0])


def test_control_endpoints(fake, jekyll_repo):
    commits = first_parent_commits(jekyll_repo)

    status, faults = http_post(f"{fake.url}/_fake/faults", {"truncate_trees_over": 5})
    assert status == 200
    assert faults["truncate_trees_over"] == 5
    assert fake.faults.truncate_trees_over == 5
    status, error = http_post(f"{fake.url}/_fake/faults", {"no_such_fault": 1})
    assert status == 400
    assert "no_such_fault" in error["message"]
    status, error = http_post(f"{fake.url}/_fake/faults", {"error_rate": 2})
    assert status == 400
    assert "error_rate" in error["message"]

    status, head = http_post(
        f"{fake.url}/_fake/head", {"repo": "jekyll/jekyll", "sha": commits[3]}
    )
    assert status == 200
    assert head["sha"] == commits[3]
    assert client(fake).get_repo("jekyll/jekyll").get_branch("main").commit.sha == commits[3]

    status, _, body = http_get(f"{fake.url}/_fake/stats?log=1")
    stats = json.loads(body)
    assert status == 200
    assert stats["requests"] == 2
    assert stats["counted"] == 2
    assert stats["rate"]["remaining"] == 4998
    assert stats["log"][-1] == ["GET", "/repos/jekyll/jekyll/branches/main", 200]

    status, reset = http_post(f"{fake.url}/_fake/stats/reset", {})
    assert status == 200
    assert reset["requests"] == 0
    assert fake.stats.log == []


def test_headers_and_rate_limit_endpoint(fake):
    status, headers, _ = http_get(f"{fake.url}/repos/jekyll/jekyll")
    assert status == 200
    for name in ("Limit", "Remaining", "Reset", "Used", "Resource"):
        assert headers[f"X-RateLimit-{name}"]
    assert headers["X-GitHub-Request-Id"]
    assert headers["ETag"].startswith('"')

    status, headers, body = http_get(f"{fake.url}/rate_limit")
    core = json.loads(body)["resources"]["core"]
    assert status == 200
    assert core["used"] == 1
    assert core["remaining"] == 4999
    assert headers["X-RateLimit-Used"] == "1"
    assert fake.stats.requests == 2
    assert fake.stats.counted == 1


def test_enterprise_api_prefix(fake):
    repo = client(fake, base_url=f"{fake.url}/api/v3").get_repo("jekyll/jekyll")

    assert repo.url == f"{fake.url}/api/v3/repos/jekyll/jekyll"
    assert repo.get_branch("main").name == "main"
    assert fake.stats.log[-1][1] == "/repos/jekyll/jekyll/branches/main"


def test_commit_files_deletes_and_adds(tmp_path):
    repo = tmp_path / "repo"
    first = make_repo(repo, {"a.md": b"a", "b/c.md": b"c"})
    second = commit_files(repo, {"a.md": None, "b/d.md": b"d"}, "Replace a")

    assert first_parent_commits(repo) == [first, second]
    assert sorted(ls_tree(repo, second)) == ["b/c.md", "b/d.md"]
    assert ls_tree(repo, second)["b/d.md"] == ("100644", blob_sha(b"d"))


def test_clone_missing_corpus_names_path(tmp_path, monkeypatch):
    monkeypatch.setenv("WRYTE_CORPORA_DIR", str(tmp_path))

    with pytest.raises(FileNotFoundError, match="no-such.bundle"):
        clone_corpus("no-such", tmp_path / "dest")


def test_command_line_serves_repo(small_repo):
    command = [sys.executable, "-m", "wryte_pipeline_tests.fake_github"]
    command += ["--repo", f"wryte/small={small_repo}", "--latency", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        status, _, body = http_get(f"{url}/repos/wryte/small")
        assert url.startswith("http://127.0.0.1:")
        assert status == 200
        assert json.loads(body)["full_name"] == "wryte/small"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0
