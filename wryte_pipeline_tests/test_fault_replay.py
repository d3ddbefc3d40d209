"""A short fault replay: real history, GitHub faults, one killed worker, nothing lost."""

import pytest

from wryte_pipeline_tests.fault_replay import pick_steps, replay_with_faults


@pytest.mark.slow
def test_fault_replay_loses_nothing(corpus_clones, fake_github, tmp_path, capsys):
    repo = corpus_clones["jekyll-docs"]
    steps = pick_steps(repo, 6)

    figures = replay_with_faults(
        repo, fake_github, tmp_path, steps, kill_steps={2}, exhaustion_steps={0}
    )

    with capsys.disabled():
        print("\nfault replay (jekyll-docs, 6 steps)\n" + figures.render())
    assert figures.mismatched_steps == []
    assert figures.files_lost == 0
    assert figures.duplicate_rows == 0
    assert figures.workers_killed == 1
    assert figures.faults_injected > 0
    assert figures.retries > 0
