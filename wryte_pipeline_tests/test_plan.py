from wryte_pipeline.plan import PlannedItem, plan_sync
from wryte_pipeline.settings import DEFAULT_PATH_PATTERNS
from wryte_pipeline.source import TreeEntry, matches_patterns

A = "a" * 40
B = "b" * 40
C = "c" * 40


def entry(path: str, sha: str, mode: str = "100644") -> TreeEntry:
    return TreeEntry(path, mode, sha, 10)


def plan(entries, stored=None, settled=None, cap=100):
    return plan_sync(entries, stored or {}, settled or {}, DEFAULT_PATH_PATTERNS, cap)


def test_plan_first_sync_adds_all():
    result = plan([entry("a.md", A), entry("docs/b.md", B)])
    assert [item.action for item in result.items] == ["upsert", "upsert"]
    assert result.complete


def test_plan_skips_unchanged_blobs():
    result = plan([entry("a.md", A)], stored={"a.md": A})
    assert result.items == []
    assert result.unchanged == 1


def test_plan_changed_blob_is_upsert():
    result = plan([entry("a.md", B)], stored={"a.md": A})
    assert result.items == [PlannedItem("upsert", "a.md", B, 10)]


def test_plan_missing_path_is_delete():
    result = plan([], stored={"gone.md": A})
    assert result.items == [PlannedItem("delete", "gone.md")]


def test_plan_pairs_rename_by_blob():
    result = plan([entry("new.md", A)], stored={"old.md": A})
    assert result.items == [PlannedItem("rename", "new.md", A, 10, previous_path="old.md")]


def test_plan_rename_pairs_each_blob_once():
    entries = [entry("x.md", A), entry("y.md", A)]
    result = plan(entries, stored={"old.md": A})
    actions = sorted((item.action, item.path) for item in result.items)
    assert actions == [("rename", "x.md"), ("upsert", "y.md")]


def test_plan_ignores_unmatched_paths():
    result = plan([entry("image.png", A), entry("README.txt", B)])
    assert result.items == []


def test_plan_reports_symlink_and_submodule():
    entries = [entry("docs/link.md", A, "120000"), entry("vendor/sub.md", B, "160000")]
    result = plan(entries)
    assert [item.action for item in result.items] == ["skip", "skip"]
    assert "symlink" in (result.items[0].reason or "")
    assert "submodule" in (result.items[1].reason or "")


def test_plan_file_turned_symlink_skips_once():
    result = plan([entry("a.md", B, "120000")], stored={"a.md": A})
    assert [item.action for item in result.items] == ["skip"]


def test_plan_settled_failure_not_requested():
    result = plan([entry("bad.md", A)], settled={"bad.md": A})
    assert result.items == []


def test_plan_settled_failure_retried_after_change():
    result = plan([entry("bad.md", B)], settled={"bad.md": A})
    assert [item.path for item in result.items] == ["bad.md"]


def test_plan_caps_paths_per_tick():
    entries = [entry(f"post-{index:03}.md", f"{index:040x}") for index in range(25)]
    first = plan(entries, cap=10)
    assert len(first.items) == 10
    assert first.pending == 15
    assert not first.complete
    stored = {item.path: item.sha or "" for item in first.items}
    second = plan(entries, stored=stored, cap=10)
    assert {item.path for item in second.items}.isdisjoint(stored)
    assert second.pending == 5


def test_plan_paths_unique():
    entries = [entry("a.md", A), entry("b.md", A), entry("c.md", C)]
    result = plan(entries, stored={"old.md": A, "c.md": B})
    paths = [item.path for item in result.items]
    assert len(paths) == len(set(paths))


def test_planned_item_json_round_trip():
    item = PlannedItem("rename", "new.md", A, 10, previous_path="old.md")
    assert PlannedItem.from_json(item.to_json()) == item


def test_patterns_match_nested_and_root():
    patterns = ("**/*.md",)
    assert matches_patterns("a.md", patterns)
    assert matches_patterns("x/y/z.md", patterns)
    assert not matches_patterns("x/y.mdx", patterns)
    assert matches_patterns("docs/a.md", ("docs/*.md",))
    assert not matches_patterns("docs/x/a.md", ("docs/*.md",))
    assert matches_patterns("content/posts/2024/a.md", ("content/**",))


def test_path_twins_found():
    from wryte_pipeline.plan import find_path_twins

    paths = ["notes/caf\u00e9.md", "notes/cafe\u0301.md", "Readme.md", "README.md", "other.md"]
    assert find_path_twins(paths) == [
        ["README.md", "Readme.md"],
        ["notes/cafe\u0301.md", "notes/caf\u00e9.md"],
    ]
