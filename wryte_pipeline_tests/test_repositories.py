import pytest

from wryte_pipeline.errors import ConfigurationError
from wryte_pipeline.repositories import load_repository_configs, parse_repository_file

GOOD = """
repositories:
  - name: docs
    repo: gohugoio/hugoDocs
    branch: master
    paths: ["content/**/*.md"]
    token_env: DOCS_TOKEN
  - name: blog
    repo: ./blog
    table_prefix: rust_
"""


def write(tmp_path, text):
    path = tmp_path / "repositories.yaml"
    path.write_text(text)
    return path


def test_repositories_file_parsed(tmp_path):
    docs, blog = parse_repository_file(write(tmp_path, GOOD))
    assert docs.name == "docs"
    assert docs.branch == "master"
    assert docs.paths == ("content/**/*.md",)
    assert docs.token_env == "DOCS_TOKEN"
    assert docs.table_prefix == "docs_"
    assert blog.table_prefix == "rust_"
    assert docs.qualified("sync_job") == "docs_sync_job"


def test_repositories_default_without_file():
    (config,) = load_repository_configs({})
    assert config.name is None
    assert config.qualified("sync_job") == "sync_job"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("repositories: []", "at least one entry", id="empty"),
        pytest.param(
            "repositories:\n  - name: Docs\n    repo: a/b", "invalid name 'Docs'", id="name"
        ),
        pytest.param("repositories:\n  - name: docs", "missing 'repo'", id="no-repo"),
        pytest.param(
            "repositories:\n  - name: docs\n    repo: a/b\n    colour: red",
            "unknown setting 'colour'",
            id="unknown-key",
        ),
        pytest.param(
            "repositories:\n  - {name: a, repo: x/y}\n  - {name: a, repo: x/z}",
            "share the name 'a'",
            id="duplicate-name",
        ),
        pytest.param(
            "repositories:\n  - {name: a, repo: x/y, table_prefix: p_}\n"
            "  - {name: b, repo: x/z, table_prefix: p_}",
            "share the table_prefix 'p_'",
            id="duplicate-prefix",
        ),
        pytest.param("repositories: [", "invalid YAML", id="bad-yaml"),
    ],
)
def test_repositories_file_errors_named(tmp_path, text, message):
    with pytest.raises(ConfigurationError, match=message):
        parse_repository_file(write(tmp_path, text))


def test_repositories_missing_file_named(tmp_path):
    with pytest.raises(ConfigurationError, match="WRYTE_CONFIG file .* not found"):
        load_repository_configs({"WRYTE_CONFIG": str(tmp_path / "nope.yaml")})
