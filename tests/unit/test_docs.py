"""The README and --help say what the code does: one exit-status table, every option."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from proxy.cli import main
from proxy.errors import EXIT_STATUSES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_exit_table_is_the_code_table() -> None:
    section = README.split("## Exit statuses", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section, re.MULTILINE)
    assert [(int(status), meaning) for status, meaning in rows] == list(EXIT_STATUSES)


def test_help_lists_every_exit_status() -> None:
    result = CliRunner().invoke(main, ["proxy", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for status, meaning in EXIT_STATUSES:
        assert re.search(rf"^\s+{status}\s+{re.escape(meaning)}$", result.output, re.MULTILINE), status


def test_readme_documents_every_option() -> None:
    command = main.commands["proxy"]
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            for flag in param.opts:
                assert f"`{flag}" in README, f"{flag} is not in the README"
