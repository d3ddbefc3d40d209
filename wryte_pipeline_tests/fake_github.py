"""Fake GitHub REST API over real git repositories, with fault switches, for tests and benchmarks.

FakeGitHub is a real HTTP server on 127.0.0.1 that PyGithub reaches unmodified through
``Github(base_url=fake.url)``. It serves the read endpoints the pipeline uses (repository,
branch, ref, commit, tree, blob, contents, tarball and rate limit) from git repositories on disk,
so SHAs, sizes and archives are the ones git computes. Paths may carry the ``/api/v3`` prefix of
GitHub Enterprise Server.

Faults apply in this order to each API request: latency, connection reset, secondary rate
limit, primary rate limit, injected 502, then the endpoint itself.

Rate-limit accounting: one budget (``Faults.primary_limit`` per window) is shared by all clients.
A request costs one unit when an endpoint responds with 200, 302 or a 4xx status. Responses of
304 (a matching ``If-None-Match``), ``GET /rate_limit``, rate-limit rejections, injected 502s,
resets and archive downloads from ``/_codeload`` cost nothing.

Control endpoints for a benchmark in another process (they skip faults and accounting):
``GET /_fake/stats`` (add ``?log=1`` for the request log), ``POST /_fake/stats/reset``,
``POST /_fake/faults`` with a JSON object of Faults fields, and ``POST /_fake/head`` with
``{"repo": "owner/name", "branch": "main", "sha": "..."}``.

Run ``python -m wryte_pipeline_tests.fake_github --help`` to serve repositories from a shell.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from wryte_pipeline_tests.corpora import (
    GitCommandError,
    GitObjectReader,
    TreeEntry,
    git_env,
    list_tree,
)

LOGGER = logging.getLogger(__name__)

USER_LOGIN = "fake-user"
# GitHub's contents API returns "content" only for files up to 1 MB; larger files come back with
# an empty "content" and encoding "none".
# NOTE: GitHub's docs do not say whether 1 MB is 10**6 or 2**20 bytes; this uses 2**20.
MAX_CONTENTS_BYTES = 1024 * 1024
_ARCHIVE_CHUNK_BYTES = 64 * 1024
_TREE_CACHE_ENTRIES = 256
_SHUTDOWN_POLL_SECONDS = 0.05  # max seconds stop() waits for the accept loop to see the shutdown
_API_PREFIX = "/api/v3"
_HEX_SHA = re.compile(r"[0-9a-f]{4,40}")
_JSON_TYPE = "application/json; charset=utf-8"
_RAW_TYPE = "application/vnd.github.raw"
_PRIMARY_MESSAGE = "API rate limit exceeded for {identity}."
_SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
_DOCS_URL = "https://docs.github.com/rest"


@dataclass
class Faults:
    """Fault switches, read on every request. Change them with FakeGitHub.set_faults.

    Assigning a field directly also takes effect at once, but only set_faults validates the
    value, reseeds the random generator and restarts the rate-limit window.
    """

    latency_seconds: float = 0.0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    secondary_limit_concurrency: int | None = None
    secondary_status: int = 403
    secondary_retry_after: int = 1
    primary_limit: int = 5000
    primary_window_seconds: float = 3600
    primary_status: int = 403
    truncate_trees_over: int | None = None
    seed: int = 0


def _validate_faults(faults: Faults) -> None:
    """Raise ValueError naming the first Faults field whose value is out of range."""
    checks: list[tuple[str, bool]] = [
        ("latency_seconds", _is_number(faults.latency_seconds, 0)),
        ("error_rate", _is_number(faults.error_rate, 0, 1)),
        ("reset_rate", _is_number(faults.reset_rate, 0, 1)),
        ("secondary_limit_concurrency", _is_int(faults.secondary_limit_concurrency, 1, True)),
        ("secondary_status", faults.secondary_status in (403, 429)),
        ("secondary_retry_after", _is_int(faults.secondary_retry_after, 0)),
        ("primary_limit", _is_int(faults.primary_limit, 0)),
        ("primary_window_seconds", _is_number(faults.primary_window_seconds, 0.001)),
        ("primary_status", faults.primary_status in (403, 429)),
        ("truncate_trees_over", _is_int(faults.truncate_trees_over, 0, True)),
        ("seed", _is_int(faults.seed, -(2**63))),
    ]
    for name, valid in checks:
        if not valid:
            value = getattr(faults, name)
            raise ValueError(f"invalid fault setting {name}={value!r}")


def _is_number(value: object, minimum: float, maximum: float = math.inf) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return minimum <= value <= maximum


def _is_int(value: object, minimum: int, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass
class Stats:
    """Request counters since the start or the last reset_stats.

    ``requests`` counts every API request, ``counted`` those that cost rate-limit budget, and
    ``blobs``, ``trees`` and ``contents`` the 200 responses of those endpoints. ``tarballs`` counts
    archive downloads started. ``log`` holds (method, path, status) for API requests and archive
    downloads, with status 0 for an injected connection reset. It grows by one entry a request,
    so a long benchmark should reset it between phases.
    """

    requests: int = 0
    counted: int = 0
    not_modified: int = 0
    rate_limited: int = 0
    errors_injected: int = 0
    resets_injected: int = 0
    blobs: int = 0
    trees: int = 0
    tarballs: int = 0
    contents: int = 0
    max_in_flight: int = 0
    log: list[tuple[str, str, int]] = field(default_factory=list)

    def counters(self) -> dict[str, int]:
        """Return every counter by name, without the log."""
        names = [item.name for item in dataclasses.fields(self) if item.name != "log"]
        return {name: getattr(self, name) for name in names}


class _RateLimitWindow:
    """The primary rate-limit budget: Faults.primary_limit units per fixed window.

    A window starts when the previous one has ended and a request arrives, as GitHub's does.
    Callers hold the FakeGitHub lock.
    """

    def __init__(self, faults: Faults) -> None:
        self._faults = faults
        self._start = time.time()
        self._used = 0

    def restart(self) -> None:
        self._start = time.time()
        self._used = 0

    def reserve(self) -> bool:
        """Take one unit of budget and return True, or return False when none is left."""
        self._roll_over()
        if self._used >= self._faults.primary_limit:
            return False
        self._used += 1
        return True

    def refund(self) -> None:
        self._used = max(0, self._used - 1)

    def snapshot(self) -> dict[str, int]:
        self._roll_over()
        limit = self._faults.primary_limit
        return {
            "limit": limit,
            "remaining": max(0, limit - self._used),
            "reset": math.ceil(self._start + self._faults.primary_window_seconds),
            "used": self._used,
        }

    def _roll_over(self) -> None:
        now = time.time()
        if now >= self._start + self._faults.primary_window_seconds:
            self._start = now
            self._used = 0


@dataclass
class _ServedRepo:
    """A repository as served: its git directory and the commit each served branch points to."""

    owner: str
    name: str
    git_dir: Path
    reader: GitObjectReader
    private: bool
    default_branch: str
    branches: dict[str, str]
    tree_cache: dict[tuple[str, bool], list[TreeEntry]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def id(self) -> int:
        return _stable_id(self.full_name)

    def resolve_commit(self, ref: str) -> str | None:
        """Resolve a served branch name or a (possibly abbreviated) SHA to a commit SHA."""
        ref = ref.removeprefix("refs/heads/")
        if ref in self.branches:
            return self.branches[ref]
        if not _HEX_SHA.fullmatch(ref):
            return None
        info = self.reader.info(f"{ref}^{{commit}}")
        return info.sha if info is not None else None

    def resolve_tree(self, tree_ish: str) -> str | None:
        """Resolve a branch name, commit SHA or tree SHA to a tree SHA."""
        commit = self.branches.get(tree_ish.removeprefix("refs/heads/"))
        name = commit or tree_ish
        if not _HEX_SHA.fullmatch(name):
            return None
        info = self.reader.info(f"{name}^{{tree}}")
        return info.sha if info is not None else None

    def tree_entries(self, tree_sha: str, recursive: bool) -> list[TreeEntry]:
        """List a tree, caching the result because a tree SHA never changes its content."""
        key = (tree_sha, recursive)
        with self.lock:
            cached = self.tree_cache.get(key)
        if cached is not None:
            return cached
        entries = list_tree(self.git_dir, tree_sha, recursive)
        with self.lock:
            if len(self.tree_cache) >= _TREE_CACHE_ENTRIES:
                del self.tree_cache[next(iter(self.tree_cache))]
            self.tree_cache[key] = entries
        return entries


@dataclass
class _Response:
    """An API response before the common headers are added."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    kind: str | None = None  # the Stats counter to increment when the status is 200


@dataclass
class _Request:
    """The parts of an API request the endpoints read."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    api_root: str
    site_root: str
    authenticated: bool

    @property
    def wants_raw(self) -> bool:
        return ".raw" in self.headers.get("accept", "")


def _json_response(status: int, payload: object, kind: str | None = None) -> _Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return _Response(status, body, {"Content-Type": _JSON_TYPE}, kind)


def _message(status: int, message: str) -> _Response:
    return _json_response(status, {"message": message, "documentation_url": _DOCS_URL})


def _not_found() -> _Response:
    return _message(404, "Not Found")


def _stable_id(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _node_id(kind: str, key: str) -> str:
    return base64.b64encode(f"{kind}:{key}".encode()).decode()


def encode_content(data: bytes) -> str:
    """Encode bytes as GitHub does in blob and contents JSON: base64 in lines of 60 characters."""
    encoded = base64.b64encode(data).decode("ascii")
    return "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))


@dataclass(frozen=True)
class _Commit:
    tree: str
    parents: list[str]
    author: dict[str, str]
    committer: dict[str, str]
    message: str


def _parse_commit(data: bytes) -> _Commit:
    """Parse a raw git commit object into the fields GitHub's commit JSON carries."""
    header, _, message = data.partition(b"\n\n")
    fields: dict[str, list[str]] = {}
    for line in header.decode("utf-8", "replace").split("\n"):
        if line.startswith(" "):
            continue  # continuation of a multi-line header such as gpgsig
        key, _, value = line.partition(" ")
        fields.setdefault(key, []).append(value)
    return _Commit(
        tree=fields["tree"][0],
        parents=fields.get("parent", []),
        author=_parse_person(fields["author"][0]),
        committer=_parse_person(fields["committer"][0]),
        message=message.decode("utf-8", "replace"),
    )


def _parse_person(line: str) -> dict[str, str]:
    """Turn ``Name <email> 1700000000 +0100`` into GitHub's name, email and UTC date."""
    name, _, rest = line.partition(" <")
    email, _, stamp = rest.partition("> ")
    seconds = int(stamp.split()[0]) if stamp else 0
    date = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"name": name, "email": email, "date": date}


class _GitHubApi:
    """Routes API paths to endpoint methods that render GitHub's JSON from git objects."""

    _REPO_PATH = re.compile(r"^/repos/([^/]+)/([^/]+)(/.*)?$")
    _REPO_ROUTES: list[tuple[re.Pattern[str], str]] = [
        (re.compile(r"^$"), "repository"),
        (re.compile(r"^/branches/(.+)$"), "branch"),
        (re.compile(r"^/git/refs?/heads/(.+)$"), "ref"),
        (re.compile(r"^/commits/(.+)$"), "commit"),
        (re.compile(r"^/git/commits/([^/]+)$"), "git_commit"),
        (re.compile(r"^/git/trees/(.+)$"), "tree"),
        (re.compile(r"^/git/blobs/([^/]+)$"), "blob"),
        (re.compile(r"^/contents(?:/(.*))?$"), "contents"),
        (re.compile(r"^/tarball(?:/(.+))?$"), "tarball"),
    ]

    def __init__(self, fake: FakeGitHub) -> None:
        self._fake = fake

    def route(self, request: _Request) -> _Response:
        """Return the response to one API request that passed the fault checks."""
        if request.method != "GET":
            return _not_found()
        if request.path == "/rate_limit":
            return self.rate_limit()
        if request.path == "/user":
            return self.user(request)
        match = self._REPO_PATH.match(request.path)
        if match is None:
            return _not_found()
        owner, name, rest = match.groups()
        repo = self._fake.served_repo(urllib.parse.unquote(f"{owner}/{name}"))
        if repo is None or (repo.private and not request.authenticated):
            return _not_found()
        for pattern, endpoint in self._REPO_ROUTES:
            route_match = pattern.match(rest or "")
            if route_match is not None:
                argument = route_match.group(1) if route_match.groups() else None
                if argument is not None:
                    argument = urllib.parse.unquote(argument)
                handler: Callable[[_Request, _ServedRepo, str | None], _Response]
                handler = getattr(self, endpoint)
                return handler(request, repo, argument)
        return _not_found()

    def rate_limit(self) -> _Response:
        core = {**self._fake.rate_snapshot(), "resource": "core"}
        return _json_response(200, {"resources": {"core": core}, "rate": core})

    def user(self, request: _Request) -> _Response:
        if not request.authenticated:
            return _message(401, "Requires authentication")
        return _json_response(200, _owner_json(USER_LOGIN, request))

    def repository(self, request: _Request, repo: _ServedRepo, _: str | None) -> _Response:
        head = self._read_commit(repo, repo.branches[repo.default_branch])
        return _json_response(200, _repository_json(request, repo, head))

    def branch(self, request: _Request, repo: _ServedRepo, name: str | None) -> _Response:
        sha = repo.branches.get(name or "")
        if name is None or sha is None:
            return _message(404, "Branch not found")
        api = _repo_api(request, repo)
        html = f"{request.site_root}/{repo.full_name}"
        payload = {
            "name": name,
            "commit": _commit_json(request, repo, sha, self._read_commit(repo, sha)),
            "_links": {"self": f"{api}/branches/{name}", "html": f"{html}/tree/{name}"},
            "protected": False,
            "protection_url": f"{api}/branches/{name}/protection",
        }
        return _json_response(200, payload)

    def ref(self, request: _Request, repo: _ServedRepo, branch: str | None) -> _Response:
        sha = repo.branches.get(branch or "")
        if branch is None or sha is None:
            return _not_found()
        api = _repo_api(request, repo)
        payload = {
            "ref": f"refs/heads/{branch}",
            "node_id": _node_id("Ref", f"{repo.full_name}:{branch}"),
            "url": f"{api}/git/refs/heads/{branch}",
            "object": {"sha": sha, "type": "commit", "url": f"{api}/git/commits/{sha}"},
        }
        return _json_response(200, payload)

    def commit(self, request: _Request, repo: _ServedRepo, ref: str | None) -> _Response:
        sha = repo.resolve_commit(ref or "")
        if sha is None:
            return _message(422, f"No commit found for SHA: {ref}")
        return _json_response(200, _commit_json(request, repo, sha, self._read_commit(repo, sha)))

    def git_commit(self, request: _Request, repo: _ServedRepo, sha: str | None) -> _Response:
        full_sha = repo.resolve_commit(sha or "") if _HEX_SHA.fullmatch(sha or "") else None
        if full_sha is None:
            return _not_found()
        commit = self._read_commit(repo, full_sha)
        return _json_response(200, _git_commit_json(request, repo, full_sha, commit))

    def tree(self, request: _Request, repo: _ServedRepo, tree_ish: str | None) -> _Response:
        tree_sha = repo.resolve_tree(tree_ish or "")
        if tree_sha is None:
            return _not_found()
        recursive = "recursive" in request.query
        entries = repo.tree_entries(tree_sha, recursive)
        limit = self._fake.faults.truncate_trees_over
        truncated = recursive and limit is not None and len(entries) > limit
        if truncated:
            entries = entries[:limit]
        api = _repo_api(request, repo)
        payload = {
            "sha": tree_sha,
            "url": f"{api}/git/trees/{tree_sha}",
            "tree": [_tree_entry_json(api, entry) for entry in entries],
            "truncated": truncated,
        }
        return _json_response(200, payload, kind="trees")

    def blob(self, request: _Request, repo: _ServedRepo, sha: str | None) -> _Response:
        found = repo.reader.read(sha or "") if _HEX_SHA.fullmatch(sha or "") else None
        if found is None or found[0].type != "blob":
            return _not_found()
        info, data = found
        if request.wants_raw:
            return _Response(200, data, {"Content-Type": _RAW_TYPE}, kind="blobs")
        payload = {
            "sha": info.sha,
            "node_id": _node_id("Blob", info.sha),
            "size": info.size,
            "url": f"{_repo_api(request, repo)}/git/blobs/{info.sha}",
            "content": encode_content(data),
            "encoding": "base64",
        }
        return _json_response(200, payload, kind="blobs")

    def contents(self, request: _Request, repo: _ServedRepo, path: str | None) -> _Response:
        ref = request.query.get("ref") or repo.default_branch
        commit = repo.resolve_commit(ref)
        path = (path or "").strip("/")
        if commit is None or ".." in path.split("/"):
            return _not_found()
        root_tree = repo.resolve_tree(commit)
        if root_tree is None:
            return _not_found()
        if not path:
            return self._directory(request, repo, ref, root_tree, "")

        parent, _, base_name = path.rpartition("/")
        parent_tree: str | None = root_tree
        if parent:
            info = repo.reader.info(f"{commit}:{parent}")
            parent_tree = info.sha if info is not None and info.type == "tree" else None
        if parent_tree is None:
            return _not_found()
        for entry in repo.tree_entries(parent_tree, recursive=False):
            if entry.path == base_name:
                return self._content_entry(request, repo, ref, entry, path)
        return _not_found()

    def tarball(self, request: _Request, repo: _ServedRepo, ref: str | None) -> _Response:
        sha = repo.resolve_commit(ref or repo.default_branch)
        if sha is None:
            return _not_found()
        location = f"{request.site_root}/_codeload/{repo.full_name}/legacy.tar.gz/{sha}"
        return _Response(302, b"", {"Location": location, "Content-Type": _JSON_TYPE})

    def _directory(
        self, request: _Request, repo: _ServedRepo, ref: str, tree_sha: str, path: str
    ) -> _Response:
        listing = []
        for entry in repo.tree_entries(tree_sha, recursive=False):
            entry_path = f"{path}/{entry.path}" if path else entry.path
            # GitHub lists submodules as "file" in directory listings for backward compatibility.
            kind = {"tree": "dir", "commit": "file"}.get(entry.type, "file")
            if entry.mode == "120000":
                kind = "symlink"
            listing.append(_content_json(request, repo, ref, entry, entry_path, kind))
        return _json_response(200, listing, kind="contents")

    def _content_entry(
        self, request: _Request, repo: _ServedRepo, ref: str, entry: TreeEntry, path: str
    ) -> _Response:
        if entry.type == "tree":
            return self._directory(request, repo, ref, entry.sha, path)
        if entry.type == "commit":
            payload = _content_json(request, repo, ref, entry, path, "submodule")
            payload["submodule_git_url"] = None
            return _json_response(200, payload, kind="contents")

        found = repo.reader.read(entry.sha)
        if found is None:
            return _not_found()
        data = found[1]
        if request.wants_raw:
            return _Response(200, data, {"Content-Type": _RAW_TYPE}, kind="contents")
        if entry.mode == "120000":
            payload = _content_json(request, repo, ref, entry, path, "symlink")
            payload["target"] = data.decode("utf-8", "surrogateescape")
            return _json_response(200, payload, kind="contents")

        payload = _content_json(request, repo, ref, entry, path, "file")
        if len(data) > MAX_CONTENTS_BYTES:
            payload.update(content="", encoding="none")
        else:
            payload.update(content=encode_content(data), encoding="base64")
        return _json_response(200, payload, kind="contents")

    @staticmethod
    def _read_commit(repo: _ServedRepo, sha: str) -> _Commit:
        found = repo.reader.read(sha)
        if found is None or found[0].type != "commit":
            raise LookupError(f"commit {sha} is missing from {repo.git_dir}")
        return _parse_commit(found[1])


def _repo_api(request: _Request, repo: _ServedRepo) -> str:
    return f"{request.api_root}/repos/{repo.full_name}"


def _owner_json(login: str, request: _Request) -> dict[str, Any]:
    return {
        "login": login,
        "id": _stable_id(login),
        "node_id": _node_id("User", login),
        "type": "User",
        "url": f"{request.api_root}/users/{login}",
        "html_url": f"{request.site_root}/{login}",
    }


def _repository_json(request: _Request, repo: _ServedRepo, head: _Commit) -> dict[str, Any]:
    api = _repo_api(request, repo)
    return {
        "id": repo.id,
        "node_id": _node_id("Repository", repo.full_name),
        "name": repo.name,
        "full_name": repo.full_name,
        "private": repo.private,
        "visibility": "private" if repo.private else "public",
        "owner": _owner_json(repo.owner, request),
        "url": api,
        "html_url": f"{request.site_root}/{repo.full_name}",
        "description": None,
        "fork": False,
        "archived": False,
        "disabled": False,
        "default_branch": repo.default_branch,
        "branches_url": f"{api}/branches{{/branch}}",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": head.committer["date"],
        "pushed_at": head.committer["date"],
    }


def _commit_json(
    request: _Request, repo: _ServedRepo, sha: str, commit: _Commit
) -> dict[str, Any]:
    """Render the REST commit shape of ``/commits/{ref}`` and of a branch's ``commit``."""
    api = _repo_api(request, repo)
    html = f"{request.site_root}/{repo.full_name}/commit"
    return {
        "sha": sha,
        "node_id": _node_id("Commit", sha),
        "url": f"{api}/commits/{sha}",
        "html_url": f"{html}/{sha}",
        "commit": {
            "url": f"{api}/git/commits/{sha}",
            "message": commit.message,
            "tree": {"sha": commit.tree, "url": f"{api}/git/trees/{commit.tree}"},
            "author": commit.author,
            "committer": commit.committer,
            "comment_count": 0,
        },
        "author": None,
        "committer": None,
        "parents": [
            {"sha": parent, "url": f"{api}/commits/{parent}", "html_url": f"{html}/{parent}"}
            for parent in commit.parents
        ],
    }


def _git_commit_json(
    request: _Request, repo: _ServedRepo, sha: str, commit: _Commit
) -> dict[str, Any]:
    api = _repo_api(request, repo)
    html = f"{request.site_root}/{repo.full_name}/commit"
    return {
        "sha": sha,
        "node_id": _node_id("Commit", sha),
        "url": f"{api}/git/commits/{sha}",
        "html_url": f"{html}/{sha}",
        "tree": {"sha": commit.tree, "url": f"{api}/git/trees/{commit.tree}"},
        "parents": [
            {"sha": parent, "url": f"{api}/git/commits/{parent}", "html_url": f"{html}/{parent}"}
            for parent in commit.parents
        ],
        "message": commit.message,
        "author": commit.author,
        "committer": commit.committer,
    }


def _tree_entry_json(api: str, entry: TreeEntry) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "path": entry.path,
        "mode": entry.mode,
        "type": entry.type,
        "sha": entry.sha,
    }
    if entry.type == "blob":
        payload["size"] = entry.size
        payload["url"] = f"{api}/git/blobs/{entry.sha}"
    elif entry.type == "tree":
        payload["url"] = f"{api}/git/trees/{entry.sha}"
    return payload


def _content_json(
    request: _Request, repo: _ServedRepo, ref: str, entry: TreeEntry, path: str, kind: str
) -> dict[str, Any]:
    api = _repo_api(request, repo)
    quoted_path = urllib.parse.quote(path)
    quoted_ref = urllib.parse.quote(ref, safe="")
    html = f"{request.site_root}/{repo.full_name}/blob/{quoted_ref}/{quoted_path}"
    git_url = f"{api}/git/{'trees' if entry.type == 'tree' else 'blobs'}/{entry.sha}"
    url = f"{api}/contents/{quoted_path}?ref={quoted_ref}"
    return {
        "type": kind,
        "name": path.rpartition("/")[2],
        "path": path,
        "sha": entry.sha,
        "size": entry.size or 0,
        "url": url,
        "html_url": html,
        "git_url": git_url,
        # The fake serves no raw download host, so clients must read blobs through the API.
        "download_url": None,
        "_links": {"self": url, "git": git_url, "html": html},
    }


def _etag_matches(if_none_match: str, etag: str) -> bool:
    candidates = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in candidates or etag in candidates


class FakeGitHub:
    """A fake GitHub REST server on 127.0.0.1 that serves git repositories, with faults.

    Use it as a context manager or call start() and stop(). With ``tokens`` None any token is
    accepted. Otherwise a request whose token is not in ``tokens`` gets 401 "Bad credentials",
    and a request without a token is anonymous, which hides private repositories.
    """

    def __init__(self, tokens: set[str] | None = None, *, port: int = 0) -> None:
        self.tokens = None if tokens is None else set(tokens)
        self.faults = Faults()
        self.stats = Stats()
        self._port = port
        self._lock = threading.Lock()
        self._random = random.Random(self.faults.seed)
        self._rate = _RateLimitWindow(self.faults)
        self._repos: dict[str, _ServedRepo] = {}
        self._api = _GitHubApi(self)
        self._request_ids = itertools.count(1)
        self._in_flight = 0
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server, such as ``http://127.0.0.1:40123``."""
        if self._server is None:
            raise RuntimeError("FakeGitHub is not running; call start() or use it in a with block")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeGitHub:
        """Bind the port and serve requests from a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _SHUTDOWN_POLL_SECONDS},
            name="fake-github",
            daemon=True,
        )
        self._thread.start()
        LOGGER.info("fake GitHub serving %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close open client connections and end the git processes."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for repo in self._repos.values():
            repo.reader.close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: types.TracebackType | None,
    ) -> None:
        self.stop()

    def add_repo(
        self,
        full_name: str,
        git_dir: Path,
        branch: str = "main",
        head: str | None = None,
        private: bool = False,
    ) -> str:
        """Serve the git repository at GIT_DIR as FULL_NAME and return the served head SHA.

        BRANCH becomes the default branch. HEAD None serves the branch's commit in GIT_DIR.
        """
        owner, slash, name = full_name.partition("/")
        if not slash or not owner or not name or "/" in name:
            raise ValueError(f"invalid repository name {full_name!r}; use owner/name")
        if not Path(git_dir).is_dir():
            raise ValueError(f"git directory not found: {git_dir}")
        reader = GitObjectReader(Path(git_dir))
        start_point = head or f"refs/heads/{branch}"
        info = reader.info(f"{start_point}^{{commit}}")
        if info is None:
            reader.close()
            raise ValueError(f"{start_point!r} is not a commit in {git_dir}")
        repo = _ServedRepo(owner, name, Path(git_dir), reader, private, branch, {branch: info.sha})
        with self._lock:
            previous = self._repos.get(full_name)
            self._repos[full_name] = repo
        if previous is not None:
            previous.reader.close()
        return info.sha

    def set_head(self, full_name: str, sha: str, branch: str = "main") -> str:
        """Point BRANCH of a served repository at commit SHA and return the full SHA.

        An unknown BRANCH is added. Raises KeyError for an unknown repository and ValueError
        when SHA is not a commit in its git directory.
        """
        repo = self.served_repo(full_name)
        if repo is None:
            raise KeyError(f"repository {full_name!r} is not served; call add_repo first")
        info = repo.reader.info(f"{sha}^{{commit}}") if _HEX_SHA.fullmatch(sha) else None
        if info is None:
            raise ValueError(f"{sha!r} is not a commit in {repo.git_dir}")
        with self._lock:
            repo.branches[branch] = info.sha
        return info.sha

    def served_repo(self, full_name: str) -> _ServedRepo | None:
        with self._lock:
            return self._repos.get(full_name)

    def set_faults(self, **changes: Any) -> Faults:
        """Change fault switches at once. Raise TypeError or ValueError for a bad field or value.

        Changing ``seed`` reseeds the random generator, and changing a ``primary_*`` field
        starts a new rate-limit window with the full budget.
        """
        candidate = dataclasses.replace(self.faults, **changes)
        _validate_faults(candidate)
        with self._lock:
            for name, value in changes.items():
                setattr(self.faults, name, value)
            if "seed" in changes:
                self._random.seed(self.faults.seed)
            if any(name.startswith("primary_") for name in changes):
                self._rate.restart()
        LOGGER.info("fake GitHub faults changed: %s", changes)
        return self.faults

    def reset_stats(self) -> None:
        """Zero every counter and clear the request log, but keep the rate-limit budget."""
        with self._lock:
            for name, value in Stats().counters().items():
                setattr(self.stats, name, value)
            self.stats.log.clear()

    def rate_snapshot(self) -> dict[str, int]:
        """Return the primary rate-limit state: limit, remaining, reset (epoch seconds), used."""
        with self._lock:
            return self._rate.snapshot()

    def _serve_api(self, handler: _Handler, path: str, query: dict[str, str]) -> None:
        """Run one API request through the faults, the endpoint and the accounting."""
        request = self._build_request(handler, path, query)
        with self._in_flight_slot() as in_flight:
            if self.faults.latency_seconds > 0:
                time.sleep(self.faults.latency_seconds)
            if self._roll(self.faults.reset_rate):
                self._record(request.method, request.path, 0, resets_injected=1)
                handler.abort_connection()
                return
            response = self._respond(request, in_flight)
            handler.send_api_response(response, self.rate_snapshot(), next(self._request_ids))

    def _respond(self, request: _Request, in_flight: int) -> _Response:
        """Apply the limit and error faults, call the endpoint and settle the rate budget."""
        rejection = self._check_rate_limits(request, in_flight)
        if rejection is not None:
            self._record(request.method, request.path, rejection.status, rate_limited=1)
            return rejection

        counted = request.path != "/rate_limit"
        if self._roll(self.faults.error_rate):
            response = _message(502, "Server Error")
            self._settle(request, response, counted, errors_injected=1)
            return response
        response = self._call_endpoint(request)

        if request.method == "GET" and response.status == 200:
            etag = '"' + hashlib.sha1(response.body).hexdigest() + '"'
            response.headers["ETag"] = etag
            if _etag_matches(request.headers.get("if-none-match", ""), etag):
                response = _Response(304, b"", {"ETag": etag})
        self._settle(request, response, counted)
        return response

    def _check_rate_limits(self, request: _Request, in_flight: int) -> _Response | None:
        """Return a secondary or primary rate-limit rejection, or take one unit and return None."""
        faults = self.faults
        concurrency = faults.secondary_limit_concurrency
        if concurrency is not None and in_flight > concurrency:
            response = _message(faults.secondary_status, _SECONDARY_MESSAGE)
            response.headers["Retry-After"] = str(faults.secondary_retry_after)
            return response
        if request.path == "/rate_limit":
            return None
        with self._lock:
            reserved = self._rate.reserve()
        if reserved:
            return None
        identity = f"user ID {_stable_id(USER_LOGIN)}" if request.authenticated else "127.0.0.1"
        return _message(faults.primary_status, _PRIMARY_MESSAGE.format(identity=identity))

    def _call_endpoint(self, request: _Request) -> _Response:
        if not self._token_valid(request.headers.get("authorization")):
            return _message(401, "Bad credentials")
        try:
            return self._api.route(request)
        except Exception:
            # Other requests must still be served, so only this client gets the failure, as a 500.
            LOGGER.exception("fake GitHub failed on %s %s", request.method, request.path)
            return _message(500, "Internal fake GitHub error; see the test log")

    def _settle(self, request: _Request, response: _Response, counted: bool, **extra: int) -> None:
        """Refund the unit taken for a 304 or 5xx response and record the request."""
        kept = counted and response.status != 304 and response.status < 500
        with self._lock:
            if counted and not kept:
                self._rate.refund()
        counters = dict(extra)
        if kept:
            counters["counted"] = 1
        if response.status == 304:
            counters["not_modified"] = 1
        if response.status == 200 and response.kind is not None:
            counters[response.kind] = 1
        self._record(request.method, request.path, response.status, **counters)

    def _record(self, method: str, path: str, status: int, **counters: int) -> None:
        with self._lock:
            for name, increment in counters.items():
                setattr(self.stats, name, getattr(self.stats, name) + increment)
            self.stats.log.append((method, path, status))

    def _roll(self, probability: float) -> bool:
        if probability <= 0:
            return False
        with self._lock:
            return self._random.random() < probability

    @contextlib.contextmanager
    def _in_flight_slot(self) -> Iterator[int]:
        """Count the request as in flight; yield how many were in flight when it arrived."""
        with self._lock:
            self._in_flight += 1
            in_flight = self._in_flight
            self.stats.requests += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, in_flight)
        try:
            yield in_flight
        finally:
            with self._lock:
                self._in_flight -= 1

    def _build_request(self, handler: _Handler, path: str, query: dict[str, str]) -> _Request:
        site_root = f"http://127.0.0.1:{handler.server.server_address[1]}"
        api_root = site_root
        if path == _API_PREFIX or path.startswith(_API_PREFIX + "/"):
            path = path[len(_API_PREFIX) :] or "/"
            api_root = site_root + _API_PREFIX
        headers = {name.lower(): value for name, value in handler.headers.items()}
        authorization = headers.get("authorization")
        authenticated = bool(authorization) and self._token_valid(authorization)
        return _Request(handler.command, path, query, headers, api_root, site_root, authenticated)

    def _token_valid(self, authorization: str | None) -> bool:
        """Return False only for a token the server rejects. A missing token is valid."""
        if not authorization or self.tokens is None:
            return True
        scheme, _, token = authorization.partition(" ")
        return scheme.lower() in ("token", "bearer") and token.strip() in self.tokens

    def _serve_archive(self, handler: _Handler, path: str) -> None:
        """Stream ``git archive`` for a codeload URL that a tarball redirect handed out."""
        match = re.fullmatch(r"/_codeload/([^/]+)/([^/]+)/legacy\.tar\.gz/([0-9a-f]{40})", path)
        repo = info = None
        if match is not None:
            repo = self.served_repo(urllib.parse.unquote(f"{match[1]}/{match[2]}"))
        if repo is not None and match is not None:
            info = repo.reader.info(match[3])
        if repo is None or info is None or info.type != "commit":
            handler.send_plain(404, b"Not Found")
            self._record(handler.command, path, 404)
            return
        prefix = f"{repo.owner}-{repo.name}-{info.sha[:7]}/"
        command = ["git", "-C", str(repo.git_dir), "archive", "--format=tar.gz"]
        command += [f"--prefix={prefix}", info.sha]
        # Record before streaming, so the count is updated by the time a client has the archive.
        self._record(handler.command, path, 200, tarballs=1)
        handler.stream_command(command, prefix.rstrip("/") + ".tar.gz")

    def _serve_control(self, handler: _Handler, path: str, query: dict[str, str]) -> None:
        """Serve the /_fake endpoints, which let another process drive the server."""
        if handler.command == "GET" and path == "/_fake/stats":
            handler.send_control(200, self._stats_json(include_log=query.get("log") == "1"))
            return
        if handler.command != "POST":
            handler.send_control(404, {"message": "Not Found"})
            return
        try:
            body = handler.read_json_body()
            if path == "/_fake/faults":
                faults = self.set_faults(**body)
                handler.send_control(200, dataclasses.asdict(faults))
            elif path == "/_fake/head":
                sha = self.set_head(body["repo"], body["sha"], body.get("branch", "main"))
                handler.send_control(200, {"repo": body["repo"], "sha": sha})
            elif path == "/_fake/stats/reset":
                self.reset_stats()
                handler.send_control(200, self._stats_json(include_log=False))
            else:
                handler.send_control(404, {"message": "Not Found"})
        except (TypeError, ValueError, KeyError) as err:
            LOGGER.warning("fake GitHub rejected control request %s: %s", path, err)
            handler.send_control(400, {"message": f"invalid control request: {err}"})

    def _track_connection(self, connection: socket.socket, open_: bool) -> None:
        """Remember open client sockets, so stop() can close idle keep-alive connections."""
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _stats_json(self, include_log: bool) -> dict[str, Any]:
        with self._lock:
            payload: dict[str, Any] = dict(self.stats.counters())
            if include_log:
                payload["log"] = [list(entry) for entry in self.stats.log]
        payload["rate"] = self.rate_snapshot()
        payload["faults"] = dataclasses.asdict(self.faults)
        return payload


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeGitHub


class _Handler(BaseHTTPRequestHandler):
    """HTTP request handler that parses requests and writes the responses FakeGitHub builds."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeGitHub/1.0"
    # Headers and body go out in separate writes. With Nagle's algorithm on, the client's
    # delayed ACK would hold back each keep-alive response by about 40 ms on Linux.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track_connection(self.connection, open_=True)

    def finish(self) -> None:
        self.server.fake._track_connection(self.connection, open_=False)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        LOGGER.debug("fake GitHub %s: " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        fake = self.server.fake
        try:
            if split.path.startswith("/_fake/"):
                fake._serve_control(self, split.path, query)
            elif split.path.startswith("/_codeload/"):
                fake._serve_archive(self, split.path)
            else:
                self._discard_body()
                fake._serve_api(self, split.path, query)
        except (BrokenPipeError, ConnectionResetError) as err:
            LOGGER.debug("fake GitHub client went away during %s: %s", self.path, err)
            self.close_connection = True

    def _discard_body(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def read_json_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        return body

    def abort_connection(self) -> None:
        """Close the socket without a response. SO_LINGER 0 makes the close send a TCP reset."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def send_api_response(
        self, response: _Response, rate: dict[str, int], request_id: int
    ) -> None:
        self.send_response(response.status)
        self.send_header("X-GitHub-Request-Id", f"FAKE:{request_id:08X}")
        self.send_header("X-RateLimit-Limit", str(rate["limit"]))
        self.send_header("X-RateLimit-Remaining", str(rate["remaining"]))
        self.send_header("X-RateLimit-Reset", str(rate["reset"]))
        self.send_header("X-RateLimit-Used", str(rate["used"]))
        self.send_header("X-RateLimit-Resource", "core")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status != 304:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def send_control(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", _JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream_command(self, command: list[str], filename: str) -> None:
        """Send the command's stdout as a chunked body, so no archive is held in memory.

        If the command fails, the final chunk is left out and the connection closed, so the
        client sees a truncated download instead of a corrupt file.
        """
        self.send_response(200)
        self.send_header("Content-Type", "application/x-gzip")
        self.send_header("Content-Disposition", f"attachment; filename={filename}")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=git_env()
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            while chunk := process.stdout.read(_ARCHIVE_CHUNK_BYTES):
                self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
        finally:
            process.stdout.close()
            if process.poll() is None:
                process.kill()
            stderr = process.stderr.read()
            process.stderr.close()
            process.wait()
        if process.returncode != 0:
            LOGGER.error("fake GitHub: %s failed: %s", command, stderr.decode(errors="replace"))
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")


def _parse_repo_option(value: str) -> tuple[str, Path]:
    full_name, equals, git_dir = value.partition("=")
    if not equals or "/" not in full_name or not git_dir:
        raise argparse.ArgumentTypeError(f"invalid --repo {value!r}; use OWNER/NAME=GIT_DIR")
    return full_name, Path(git_dir)


def main(argv: list[str] | None = None) -> int:
    """Print the URL, then serve git repositories as a fake GitHub until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m wryte_pipeline_tests.fake_github",
        description="Serve git repositories through a fake GitHub REST API on 127.0.0.1.",
    )
    parser.add_argument(
        "--repo",
        action="append",
        required=True,
        type=_parse_repo_option,
        metavar="OWNER/NAME=GIT_DIR",
        help="repository to serve (repeat for more)",
    )
    parser.add_argument("--branch", default="main", help="branch to serve (default: main)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: 0, a free port)")
    parser.add_argument(
        "--token",
        action="append",
        help="accepted token (repeat for more); without --token every token is accepted",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="delay in seconds before each API request is answered (default: 0)",
    )
    args = parser.parse_args(argv)

    fake = FakeGitHub(tokens=set(args.token) if args.token else None, port=args.port)
    try:
        for full_name, git_dir in args.repo:
            fake.add_repo(full_name, git_dir, branch=args.branch)
        fake.set_faults(latency_seconds=args.latency)
    except (ValueError, GitCommandError) as err:
        parser.error(str(err))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with fake:
        print(fake.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
