"""Replay a corpus's history with GitHub faults and killed workers; print what was lost.

Usage: .venv/bin/python -m benchmarks.fault_replay [--corpus hugo-docs] [--steps 30]
       [--kill-every 5] [--postgres]

Every step syncs the served commit until a sync succeeds, then compares the documents table
with `git ls-tree` at that commit. The run fails (exit 1) if any file was lost or duplicated.
"""

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from wryte_pipeline_tests.corpora import clone_corpus
from wryte_pipeline_tests.fake_github import FakeGitHub
from wryte_pipeline_tests.fault_replay import pick_steps, replay_with_faults

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="hugo-docs", help="corpus bundle name")
    parser.add_argument("--steps", type=int, default=30, help="commits to replay (default 30)")
    parser.add_argument(
        "--kill-every",
        type=int,
        default=5,
        help="kill the sync worker on every Nth step (default 5)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="store content in a fresh PostgreSQL schema instead of SQLite",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wryte-fault-replay-") as folder:
        workdir = Path(folder)
        repo = clone_corpus(args.corpus, workdir / args.corpus)
        steps = pick_steps(repo, args.steps)
        kills = set(range(1, len(steps), args.kill_every))
        exhaustion = {len(steps) // 2}
        with _database(args.postgres, workdir) as database_url, FakeGitHub() as fake:
            started = time.monotonic()
            figures = replay_with_faults(
                repo,
                fake,
                workdir,
                steps,
                kill_steps=kills,
                exhaustion_steps=exhaustion,
                database_url=database_url,
            )
    print(
        f"fault replay of {args.corpus}: {len(steps)} steps in {time.monotonic() - started:.0f} s"
    )
    print(figures.render())
    return 0 if figures.files_lost == 0 and figures.duplicate_rows == 0 else 1


class _database:
    """A SQLite file, or a PostgreSQL schema created here and dropped on exit."""

    def __init__(self, postgres: bool, workdir: Path) -> None:
        self.schema = f"wryte_replay_{uuid.uuid4().hex[:10]}" if postgres else None
        self.url = f"sqlite:///{workdir / 'content.db'}"
        self.admin = sa.create_engine(POSTGRES_URL, pool_pre_ping=True) if postgres else None

    def __enter__(self) -> str:
        if self.admin is None:
            return self.url
        with self.admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
        return f"{POSTGRES_URL}?options=-csearch_path%3D{self.schema}"

    def __exit__(self, *_exc: object) -> None:
        if self.admin is not None:
            with self.admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            self.admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
