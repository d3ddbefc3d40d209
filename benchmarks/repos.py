"""Git repositories the benchmark serves: hugo-docs with its pushes, and a synthetic one.

The synthetic repository copies the Markdown of the three shared corpora (hugo-docs,
jekyll-docs, rust-blog) under numbered folders until it has the requested number of files, all
in one commit. Copies share blob SHAs, which changes nothing for the pipeline: it fetches and
stores every path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wryte_pipeline.settings import DEFAULT_PATH_PATTERNS
from wryte_pipeline.source import REGULAR_FILE_MODES, git_blob_sha, matches_patterns
from wryte_pipeline_tests.corpora import (
    FileEntry,
    clone_corpus,
    commit_files,
    ls_tree,
    make_repo,
)

HUGO_CORPUS = "hugo-docs"
CORPORA = ("hugo-docs", "jekyll-docs", "rust-blog")


@dataclass(frozen=True)
class Push:
    """A commit that edits some Markdown files.

    Attributes:
        sha: the new commit.
        blob_shas: path -> blob SHA at ``sha`` of every edited file.
    """

    sha: str
    blob_shas: dict[str, str]


def clone(corpus: str, root: Path) -> Path:
    """Clone the ``main`` branch of a shared corpus into ``root/corpus``."""
    root.mkdir(parents=True, exist_ok=True)
    return clone_corpus(corpus, root / corpus)


def markdown_blobs(repo: Path, commit: str = "HEAD") -> dict[str, str]:
    """Return path -> blob SHA of the files the pipeline syncs at ``commit``."""
    return {
        path: sha
        for path, (mode, sha) in ls_tree(repo, commit).items()
        if mode in REGULAR_FILE_MODES and matches_patterns(path, DEFAULT_PATH_PATTERNS)
    }


def build_synthetic_repo(dest: Path, sources: list[Path], file_count: int) -> str:
    """Create a repository of ``file_count`` Markdown files copied from ``sources``.

    Paths read ``copy-NN/CORPUS/ORIGINAL_PATH``. Returns the commit SHA.

    Raises:
        ValueError: the sources contain no Markdown file.
    """
    originals = [(source, path) for source in sources for path in sorted(markdown_blobs(source))]
    if not originals:
        raise ValueError(f"no Markdown files found in {[str(s) for s in sources]}")
    files: dict[str, FileEntry] = {}
    for index in range(file_count):
        source, path = originals[index % len(originals)]
        copy = index // len(originals)
        files[f"copy-{copy:02d}/{source.name}/{path}"] = (source / path).read_bytes()
    return make_repo(dest, files, message=f"Synthetic repository of {file_count} files")


def commit_edits(repo: Path, count: int, offset: int, label: str) -> Push:
    """Append a comment line to ``count`` Markdown files spread over the tree, and commit.

    ``offset`` shifts the choice, so pushes with different offsets edit different files.
    """
    paths = sorted(markdown_blobs(repo))
    step = max(len(paths) // count, 1)
    chosen = [paths[(offset + index * step) % len(paths)] for index in range(count)]
    marker = f"\n<!-- benchmark {label} -->\n".encode()
    edited = {path: (repo / path).read_bytes() + marker for path in chosen}
    files: dict[str, FileEntry] = dict(edited)
    sha = commit_files(repo, files, f"Edit {count} files ({label})")
    return Push(sha, {path: git_blob_sha(data) for path, data in edited.items()})
