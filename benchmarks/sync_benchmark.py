"""Benchmark Wryte Pipeline against naive GitHub syncs and a floor without Dagster.

Run from the project root: ``.venv/bin/python -m benchmarks.sync_benchmark``. It serves the
shared corpora through the project's fake GitHub server, which waits 100 ms before each API
response and rejects requests beyond 20 in flight with ``Retry-After: 1``. It prints Markdown
tables of the results, of the targets met or not, and of the per-run and per-file costs behind
the run shape.

Contenders: the naive sequential loop (PyGithub contents API, one INSERT per file), the naive
flood (every file at once), the pipeline through ``python -m wryte_pipeline sync`` with SQLite
and with PostgreSQL instance storage (also with Dagster's own storage classes for the hugo-docs
import, unless ``--no-stock``), and the floor (one tarball, parse, one bulk insert).
PostgreSQL must listen on 127.0.0.1:5432 with trust auth for ``postgres`` unless
``--instance-storage sqlite`` is given. A full run takes about 10 minutes on 2 cores, most of
it the sequential loop, which ``--quick`` samples and extrapolates.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmarks.fake_server import PROJECT_ROOT, FakeGitHubProcess
from benchmarks.pipeline_runs import INSTANCE_STORAGES, postgres_databases
from benchmarks.proctree import BenchmarkError
from benchmarks.repos import CORPORA, HUGO_CORPUS, build_synthetic_repo, clone, markdown_blobs
from benchmarks.results import Result, render_results
from benchmarks.run_shape import render_run_shape
from benchmarks.snapshot import export_snapshot
from benchmarks.targets import evaluate, render_checks
from benchmarks.workloads import (
    HUGO_REPO,
    HUGO_STATE_WORKLOADS,
    SYNTHETIC_REPO,
    WORKLOADS,
    Benchmark,
    Options,
    ServedRepository,
)
from wryte_pipeline_tests.corpora import GitCommandError, run_git

LATENCY_SECONDS = 0.1
SECONDARY_LIMIT_CONCURRENCY = 20
SECONDARY_RETRY_AFTER_SECONDS = 1
SYNTHETIC_FILES = 10_000
QUICK_SAMPLE_FILES = 100


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, and write it to ``--output`` if given.

    Returns 0 whether or not the targets are met, and 1 when a step of the benchmark failed.
    """
    args = _parse_args(argv)
    try:
        report = run_and_render(args, argv)
    except (BenchmarkError, GitCommandError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report)
    if args.output is not None:
        args.output.write_text(report + "\n")
    return 0


def run_and_render(args: argparse.Namespace, argv: Sequence[str] | None) -> str:
    """Run the workloads that ``args`` choose and return the Markdown report."""
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    storages = INSTANCE_STORAGES if args.instance_storage == "both" else (args.instance_storage,)
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wryte-bench-") as folder:
        workdir = Path(folder)
        code_root, version = _code_under_test(args.pipeline_ref, workdir)
        options = Options(
            workloads=args.workloads,
            storages=storages,
            stock=not args.no_stock,
            sample=args.sample if args.quick else None,
            repeat=args.repeat,
            log_dir=args.log_dir,
            code_root=code_root,
        )
        results = run_benchmark(options, workdir, args.synthetic_files)
    command = shlex.join(["python", "-m", "benchmarks.sync_benchmark", *(argv or sys.argv[1:])])
    load = (load_before, os.getloadavg()[0])
    return render_report(results, started, f"`{command}` on {version}", load)


def run_benchmark(options: Options, workdir: Path, synthetic_files: int) -> list[Result]:
    """Prepare the repositories, start the fake server, and run every chosen workload."""
    repositories = prepare_repositories(options.workloads, workdir, synthetic_files)
    served = {name: repository.work_tree for name, repository in repositories.items()}
    with ExitStack() as stack:
        server = stack.enter_context(
            FakeGitHubProcess(served, workdir / "fake-github.log", options.code_root)
        )
        server.set_faults(
            latency_seconds=LATENCY_SECONDS,
            secondary_limit_concurrency=SECONDARY_LIMIT_CONCURRENCY,
            secondary_retry_after=SECONDARY_RETRY_AFTER_SECONDS,
        )
        databases = None
        if "postgres" in options.storages:
            databases = stack.enter_context(postgres_databases())
        benchmark = Benchmark(options, workdir, server, repositories, databases)
        return benchmark.run()


def prepare_repositories(
    workloads: Sequence[str], workdir: Path, synthetic_files: int
) -> dict[str, ServedRepository]:
    """Clone hugo-docs and build the synthetic repository, as the workloads need them."""
    repositories: dict[str, ServedRepository] = {}
    if any(workload in workloads for workload in ("hugo-cold", *HUGO_STATE_WORKLOADS)):
        work_tree = clone(HUGO_CORPUS, workdir / "served")
        repositories[HUGO_REPO] = _served(HUGO_REPO, work_tree)
    if "synthetic-cold" in workloads:
        sources = [clone(corpus, workdir / "sources") for corpus in CORPORA]
        work_tree = workdir / "served" / "synthetic"
        build_synthetic_repo(work_tree, sources, synthetic_files)
        repositories[SYNTHETIC_REPO] = _served(SYNTHETIC_REPO, work_tree)
    return repositories


def render_report(
    results: Sequence[Result], started: datetime, command: str, load: tuple[float, float]
) -> str:
    """Render the run's settings, results, targets and run-shape costs as Markdown.

    ``load`` contains the 1-minute load average at the start and at the end of the run. Other
    work on the machine raises it and slows every contender.
    """
    sections = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on {describe_machine()}.",
        f"Command: {command}.",
        f"Load average (1 minute): {load[0]:.2f} at the start, {load[1]:.2f} at the end.",
        f"Fake GitHub: {LATENCY_SECONDS * 1000:.0f} ms latency per API request, secondary "
        f"rate limit above {SECONDARY_LIMIT_CONCURRENCY} requests in flight "
        f"(403, Retry-After {SECONDARY_RETRY_AFTER_SECONDS} s), primary limit 5,000 an hour "
        "refilled before each contender.",
        "### Results",
        render_results(results),
        "### Targets",
        render_checks(evaluate(results)),
        "### Cost of a run and of a file",
        render_run_shape(results),
    ]
    return "\n\n".join(sections)


def describe_machine() -> str:
    """Return cores, CPU model, memory and the versions that shape the figures."""
    model = _cpuinfo_field("model name") or platform.machine()
    memory_gib = _meminfo_kib("MemTotal") / 1024**2
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("dagster", "dagster-postgres", "PyGithub", "SQLAlchemy")
    )
    return (
        f"{os.cpu_count()} cores ({model}), {memory_gib:.0f} GiB memory, "
        f"Python {platform.python_version()}, {versions}"
    )


def _code_under_test(ref: str | None, workdir: Path) -> tuple[Path, str]:
    """Return the folder to import the pipeline from, and a description of that code."""
    if ref is None:
        return PROJECT_ROOT, f"the work tree at {describe_commit()}"
    sha = export_snapshot(ref, workdir / "snapshot")
    return workdir / "snapshot", f"commit {sha} (`--pipeline-ref {ref}`)"


def describe_commit() -> str:
    """Return the project's short commit SHA, marked when the work tree has changes."""
    sha = run_git(PROJECT_ROOT, "rev-parse", "--short", "HEAD").decode().strip()
    changed = run_git(PROJECT_ROOT, "status", "--porcelain", "--untracked-files=no").strip()
    return f"{sha} with uncommitted changes" if changed else sha


def _served(full_name: str, work_tree: Path) -> ServedRepository:
    head = run_git(work_tree, "rev-parse", "HEAD").decode().strip()
    return ServedRepository(full_name, work_tree, head, len(markdown_blobs(work_tree, head)))


def _cpuinfo_field(name: str) -> str | None:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def _meminfo_kib(name: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    return 0


def _workload_list(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in WORKLOADS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"invalid workloads {text!r}: choose from {', '.join(WORKLOADS)}"
        )
    return chosen


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: use a whole number above 0")
    return value


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sync_benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workloads",
        type=_workload_list,
        default=list(WORKLOADS),
        help=f"comma-separated workloads to run (default: all of {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="sync only a sample of files in the sequential loop and extrapolate its figures",
    )
    parser.add_argument(
        "--sample",
        type=_positive_int,
        default=QUICK_SAMPLE_FILES,
        help=f"files in the --quick sample (default {QUICK_SAMPLE_FILES})",
    )
    parser.add_argument(
        "--instance-storage",
        choices=(*INSTANCE_STORAGES, "both"),
        default="both",
        help="Dagster instance storage for the pipeline runs (default: both)",
    )
    parser.add_argument(
        "--no-stock",
        action="store_true",
        help="skip the hugo-docs imports with Dagster's own storage classes",
    )
    parser.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        help="imports of hugo-docs by the pipeline and the floor; the median is reported "
        "(default 1)",
    )
    parser.add_argument(
        "--synthetic-files",
        type=_positive_int,
        default=SYNTHETIC_FILES,
        help=f"files in the synthetic repository (default {SYNTHETIC_FILES})",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    parser.add_argument(
        "--pipeline-ref",
        help="measure the pipeline and the fake server as committed at this git ref instead "
        "of the work tree",
    )
    parser.add_argument("--log-dir", type=Path, help="save each contender's output in this folder")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
