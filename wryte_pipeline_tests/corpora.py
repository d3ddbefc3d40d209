"""Git repositories for tests and benchmarks: clone the shared corpora, build and read repos.

The corpora are git bundles of real Markdown repositories, kept in a ``shared/corpora`` folder
beside the clone of this project. Every git command here runs with the user's global and system
configuration switched off, so hooks, signing or ``core.autocrlf`` on a developer machine cannot
change what a test builds or reads.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CORPORA_ENV_VAR = "WRYTE_CORPORA_DIR"

# A file entry for make_repo and commit_files: bytes for a regular file, ("executable", bytes),
# ("symlink", target), ("submodule", commit sha), or None to delete the path.
FileEntry = bytes | tuple[str, str | bytes] | None

_GIT_ENV_OVERRIDES = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}
_COMMIT_IDENTITY = (
    "-c",
    "user.name=Wryte Tests",
    "-c",
    "user.email=tests@wryte.invalid",
    "-c",
    "commit.gpgsign=false",
)


class GitCommandError(RuntimeError):
    """A git subprocess failed. The message contains the command and git's stderr."""


def corpora_dir() -> Path:
    """Return the corpora folder: ``$WRYTE_CORPORA_DIR``, else ``shared/corpora`` beside the clone.

    CI clones the project into another folder with ``shared`` laid beside it, so the default is
    computed from this file's location rather than from a fixed path.
    """
    configured = os.environ.get(CORPORA_ENV_VAR)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "shared" / "corpora"


CORPORA_DIR = corpora_dir()


def git_env() -> dict[str, str]:
    """Return the process environment with git's user and system configuration switched off."""
    return {**os.environ, **_GIT_ENV_OVERRIDES}


def run_git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Run ``git -C repo ARGS`` and return its stdout, or raise GitCommandError if it fails."""
    command = ["git", "-C", str(repo), *args]
    result = subprocess.run(command, input=stdin, capture_output=True, env=git_env(), check=False)
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()
        raise GitCommandError(f"{' '.join(command)!r} failed ({result.returncode}): {stderr}")
    return result.stdout


def clone_corpus(name: str, dest: Path) -> Path:
    """Clone the ``main`` branch of corpus NAME (for example ``hugo-docs``) into DEST.

    Raises:
        FileNotFoundError: the bundle is missing. The message names the path searched.
    """
    bundle = corpora_dir() / f"{name}.bundle"
    if not bundle.is_file():
        raise FileNotFoundError(
            f"corpus bundle not found: {bundle}; set {CORPORA_ENV_VAR} to the folder that "
            f"contains {name}.bundle"
        )
    run_git(dest.parent, "clone", "-q", "-b", "main", str(bundle), str(dest))
    return dest


def first_parent_commits(repo: Path, branch: str = "main") -> list[str]:
    """Return the commit SHAs on BRANCH's first-parent line, oldest first."""
    output = run_git(repo, "rev-list", "--reverse", "--first-parent", branch, "--")
    return output.decode("ascii").split()


def ls_tree(repo: Path, commit: str) -> dict[str, tuple[str, str]]:
    """Map every blob and submodule path in COMMIT's tree to its (mode, object SHA)."""
    output = run_git(repo, "ls-tree", "-r", "-z", "--full-tree", commit)
    entries: dict[str, tuple[str, str]] = {}
    for record in output.split(b"\0"):
        if not record:
            continue
        header, path = record.split(b"\t", 1)
        mode, _object_type, sha = header.decode("ascii").split()
        entries[path.decode("utf-8", "surrogateescape")] = (mode, sha)
    return entries


def make_repo(
    dest: Path,
    files: dict[str, FileEntry],
    message: str = "Initial commit",
    branch: str = "main",
) -> str:
    """Create a git repository at DEST with one commit of FILES on BRANCH and return its SHA.

    See FileEntry for the accepted values. The files are also written to the work tree.
    """
    dest.mkdir(parents=True, exist_ok=True)
    run_git(dest, "init", "-q", "-b", branch)
    return commit_files(dest, files, message)


def commit_files(repo: Path, files: dict[str, FileEntry], message: str) -> str:
    """Apply FILES to the work tree of REPO, commit them on the current branch, return the SHA.

    A None value deletes the path. Paths not named in FILES keep their content.
    """
    gitlinks: dict[str, str] = {}
    for path, entry in files.items():
        target = repo / path
        _remove_path(target)
        if entry is None:
            continue  # `git add -A` below stages the deletion
        submodule_sha = _write_entry(target, entry)
        if submodule_sha is not None:
            gitlinks[path] = submodule_sha

    run_git(repo, "add", "-A")
    for path, sha in gitlinks.items():
        run_git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sha},{path}")
    run_git(repo, *_COMMIT_IDENTITY, "commit", "-q", "--allow-empty", "-m", message)
    return run_git(repo, "rev-parse", "HEAD").decode("ascii").strip()


def _remove_path(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir() and not any(target.iterdir()):
        target.rmdir()


def _write_entry(target: Path, entry: bytes | tuple[str, str | bytes]) -> str | None:
    """Write one FileEntry to the work tree and return the commit SHA if it is a submodule."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(entry, bytes):
        target.write_bytes(entry)
        return None

    kind, value = entry
    if kind == "executable" and isinstance(value, bytes):
        target.write_bytes(value)
        target.chmod(0o755)
        return None
    if kind == "symlink" and isinstance(value, str):
        target.symlink_to(value)
        return None
    if kind == "submodule" and isinstance(value, str):
        # Git treats an empty folder at a gitlink path as a submodule that is not checked out,
        # so `git add -A` keeps the gitlink instead of recording it as deleted.
        target.mkdir()
        return value
    raise ValueError(
        f"invalid file entry for {target}: {entry!r}; use bytes, ('executable', bytes), "
        "('symlink', target), ('submodule', sha) or None"
    )


@dataclass(frozen=True)
class ObjectInfo:
    """The header git prints for an object: full SHA, type and size in bytes."""

    sha: str
    type: str
    size: int


@dataclass(frozen=True)
class TreeEntry:
    """One line of ``git ls-tree -l``. The size is None for trees and submodules."""

    mode: str
    type: str
    sha: str
    size: int | None
    path: str


class GitObjectReader:
    """Reads objects from one repository through a persistent ``git cat-file --batch-command``.

    Starting a git process per object costs milliseconds, so one process serves every lookup.
    A lock serialises the request-response exchanges, so threads may share one reader.
    ``--batch-command`` needs git 2.36 or later.
    """

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def info(self, name: str) -> ObjectInfo | None:
        """Resolve a name such as ``sha^{tree}`` or ``sha:path``, or return None if missing."""
        with self._lock:
            return self._exchange("info", name)

    def read(self, name: str) -> tuple[ObjectInfo, bytes] | None:
        """Return the object's header and content, or None if the name resolves to nothing."""
        with self._lock:
            info = self._exchange("contents", name)
            if info is None:
                return None
            stdout = self._pipes()[1]
            data = stdout.read(info.size + 1)[:-1]
            return info, data

    def close(self) -> None:
        """Stop the git process. A later lookup starts a new one."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                ["git", "-C", str(self.repo), "cat-file", "--batch-command"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=git_env(),
            )
        assert self._process.stdin is not None and self._process.stdout is not None
        return self._process.stdin, self._process.stdout

    def _exchange(self, command: str, name: str) -> ObjectInfo | None:
        """Send one command and parse the header line. The caller holds the lock."""
        if not name or "\n" in name or "\0" in name:
            return None
        stdin, stdout = self._pipes()
        stdin.write(f"{command} {name}\n".encode())
        stdin.flush()
        header = stdout.readline()
        if not header.endswith(b"\n"):
            raise GitCommandError(f"git cat-file in {self.repo} exited while reading {name!r}")
        # Git prints "<sha> <type> <size>" for a found object. Otherwise it prints
        # "<name> missing" or "<name> ambiguous", and the name may contain spaces.
        fields = header[:-1].decode("utf-8", "surrogateescape").split(" ")
        if len(fields) != 3 or not fields[2].isdigit():
            return None
        return ObjectInfo(sha=fields[0], type=fields[1], size=int(fields[2]))


def list_tree(repo: Path, tree_sha: str, recursive: bool) -> list[TreeEntry]:
    """List a tree in git's order. RECURSIVE includes subtrees and everything below them."""
    args = ["ls-tree", "-z", "-l", "--full-tree"]
    if recursive:
        args += ["-r", "-t"]
    output = run_git(repo, *args, tree_sha)
    entries = []
    for record in output.split(b"\0"):
        if not record:
            continue
        header, path = record.split(b"\t", 1)
        mode, object_type, sha, size = header.decode("ascii").split()
        entries.append(
            TreeEntry(
                mode=mode,
                type=object_type,
                sha=sha,
                size=None if size == "-" else int(size),
                path=path.decode("utf-8", "surrogateescape"),
            )
        )
    return entries
