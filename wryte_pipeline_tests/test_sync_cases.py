"""Sync hard single-file cases through the fake GitHub server and check every row and outcome.

Every case file is in one repository that is synced at three commits. The first contains a valid
version of each file that is later rejected, the second contains every case, and the third changes
only a file that is not Markdown. The whole set runs once through blob requests and once through
the tarball, because both fetch paths must store the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from wryte_pipeline.cli import main
from wryte_pipeline.plan import find_path_twins
from wryte_pipeline.store import ContentStore, as_utc
from wryte_pipeline_tests.corpora import FileEntry, commit_files, ls_tree, make_repo
from wryte_pipeline_tests.fake_github import FakeGitHub
from wryte_pipeline_tests.helpers import expected_documents, stored_documents

# A blob fetch path needs a threshold above the number of files in any batch here.
BLOB_THRESHOLD = "100000"
TARBALL_THRESHOLD = "1"

# 325 bytes: nine anchored levels of nine aliases each expand to 9**9 (about 387 million) values.
ALIAS_BOMB = (
    b"---\n"
    b"a: &a [x,x,x,x,x,x,x,x,x]\n"
    + b"".join(
        f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]\n".encode()
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + b"---\nBomb body.\n"
)

LARGE_FRONT_MATTER = b"---\ntitle: Large page\n---\n"
LARGE_BODY = "".join(
    f"Line {index:07d} of a page over five megabytes.\n" for index in range(120_000)
)
assert len(LARGE_BODY) > 5 * 1024 * 1024

LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 12345\n"
)

NFC_CAFE = "notes/caf\u00e9.md"
NFD_CAFE = "notes/cafe\u0301.md"


def valid_version(name: str) -> bytes:
    """Return a valid file committed before its rejected version replaces it."""
    return f"---\ntitle: Valid {name}\n---\nValid body of {name}.\n".encode()


@dataclass(frozen=True)
class Case:
    """One file of the case repository and the result its sync must leave.

    Attributes:
        columns: expected values of the `documents` row, for a file that succeeds.
        error_parts: texts the outcome's error must contain, for a file that fails or is skipped.
        previous: a valid version committed first. A rejected file must leave its row in place.
    """

    id: str
    path: str
    content: FileEntry
    status: str = "succeeded"
    columns: dict[str, Any] = field(default_factory=dict)
    error_parts: tuple[str, ...] = ()
    previous: bytes | None = None


CASES = [
    Case(
        "bom-yaml",
        "posts/bom.md",
        b"\xef\xbb\xbf---\ntitle: Hello BOM\n---\nBody text.\n",
        columns={
            "format": "yaml",
            "front_matter": {"title": "Hello BOM"},
            "title": "Hello BOM",
            "body": "Body text.\n",
        },
    ),
    Case(
        "bom-cr-line-endings",
        "posts/bom-cr.md",
        b"\xef\xbb\xbf---\rtitle: Hello BOM\r---\rBody text.\rSecond line.\r",
        columns={
            "format": "yaml",
            "front_matter": {"title": "Hello BOM"},
            "title": "Hello BOM",
            "body": "Body text.\rSecond line.\r",
        },
    ),
    Case(
        "crlf-line-endings",
        "posts/crlf.md",
        b"---\r\ntitle: Windows\r\n---\r\nLine one.\r\nLine two.\r\n",
        columns={"title": "Windows", "body": "Line one.\r\nLine two.\r\n"},
    ),
    Case(
        "toml-nested-table",
        "posts/toml.md",
        b'+++\ntitle = "TOML post"\ndate = 2018-12-14\ntags = ["a", "b"]\n'
        b'[params]\nauthor = "Ada"\n+++\nBody.\n',
        columns={
            "format": "toml",
            "front_matter": {
                "title": "TOML post",
                "date": "2018-12-14",
                "tags": ["a", "b"],
                "params": {"author": "Ada"},
            },
            "title": "TOML post",
            "date": datetime(2018, 12, 14, tzinfo=UTC),
            "tags": ["a", "b"],
            "body": "Body.\n",
        },
    ),
    Case(
        "json-one-line",
        "posts/json.md",
        b'{"title": "JSON post", "tags": ["a","b"], "draft": false}\n\nBody.\n',
        columns={
            "format": "json",
            "front_matter": {"title": "JSON post", "tags": ["a", "b"], "draft": False},
            "title": "JSON post",
            "tags": ["a", "b"],
            "draft": False,
            "body": "\nBody.\n",
        },
    ),
    Case(
        "unclosed-fence",
        "posts/unclosed.md",
        b"---\ntitle: Open\nBody without a closing fence.\n",
        status="failed",
        error_parts=("posts/unclosed.md, line 1:", "not closed"),
        previous=valid_version("unclosed"),
    ),
    Case(
        "colon-in-value",
        "posts/colon.md",
        b"---\ntitle: Notes: part two\n---\nBody\n",
        status="failed",
        error_parts=("posts/colon.md, line 2:", "quotes"),
        previous=valid_version("colon"),
    ),
    Case(
        "reserved-looking-keys",
        "posts/keys.md",
        b"---\ncontent: c\nhandler: h\n2024: year\non: yes\n---\nBody.\n",
        columns={
            "front_matter": {"content": "c", "handler": "h", "2024": "year", "on": "yes"},
            "body": "Body.\n",
        },
    ),
    Case(
        "impossible-date",
        "posts/leap.md",
        b"---\ntitle: Leap\ndate: 2024-02-30\n---\nBody\n",
        status="failed",
        error_parts=("posts/leap.md, line 3:", "2024-02-30"),
        previous=valid_version("leap"),
    ),
    Case(
        "yaml-1-2-scalars",
        "posts/scalars.md",
        b"---\ndraft: no\npublished: on\ntime: 10:30\nid: 0123\nmode: 0o123\n"
        b'flag: "false"\ncountry: NO\n---\nBody\n',
        columns={
            "front_matter": {
                "draft": "no",
                "published": "on",
                "time": "10:30",
                "id": 123,
                "mode": 83,
                "flag": "false",
                "country": "NO",
            },
            "draft": False,
        },
    ),
    Case(
        "indented-code-body",
        "posts/code.md",
        b"---\ntitle: Code\n---\n\n    indented code\n\tsecond line \n\nClosing text.\n\n\n",
        columns={"body": "\n    indented code\n\tsecond line \n\nClosing text.\n\n\n"},
    ),
    Case(
        "latin-1-bytes",
        "posts/latin1.md",
        b"---\ntitle: Caf\xe9\n---\nBody\n",
        status="failed",
        error_parts=("posts/latin1.md, line 2:", "not valid UTF-8"),
        previous=valid_version("latin1"),
    ),
    Case(
        "list-front-matter",
        "posts/list.md",
        b"---\n- a\n- b\n---\nBody\n",
        status="failed",
        error_parts=("posts/list.md, line 2:", "must be a mapping"),
        previous=valid_version("list"),
    ),
    Case(
        "comma-separated-tags",
        "posts/tags.md",
        b"---\ntags: python, yaml, front matter\n---\nBody\n",
        columns={
            "front_matter": {"tags": "python, yaml, front matter"},
            "tags": ["python", "yaml", "front matter"],
        },
    ),
    Case(
        "alias-bomb",
        "posts/bomb.md",
        ALIAS_BOMB,
        status="failed",
        error_parts=("posts/bomb.md, line 7:", "more than 100,000 values once YAML aliases"),
        previous=valid_version("bomb"),
    ),
    Case(
        "five-megabyte-file",
        "posts/large.md",
        LARGE_FRONT_MATTER + LARGE_BODY.encode(),
        columns={"title": "Large page", "body": LARGE_BODY},
    ),
    Case(
        "nfc-path", NFC_CAFE, b"NFC spelling\n", columns={"format": None, "body": "NFC spelling\n"}
    ),
    Case(
        "nfd-path", NFD_CAFE, b"NFD spelling\n", columns={"format": None, "body": "NFD spelling\n"}
    ),
    Case("mixed-case-readme", "Readme.md", b"Mixed case\n", columns={"body": "Mixed case\n"}),
    Case("upper-case-readme", "README.md", b"Upper case\n", columns={"body": "Upper case\n"}),
    Case(
        "symlink-outside-repository",
        "docs/escape.md",
        ("symlink", "../../etc/passwd"),
        status="skipped",
        error_parts=("symlink",),
    ),
    Case(
        "submodule-gitlink",
        "vendor/sub.md",
        ("submodule", "1234567890abcdef1234567890abcdef12345678"),
        status="skipped",
        error_parts=("submodule",),
    ),
    Case(
        "lfs-pointer",
        "posts/lfs.md",
        LFS_POINTER,
        status="skipped",
        error_parts=("posts/lfs.md", "Git LFS pointer"),
    ),
    Case(
        "nul-byte",
        "posts/binary.md",
        b"---\ntitle: Binary\n---\nab\x00cd\n",
        status="failed",
        error_parts=("posts/binary.md", "NUL byte", "binary"),
        previous=valid_version("binary"),
    ),
]


@dataclass(frozen=True)
class CaseRepository:
    """The case repository on disk and its three commits."""

    path: Path
    first_commit: str
    cases_commit: str
    last_commit: str


@dataclass(frozen=True)
class SyncRun:
    """One `sync` command run in this process, with what the fake server counted during it."""

    exit_status: int
    stdout: str
    stderr: str
    seconds: float
    stats: dict[str, int]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass(frozen=True)
class SyncedCases:
    """The case repository after its three syncs, read back from the content store.

    Attributes:
        outcomes: the latest outcome row of each path in the cases commit's batch.
        rows: the `documents` rows of every case path that has one.
        first_tree, cases_tree: path -> object SHA in the first and the cases commit.
    """

    fetch_path: str
    repository: CaseRepository
    first: SyncRun
    cases: SyncRun
    last: SyncRun
    batch_total: int
    outcomes: dict[str, dict[str, Any]]
    rows: dict[str, dict[str, Any]]
    first_tree: dict[str, str]
    cases_tree: dict[str, str]


def build_case_repository(path: Path) -> CaseRepository:
    """Commit the valid versions, then every case, then a change to a file that is not Markdown."""
    first_files: dict[str, FileEntry] = {"assets/site.css": b"body { color: black; }\n"}
    first_files.update({case.path: case.previous for case in CASES if case.previous is not None})
    first_commit = make_repo(path, first_files, "Add valid versions")
    cases_commit = commit_files(path, {case.path: case.content for case in CASES}, "Add cases")
    last_commit = commit_files(
        path, {"assets/site.css": b"body { color: navy; }\n"}, "Change the stylesheet"
    )
    return CaseRepository(path, first_commit, cases_commit, last_commit)


def run_sync(fake: FakeGitHub, settings: dict[str, str]) -> SyncRun:
    """Run `sync` in this process with only ``settings`` set among the WRYTE_ variables."""
    fake.reset_stats()
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("WRYTE_", "GITHUB_")) and name != "WRYTE_CORPORA_DIR":
                patch.delenv(name)
        patch.delenv("DAGSTER_HOME", raising=False)
        patch.setenv("WRYTE_GITHUB_API_URL", fake.url)
        for name, value in settings.items():
            patch.setenv(name, value)
        started = time.perf_counter()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            exit_status = main(["sync"])
        seconds = time.perf_counter() - started
    return SyncRun(
        exit_status, stdout.getvalue(), stderr.getvalue(), seconds, fake.stats.counters()
    )


def object_shas(repository: Path, commit: str) -> dict[str, str]:
    return {path: sha for path, (_mode, sha) in ls_tree(repository, commit).items()}


def sync_case_repository(
    fake: FakeGitHub,
    repository: CaseRepository,
    name: str,
    fetch_path: str,
    settings: dict[str, str],
) -> SyncedCases:
    """Serve the repository as ``name`` and sync its three commits in turn into one store.

    ``fetch_path`` is ``blob`` or ``tarball`` and sets WRYTE_TARBALL_THRESHOLD to match.
    """
    threshold = TARBALL_THRESHOLD if fetch_path == "tarball" else BLOB_THRESHOLD
    settings = {"WRYTE_REPO": name, "WRYTE_TARBALL_THRESHOLD": threshold, **settings}
    fake.add_repo(name, repository.path, head=repository.first_commit)
    first = run_sync(fake, settings)
    fake.set_head(name, repository.cases_commit)
    cases = run_sync(fake, settings)

    store = ContentStore(settings["WRYTE_DATABASE_URL"])
    try:
        batch = store.latest_batch()
        assert batch is not None, cases.output
        assert batch.head_commit == repository.cases_commit, cases.output
        fake.set_head(name, repository.last_commit)
        last = run_sync(fake, settings)
        outcomes = {row["path"]: row for row in store.outcomes(batch.id)}
        rows = store.document_rows(case.path for case in CASES)
    finally:
        store.dispose()
    return SyncedCases(
        fetch_path=fetch_path,
        repository=repository,
        first=first,
        cases=cases,
        last=last,
        batch_total=batch.total,
        outcomes=outcomes,
        rows=rows,
        first_tree=object_shas(repository.path, repository.first_commit),
        cases_tree=object_shas(repository.path, repository.cases_commit),
    )


def check_case(case: Case, synced: SyncedCases) -> None:
    """Assert the outcome row and the `documents` row that ``case`` must leave."""
    outcome = synced.outcomes.get(case.path)
    assert outcome is not None, f"no outcome row for {case.path}"
    assert outcome["status"] == case.status, outcome["error"]
    assert outcome["blob_sha"] == synced.cases_tree[case.path]
    row = synced.rows.get(case.path)

    if case.status == "succeeded":
        assert outcome["error"] is None
        assert row is not None, f"no documents row for {case.path}"
        assert row["blob_sha"] == synced.cases_tree[case.path]
        assert row["commit_sha"] == synced.repository.cases_commit
        for column, expected in case.columns.items():
            check_column(row, column, expected)
        return

    assert outcome["retryable"] is False, "a rejected or skipped file would be fetched again"
    error = outcome["error"] or ""
    for part in case.error_parts:
        assert part in error, f"{part!r} missing from the error: {error}"
    if case.previous is None:
        assert row is None, f"{case.path} was stored although it was {case.status}"
    else:
        assert row is not None, f"the valid version of {case.path} was removed"
        assert row["blob_sha"] == synced.first_tree[case.path]
        assert row["commit_sha"] == synced.repository.first_commit


def check_column(row: dict[str, Any], column: str, expected: Any) -> None:
    actual = row[column]
    if column in ("date", "publish_at", "expire_at"):
        assert as_utc(actual) == expected, column
    elif column == "body" and len(expected) > 10_000:
        # A readable failure for a 5 MB body: compare sizes and digests, not the text itself.
        assert len(actual) == len(expected), column
        assert sha256_text(actual) == sha256_text(expected), column
    else:
        assert actual == expected, column


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# --- the case repository, synced once per fetch path -----------------------------------------


@pytest.fixture(scope="module")
def case_repository(tmp_path_factory: pytest.TempPathFactory) -> CaseRepository:
    return build_case_repository(tmp_path_factory.mktemp("cases") / "repo")


@pytest.fixture(scope="module")
def module_fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


@pytest.fixture(scope="module", params=["blob", "tarball"])
def synced(
    request: pytest.FixtureRequest,
    case_repository: CaseRepository,
    module_fake: FakeGitHub,
    tmp_path_factory: pytest.TempPathFactory,
) -> SyncedCases:
    fetch_path: str = request.param
    folder = tmp_path_factory.mktemp(f"sync-{fetch_path}")
    settings = {
        "WRYTE_DATABASE_URL": f"sqlite:///{folder / 'content.db'}",
        "WRYTE_HOME": str(folder / "home"),
    }
    name = f"cases/{fetch_path}"
    return sync_case_repository(module_fake, case_repository, name, fetch_path, settings)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case_file_synced(case: Case, synced: SyncedCases) -> None:
    check_case(case, synced)


def test_syncs_exit_as_documented(synced: SyncedCases) -> None:
    assert synced.first.exit_status == 0, synced.first.output
    assert synced.cases.exit_status == 1, synced.cases.output
    assert synced.last.exit_status == 0, synced.last.output


def test_every_planned_path_has_outcome(synced: SyncedCases) -> None:
    assert len(synced.outcomes) == synced.batch_total
    assert set(synced.outcomes) == {case.path for case in CASES}


def test_fetch_path_as_configured(synced: SyncedCases) -> None:
    stats = synced.cases.stats
    fetched = sum(1 for case in CASES if isinstance(case.content, bytes))
    assert stats["contents"] == 0
    if synced.fetch_path == "tarball":
        assert stats["tarballs"] == 1
        assert stats["blobs"] == 0
    else:
        assert stats["tarballs"] == 0
        assert stats["blobs"] == fetched


def test_settled_files_not_fetched_again(synced: SyncedCases) -> None:
    stats = synced.last.stats
    assert stats["trees"] >= 1, "the last sync did not list the moved head's tree"
    assert stats["blobs"] == 0
    assert stats["tarballs"] == 0
    assert "nothing to sync" in synced.last.stdout


def test_alias_bomb_sync_stays_fast(synced: SyncedCases) -> None:
    # The batch contains the 5 MB file and the bomb, and the whole sync took under 1 s on 2 cores.
    # Building the bomb's 387 million values would need gigabytes (an estimate), so a 20 s
    # bound is generous and still catches an expansion.
    assert synced.cases.seconds < 20.0
    assert len(synced.outcomes["posts/bomb.md"]["error"]) < 500


def test_path_twins_warning_logged(synced: SyncedCases) -> None:
    twins = find_path_twins([NFC_CAFE, NFD_CAFE, "Readme.md", "README.md"])
    warnings = [line for line in synced.cases.stderr.splitlines() if "differ only in" in line]

    assert twins == [["README.md", "Readme.md"], sorted([NFC_CAFE, NFD_CAFE])]
    assert len(warnings) == 1, synced.cases.stderr
    assert "WARNING" in warnings[0]
    for path in (NFC_CAFE, NFD_CAFE, "Readme.md", "README.md"):
        assert repr(path) in warnings[0], path


@pytest.mark.postgres
def test_postgres_stores_every_case(
    case_repository: CaseRepository,
    module_fake: FakeGitHub,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    settings = {
        "WRYTE_DATABASE_URL": postgres_url,
        "WRYTE_HOME": str(tmp_path / "home"),
    }
    synced = sync_case_repository(module_fake, case_repository, "cases/postgres", "blob", settings)

    failures = []
    for case in CASES:
        try:
            check_case(case, synced)
        except AssertionError as error:
            failures.append(f"{case.id}: {error}")
    assert not failures, "\n".join(failures)
    assert synced.last.stats["blobs"] == 0


# --- cases that need their own repository or settings ---------------------------------------


@pytest.mark.parametrize("threshold", [BLOB_THRESHOLD, TARBALL_THRESHOLD], ids=["blob", "tarball"])
def test_truncated_tree_walked_completely(
    threshold: str, fake_github: FakeGitHub, tmp_path: Path
) -> None:
    files: dict[str, FileEntry] = {
        "index.md": b"# Home\n",
        "docs/intro.md": b"---\ntitle: Intro\n---\nIntro.\n",
        "docs/guide/install.md": b"Install.\n",
        "docs/guide/usage.md": b"Usage.\n",
        "docs/guide/deep/notes.md": b"Notes.\n",
        "docs/guide/deep/more.md": b"More.\n",
        "blog/2024/first.md": b"First.\n",
        "blog/2024/second.md": b"Second.\n",
        "blog/2025/third.md": b"Third.\n",
        "blog/logo.png": b"\x89PNG\r\n\x1a\n",
    }
    head = make_repo(tmp_path / "repo", files)
    fake_github.add_repo("octo/deep", tmp_path / "repo")
    fake_github.set_faults(truncate_trees_over=3)
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    settings = {
        "WRYTE_REPO": "octo/deep",
        "WRYTE_DATABASE_URL": database_url,
        "WRYTE_HOME": str(tmp_path / "home"),
        "WRYTE_TARBALL_THRESHOLD": threshold,
    }

    run = run_sync(fake_github, settings)

    assert run.exit_status == 0, run.output
    assert run.stats["trees"] > 1, "the truncated tree was not completed by walking subtrees"
    assert stored_documents(database_url) == expected_documents(tmp_path / "repo", head)


def test_oversized_file_skipped_with_setting(fake_github: FakeGitHub, tmp_path: Path) -> None:
    files: dict[str, FileEntry] = {
        "small.md": b"---\ntitle: Small\n---\nShort.\n",
        "big.md": b"---\ntitle: Big\n---\n" + b"Long line of text.\n" * 200,
    }
    make_repo(tmp_path / "repo", files)
    fake_github.add_repo("octo/sizes", tmp_path / "repo")
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    settings = {
        "WRYTE_REPO": "octo/sizes",
        "WRYTE_DATABASE_URL": database_url,
        "WRYTE_HOME": str(tmp_path / "home"),
        "WRYTE_TARBALL_THRESHOLD": BLOB_THRESHOLD,
        "WRYTE_MAX_FILE_BYTES": "1000",
    }

    run = run_sync(fake_github, settings)

    assert run.exit_status == 0, run.output
    assert set(stored_documents(database_url)) == {"small.md"}
    assert run.stats["blobs"] == 1, "the oversized file was fetched"
    store = ContentStore(database_url)
    try:
        batch = store.latest_batch()
        assert batch is not None
        outcomes = {row["path"]: row for row in store.outcomes(batch.id)}
    finally:
        store.dispose()
    assert outcomes["small.md"]["status"] == "succeeded"
    assert outcomes["big.md"]["status"] == "skipped"
    assert "big.md" in outcomes["big.md"]["error"]
    assert "1000-byte ceiling" in outcomes["big.md"]["error"]
    assert "WRYTE_MAX_FILE_BYTES" in outcomes["big.md"]["error"]
