"""The README and --help say what the code does: one exit-status table, every option."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from proxy.cli import main
from proxy.errors import EXIT_STATUSES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_exit_table_is_the_code_table() -> None:
    section = README.split("## Exit statuses", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)
    assert [(int(status), meaning) for status, meaning in rows] == list(EXIT_STATUSES)


@pytest.mark.parametrize("command", ["proxy", "serve"])
def test_help_lists_every_exit_status(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    for status, meaning in EXIT_STATUSES:
        assert re.search(rf"^\s+{status}\s+{re.escape(meaning)}$", result.output, re.MULTILINE), status


def test_readme_documents_every_option() -> None:
    command = main.all_commands()["proxy"]
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            for flag in param.opts:
                assert f"`{flag}" in README, f"{flag} is not in the README"


def test_readme_serve_table_has_every_serve_option() -> None:
    section = README.split("### `serve` options", 1)[1].split("\n## ", 1)[0]
    for param in main.all_commands()["serve"].params:
        if isinstance(param, click.Option) and param.name != "help":
            for flag in param.opts:
                assert f"`{flag}" in section, f"{flag} is not in the README's serve options"


def test_readme_serve_commands_use_real_options() -> None:
    section = README.split("## Share the daemon with other devices", 1)[1].split("\n## ", 1)[0]
    serve_flags = {flag for param in main.all_commands()["serve"].params for flag in getattr(param, "opts", [])}
    devices = main.all_commands()["serve"].commands["devices"]  # type: ignore[attr-defined]
    serve_flags |= {flag for command in devices.commands.values() for p in command.params for flag in p.opts}
    proxy_flags = {flag for param in main.all_commands()["proxy"].params for flag in getattr(param, "opts", [])}
    for line in section.splitlines():
        for command, flags in (("codex-appserver serve", serve_flags), ("codex-appserver proxy", proxy_flags)):
            if command in line:
                after = line.split(command, 1)[1].split("`", 1)[0].split("#", 1)[0]
                for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", after):
                    assert flag in flags, f"{flag} in {line!r} is not an option of {command}"
