"""The repository around the tests: its root, and what pyproject.toml says the wheel installs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def setuptools_data_files() -> dict[str, list[str]]:
    """``[tool.setuptools.data-files]`` of pyproject.toml: install folder -> files."""
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is new in Python 3.11")
    else:
        import tomllib

        tables = tomllib.loads((ROOT / "pyproject.toml").read_text())
        data_files: dict[str, list[str]] = tables["tool"]["setuptools"]["data-files"]
        return data_files
