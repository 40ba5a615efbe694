"""Small helpers shared by test modules."""

from __future__ import annotations

from pathlib import Path


def file_tree(folder: Path) -> dict[str, bytes]:
    """Every visible file's bytes, by name (hidden temporary files left out)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}
