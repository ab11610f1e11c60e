"""The committed shell completions are what click generates from the CLI, and click completes what it should.

The files come from scripts/gen_completions.py (run scripts/gen-completions after changing the CLI). Completion
itself happens in ``codex-appserver``: each TAB runs it with ``_CODEX_APPSERVER_COMPLETE`` set, so these tests
ask click's completion the same questions in-process; tests/integration/test_completions.py drives real bash.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import click
import pytest
from click.shell_completion import ShellComplete

from proxy.cli import PROG, main

from .project import ROOT, setuptools_data_files

#: Options whose argument is a path: the shells complete file names for them.
PATH_OPTIONS = {"--sock", "--trace", "--cacert", "--codex-bin"}


def load_generator() -> ModuleType:
    """scripts/gen_completions.py, which is not in a package."""
    spec = importlib.util.spec_from_file_location("gen_completions", ROOT / "scripts" / "gen_completions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()
SHELLS = ["bash", "zsh", "fish"]


def complete(args: list[str], incomplete: str) -> list[tuple[str, str]]:
    """What click answers for ``codex-appserver ARGS INCOMPLETE<TAB>``: (type, value) pairs."""
    completer = ShellComplete(main, {}, PROG, GENERATOR.COMPLETE_VAR)
    return [(item.type, item.value) for item in completer.get_completions(args, incomplete)]


@pytest.mark.parametrize("shell", SHELLS)
def test_committed_file_is_freshly_generated(shell: str) -> None:
    path: Path = GENERATOR.COMPLETION_FILES[shell]
    expected: str = GENERATOR.render(shell)
    assert path.read_text() == expected, f"{path.name} is stale: run scripts/gen-completions and commit the result"


@pytest.mark.parametrize("shell", SHELLS)
def test_file_is_clicks_script_for_this_program(shell: str) -> None:
    text = GENERATOR.COMPLETION_FILES[shell].read_text()
    source: str = GENERATOR.source(shell)
    header: str = GENERATOR.HEADER
    assert text.replace(header, "", 1) == source.rstrip("\n") + "\n"  # click's script; only a header is added
    assert "_CODEX_APPSERVER_COMPLETE" in text
    assert GENERATOR.COMPLETE_VAR == "_CODEX_APPSERVER_COMPLETE"  # what click derives from the program name


def test_zsh_file_starts_with_compdef() -> None:
    assert GENERATOR.COMPLETION_FILES["zsh"].read_text().startswith("#compdef codex-appserver\n")


def test_generator_check_mode_passes_on_the_committed_files() -> None:
    status: int = GENERATOR.run(check=True)
    assert status == 0


def test_completes_the_subcommand() -> None:
    assert complete([], "pro") == [("plain", "proxy")]


def test_completes_options() -> None:
    assert complete(["proxy"], "--so") == [("plain", "--sock")]
    assert ("plain", "--until") in complete(["proxy"], "--")
    assert complete([], "--ver") == [("plain", "--version")]


@pytest.mark.parametrize("option", sorted(PATH_OPTIONS))
def test_path_options_complete_file_names(option: str) -> None:
    # The shell scripts turn type "file" into the shell's own file name completion.
    assert complete(["proxy", option], "") == [("file", "")]
    assert complete(["proxy", option], "some/pa") == [("file", "some/pa")]


def test_the_path_options_are_exactly_the_click_paths() -> None:
    command = main.all_commands()["proxy"]
    paths = {
        flag
        for param in command.params
        if isinstance(param, click.Option) and isinstance(param.type, click.Path)
        for flag in param.opts
    }
    assert paths == PATH_OPTIONS


def test_other_options_do_not_complete_files() -> None:
    assert complete(["proxy", "--drain-timeout"], "") == []
    assert complete(["proxy", "--remote"], "") == []


def test_the_wheel_installs_each_file_where_its_shell_looks() -> None:
    data_files = setuptools_data_files()
    files: dict[str, Path] = GENERATOR.COMPLETION_FILES
    assert data_files["share/bash-completion/completions"] == [f"completions/{files['bash'].name}"]
    assert data_files["share/zsh/site-functions"] == [f"completions/{files['zsh'].name}"]
    assert data_files["share/fish/vendor_completions.d"] == [f"completions/{files['fish'].name}"]
    assert sorted(path.name for path in (ROOT / "completions").iterdir()) == sorted(p.name for p in files.values())
