"""Dynamic partitions keyed by file path, with one reversible encoding for the keys.

Dagster stores any string as a dynamic partition key, but its UI and CLI mis-handle some
characters (comma, ``...``, brackets, space, ``|``). So every path is percent-encoded the same
way wherever it becomes a key, and decoded the same way back.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

# Name of the file partitions; a configured repository's name is put in front of it.
PARTITIONS_NAME = "markdown_files"

# Characters kept as they are in keys; everything else, `%` included, is percent-encoded.
_SAFE_CHARACTERS = "/-_~@+=:"


def partition_key_for_path(path: str) -> str:
    """Encode a repository path as a partition key that the UI and CLI accept."""
    key = quote(path, safe=_SAFE_CHARACTERS + ".")
    return key.replace("..", "%2E%2E").replace("%2E.", "%2E%2E")


def path_for_partition_key(key: str) -> str:
    """Decode a partition key made by ``partition_key_for_path``."""
    return unquote(key)
