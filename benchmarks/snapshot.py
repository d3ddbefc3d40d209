"""A copy of the pipeline and its fake server as committed at one git ref.

Measuring a ref instead of the work tree keeps a long benchmark on one version of the code while
the work tree changes, and lets two refs be compared. The copy contains ``wryte_pipeline`` and
``wryte_pipeline_tests`` from the ref and ``benchmarks`` from the work tree. Subprocesses run
with the copy first on ``PYTHONPATH``, ahead of the project's editable install.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

from benchmarks.fake_server import PROJECT_ROOT
from wryte_pipeline_tests.corpora import run_git

SNAPSHOT_PACKAGES = ("wryte_pipeline", "wryte_pipeline_tests")


def export_snapshot(ref: str, dest: Path) -> str:
    """Extract the packages at ``ref`` into ``dest`` and return the ref's short commit SHA.

    Raises:
        GitCommandError: ``ref`` does not name a commit of the project.
    """
    sha = run_git(PROJECT_ROOT, "rev-parse", "--short", f"{ref}^{{commit}}").decode().strip()
    archive = run_git(PROJECT_ROOT, "archive", "--format=tar", sha, *SNAPSHOT_PACKAGES)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    shutil.copytree(
        PROJECT_ROOT / "benchmarks",
        dest / "benchmarks",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return sha
