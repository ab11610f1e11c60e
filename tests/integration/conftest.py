"""Fixtures for the integration tests: the real Codex app-server (marker ``codex``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .codex_server import CodexServer, CodexUnavailable, install_codex, running_codex_server
from .mock_responses import MockResponses, running_mock_responses

#: Fixtures that need the real Codex; tests using them get the ``codex`` marker.
CODEX_FIXTURES = frozenset({"codex_bin", "codex_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CODEX_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.codex)


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    """The pinned ``codex`` binary, installed by ``scripts/install-codex`` into ``.cache/codex`` when needed.

    Without npm the tests that need it are skipped, except on CI (``$CI`` set), where that is a failure.
    """
    try:
        return install_codex()
    except CodexUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set: the real-Codex tests must run)")
        pytest.skip(str(exc))


@pytest.fixture
def codex_server(codex_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CodexServer]:
    """A fresh ``codex app-server --listen unix://`` with its own short ``CODEX_HOME``, stopped afterwards."""
    codex_home = tmp_path_factory.mktemp("codex")  # short: <basetemp>/codexN
    with running_codex_server(codex_bin, codex_home) as server:
        yield server


@pytest.fixture
def mock_model() -> Iterator[MockResponses]:
    """A local mock of the Responses API (the offline model); every request it got must have been scripted."""
    with running_mock_responses() as mock:
        yield mock
        assert mock.unexpected == []


@pytest.fixture
def turn_server(
    codex_bin: Path, mock_model: MockResponses, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CodexServer]:
    """A fresh app-server whose model provider is *mock_model*; stopped before the mock."""
    codex_home = tmp_path_factory.mktemp("turns")
    (codex_home / "config.toml").write_text(mock_model.config_toml(), encoding="utf-8")
    with running_codex_server(codex_bin, codex_home) as server:
        yield server


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The threads' cwd."""
    path = tmp_path / "work"
    path.mkdir()
    return path
