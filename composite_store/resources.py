"""Folders that live beside the package in a checkout and inside it in a wheel."""

from __future__ import annotations

from pathlib import Path


def shipped_folder(name: str, marker: str) -> Path:
    """``<package>/_<name>`` in an installed wheel, else ``<checkout>/<name>``; ``marker`` is
    a file that must exist in it."""
    package = Path(__file__).resolve().parent
    for candidate in (package / f"_{name}", package.parent / name):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"composite-store's {name}/ folder is missing")
