"""Replay real history: after each step the documents table equals the tree at that commit."""

import pytest

from wryte_pipeline.cli import main
from wryte_pipeline_tests.corpora import first_parent_commits
from wryte_pipeline_tests.helpers import changed_paths, expected_documents, stored_documents


def replay_steps(commits: list[str], single_steps: int, strides: int) -> list[str]:
    """Start half way, then take single commits, then larger strides to the head."""
    start = len(commits) // 2
    singles = commits[start + 1 : start + 1 + single_steps]
    rest = commits[start + 1 + single_steps :]
    stride = max(len(rest) // max(strides, 1), 1)
    steps = [commits[start], *singles, *rest[stride - 1 :: stride]]
    if steps[-1] != commits[-1]:
        steps.append(commits[-1])
    return steps


@pytest.mark.slow
@pytest.mark.parametrize(
    ("corpus", "singles", "strides"),
    [("hugo-docs", 8, 4), ("jekyll-docs", 8, 4), ("rust-blog", 8, 4)],
)
def test_replay_history_matches_tree(
    corpus, singles, strides, corpus_clones, fake_github, tmp_path, monkeypatch, capsys
):
    repo = corpus_clones[corpus]
    commits = first_parent_commits(repo)
    steps = replay_steps(commits, singles, strides)
    fake_github.add_repo(f"corpora/{corpus}", repo, head=steps[0])
    database_url = f"sqlite:///{tmp_path / 'content.db'}"
    monkeypatch.setenv("WRYTE_REPO", f"corpora/{corpus}")
    monkeypatch.setenv("WRYTE_GITHUB_API_URL", fake_github.url)
    monkeypatch.setenv("WRYTE_DATABASE_URL", database_url)
    monkeypatch.setenv("WRYTE_TARBALL_THRESHOLD", "100000")

    previous = None
    for commit in steps:
        fake_github.set_head(f"corpora/{corpus}", commit)
        fake_github.reset_stats()
        status = main(["sync"])
        output = capsys.readouterr().out
        assert status == 0, output
        assert stored_documents(database_url) == expected_documents(repo, commit), commit
        assert fake_github.stats.blobs == len(changed_paths(repo, previous, commit)), commit
        previous = commit
