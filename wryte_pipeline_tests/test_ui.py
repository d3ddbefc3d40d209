"""Browser test: the Dagster UI shows the batch report and partitions that a `sync` recorded.

The module syncs a small local repository with one broken file through
`python -m wryte_pipeline sync`, starts `dagster-webserver` on the same DAGSTER_HOME, and renders
the asset pages in headless Chromium (Debian's `chromium` package). `--dump-dom` prints the DOM
after the React app has rendered, so no browser driver is needed. A screenshot of the report
page and the DOM dumps are kept in `test-artifacts/` at the project root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from wryte_pipeline_tests.corpora import make_repo

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = PROJECT_ROOT / "test-artifacts"
CHROMIUM_PATH = Path("/usr/bin/chromium")

# Chromium needs --no-sandbox to start as root. The other flags switch off its own background
# requests (updates, sync, QUIC, proxies), because the only host it may reach is 127.0.0.1.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Virtual time lets the page's requests and timers finish before the dump, without
    # waiting this long on the wall clock.
    "--virtual-time-budget=20000",
]
SCREENSHOT_WINDOW_SIZE = "1800,1500"
CHROMIUM_TIMEOUT_SECONDS = 60
SERVER_START_TIMEOUT_SECONDS = 90
# The page can render before the webserver has loaded the code location, so a page whose
# expected content is missing is dumped again until this deadline.
PAGE_READY_TIMEOUT_SECONDS = 60
SYNC_TIMEOUT_SECONDS = 120

BROKEN_PATH = "posts/broken.md"
REPO_FILES: dict[str, bytes] = {
    "posts/hello.md": b"---\ntitle: Hello\ndate: 2024-01-02\n---\nHello, world.\n",
    "posts/second.md": b"---\ntitle: Second post\ntags: [news, tests]\n---\nMore text.\n",
    "docs/guide.md": b'+++\ntitle = "Guide"\n+++\nHow to write a post.\n',
    # YAML rejects an unquoted ': ' inside a value, so this file fails on line 2.
    BROKEN_PATH: b"---\ntitle: Notes: part two\n---\nThe title needs quotes.\n",
}
REPORT_COLUMNS = ["total", "succeeded", "failed", "retried", "skipped", "deleted"]

# Requests to the webserver go straight to 127.0.0.1, never through a proxy from the environment.
LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class DagsterUI:
    """A running webserver, the Chromium binary and a folder for browser profiles."""

    url: str
    chromium: Path
    profiles_dir: Path
    sync_output: str


@dataclass(frozen=True)
class RenderedPage:
    """The DOM of one page after rendering, with its tables parsed."""

    url: str
    dom: str
    tables: list[list[list[str]]]


class TableCollector(HTMLParser):
    """Collects every `<table>` of a document as rows of cell texts.

    A table nested in a cell is collected as a table of its own, and its text is left out of
    the outer cell. Cell text has its whitespace collapsed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._open_tables: list[list[list[str]]] = []
        self._open_cells: list[list[str] | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._open_tables.append([])
            self._open_cells.append(None)
        elif not self._open_tables:
            return
        elif tag == "tr":
            self._open_tables[-1].append([])
        elif tag in ("td", "th"):
            self._open_cells[-1] = []

    def handle_endtag(self, tag: str) -> None:
        if not self._open_tables:
            return
        if tag == "table":
            self.tables.append(self._open_tables.pop())
            self._open_cells.pop()
        elif tag in ("td", "th"):
            parts = self._open_cells[-1]
            rows = self._open_tables[-1]
            if parts is not None and rows:
                rows[-1].append(" ".join("".join(parts).split()))
            self._open_cells[-1] = None

    def handle_data(self, data: str) -> None:
        if self._open_tables and self._open_cells[-1] is not None:
            self._open_cells[-1].append(data)


def parse_tables(dom: str) -> list[list[list[str]]]:
    collector = TableCollector()
    collector.feed(dom)
    collector.close()
    return collector.tables


def find_table(page: RenderedPage, first_columns: list[str]) -> list[list[str]]:
    """Return the first table whose header row starts with FIRST_COLUMNS."""
    for table in page.tables:
        if table and table[0][: len(first_columns)] == first_columns:
            return table
    headers = [table[0] for table in page.tables if table]
    raise AssertionError(
        f"no table with columns {first_columns} on {page.url}; table headers found: {headers}"
    )


def find_chromium() -> Path:
    if not os.access(CHROMIUM_PATH, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM_PATH}; the browser test needs Debian's package: "
            "run `apt-get update && apt-get install -y chromium` (.ci/run installs it when "
            "it is missing)",
            pytrace=False,
        )
    return CHROMIUM_PATH


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def subprocess_env(repo: Path, home: Path, dagster_home: Path) -> dict[str, str]:
    """Return this process's environment with only this module's Wryte and Dagster settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("WRYTE_", "GITHUB_", "DAGSTER_"))
    }
    env.update(
        {
            "WRYTE_REPO": str(repo),
            "WRYTE_DATABASE_URL": f"sqlite:///{home / 'content.db'}",
            "WRYTE_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
        }
    )
    return env


def make_dagster_home(path: Path) -> Path:
    """Create a DAGSTER_HOME with the project's dagster.yaml.

    That file sets `nux: enabled: false`, so no "Join the Dagster community" dialog covers
    the page in the screenshot.
    """
    path.mkdir()
    config = (PROJECT_ROOT / "dagster.yaml").read_text(encoding="utf-8")
    assert "nux:" in config, "dagster.yaml must switch the first-run dialog off"
    (path / "dagster.yaml").write_text(config, encoding="utf-8")
    return path


def run_sync(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "wryte_pipeline", "sync"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=SYNC_TIMEOUT_SECONDS,
        check=False,
    )
    output = result.stdout + result.stderr
    # Exit status 1 is expected: the broken file fails and the other files succeed.
    assert result.returncode == 1, f"sync exited with {result.returncode}:\n{output}"
    assert "failed 1" in result.stdout, output
    return output


def log_tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_for_server(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll `/server_info` until it returns HTTP 200, or fail after the timeout."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"dagster-webserver exited with status {process.returncode} before it answered "
                f"on {url}; its log ends with:\n{log_tail(log_path)}"
            )
        try:
            with LOCAL_OPENER.open(f"{url}/server_info", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(
        f"dagster-webserver did not answer on {url}/server_info within "
        f"{SERVER_START_TIMEOUT_SECONDS} s; its log ends with:\n{log_tail(log_path)}"
    )


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the webserver and its code server, which share the webserver's process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def run_chromium(ui: DagsterUI, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a new profile folder, failing the test on an error or timeout."""
    profile = tempfile.mkdtemp(prefix="chromium-", dir=ui.profiles_dir)
    command = [str(ui.chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium timed out after {CHROMIUM_TIMEOUT_SECONDS} s: {command}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if result.returncode != 0:
        stderr_tail = "\n".join(result.stderr.splitlines()[-20:])
        pytest.fail(f"chromium exited with {result.returncode}: {command}\n{stderr_tail}")
    return result


def render_page(ui: DagsterUI, path: str, is_ready: Callable[[str], bool]) -> RenderedPage:
    """Dump the DOM of PATH until IS_READY accepts it or the deadline passes.

    Returns the last DOM either way, so the test's asserts report what the page showed.
    """
    url = f"{ui.url}{path}"
    deadline = time.monotonic() + PAGE_READY_TIMEOUT_SECONDS
    while True:
        dom = run_chromium(ui, "--dump-dom", url).stdout
        if is_ready(dom) or time.monotonic() > deadline:
            return RenderedPage(url=url, dom=dom, tables=parse_tables(dom))
        time.sleep(1)


def save_artifact(name: str, content: str) -> Path:
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    path = ARTIFACTS_DIR / name
    path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterUI]:
    """Sync a repository with one broken file, then serve its Dagster instance on 127.0.0.1."""
    chromium = find_chromium()
    root = tmp_path_factory.mktemp("ui")
    repo = root / "repo"
    make_repo(repo, dict(REPO_FILES))
    env = subprocess_env(repo, root / "wryte-home", make_dagster_home(root / "dagster-home"))
    sync_output = run_sync(env)

    url = f"http://127.0.0.1:{free_port()}"
    port = url.rsplit(":", 1)[1]
    webserver = Path(sys.executable).with_name("dagster-webserver")
    log_path = root / "webserver.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(webserver), "-h", "127.0.0.1", "-p", port, "-m", "wryte_pipeline.definitions"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
    try:
        wait_for_server(url, process, log_path)
        profiles_dir = root / "chromium-profiles"
        profiles_dir.mkdir()
        yield DagsterUI(url, chromium, profiles_dir, sync_output)
    finally:
        stop_process_group(process)


@pytest.fixture(scope="module")
def report_page(dagster_ui: DagsterUI) -> RenderedPage:
    """The `batch_report` asset page, whose overview shows the latest materialization metadata."""
    page = render_page(
        dagster_ui,
        "/assets/batch_report",
        lambda dom: "dagster-markdown" in dom and BROKEN_PATH in dom,
    )
    save_artifact("batch_report.html", page.dom)
    return page


def test_report_page_shows_metadata_counts(report_page):
    table = find_table(report_page, ["Key", "Timestamp", "Value"])
    entries = {row[0]: row[2] for row in table[1:] if len(row) == 3}

    assert entries.get("total") == "4", entries
    assert entries.get("succeeded") == "3", entries
    assert entries.get("failed") == "1", entries
    assert entries.get("github_requests") == "0", entries


def test_report_page_renders_markdown_table(report_page):
    table = find_table(report_page, REPORT_COLUMNS)
    assert len(table) == 2, table
    counts = dict(zip(table[0], table[1], strict=False))

    assert counts["total"] == "4", counts
    assert counts["succeeded"] == "3", counts
    assert counts["failed"] == "1", counts
    assert counts["skipped"] == "0", counts
    assert counts["deleted"] == "0", counts


def test_report_page_lists_failed_file(report_page):
    table = find_table(report_page, ["path", "error"])
    rows = table[1:]

    assert [row[0] for row in rows] == [BROKEN_PATH], rows
    assert f"{BROKEN_PATH}, line 2" in rows[0][1], rows
    assert "invalid YAML front matter" in rows[0][1], rows


def test_report_table_columns_match_values(report_page):
    table = find_table(report_page, REPORT_COLUMNS)
    counts = dict(zip(table[0], table[1], strict=False))

    assert re.fullmatch(r"\d+\.\d s", counts.get("duration", "")), counts
    assert counts.get("requests") == "0", counts


def test_report_page_screenshot(dagster_ui, report_page):
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    screenshot = ARTIFACTS_DIR / "batch_report.png"
    screenshot.unlink(missing_ok=True)

    run_chromium(
        dagster_ui,
        f"--screenshot={screenshot}",
        f"--window-size={SCREENSHOT_WINDOW_SIZE}",
        report_page.url,
    )

    assert screenshot.is_file(), f"chromium wrote no screenshot to {screenshot}"
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", screenshot
    assert screenshot.stat().st_size > 20_000, f"{screenshot} looks blank"


def test_partitions_page_lists_files(dagster_ui):
    paths = sorted(REPO_FILES)
    page = render_page(
        dagster_ui,
        "/assets/markdown_document?view=partitions",
        lambda dom: all(path in dom for path in paths),
    )
    save_artifact("markdown_document_partitions.html", page.dom)

    for path in paths:
        assert path in page.dom, f"partition {path} not shown on {page.url}"


def test_partitions_page_shows_failed_file(dagster_ui):
    """The failed file's partition counts as failed, the other three as materialized."""
    expected_labels = ["Failed (1)", f"Materialized ({len(REPO_FILES) - 1})"]
    page = render_page(
        dagster_ui,
        "/assets/markdown_document?view=partitions",
        lambda dom: all(label in dom for label in expected_labels),
    )
    for label in expected_labels:
        assert label in page.dom, f"{label!r} not shown on {page.url}"

    screenshot = ARTIFACTS_DIR / "markdown_document_partitions.png"
    screenshot.unlink(missing_ok=True)
    run_chromium(
        dagster_ui,
        f"--window-size={SCREENSHOT_WINDOW_SIZE}",
        f"--screenshot={screenshot}",
        page.url,
    )
    assert screenshot.is_file(), f"chromium wrote no screenshot to {screenshot}"
