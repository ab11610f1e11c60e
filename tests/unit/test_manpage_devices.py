"""man/codex-appserver-serve-devices.1 and the README say what ``serve devices`` does: every option with its default
(the rules of tests/unit/test_manpage.py), the roles table of proxy/serve/roles.py, mandoc finds nothing wrong,
and each ``--help`` points to the page."""

from __future__ import annotations

import re
import subprocess

import click
import pytest
from click.testing import CliRunner

from proxy import __version__
from proxy.cli import main
from proxy.serve.roles import OBSERVER_ALLOWLIST, OBSERVER_NOTIFICATIONS

from .project import ROOT
from .test_manpage import MAN, Page, documented_default, has_default, mandoc, options, plain, tag_of

PAGE_PATH = MAN / "codex-appserver-serve-devices.1"
PAGE = Page.read(PAGE_PATH)
DEVICES = main.all_commands()["serve"].commands["devices"]  # type: ignore[attr-defined]
COMMANDS: list[tuple[str, click.Command]] = [("codex-appserver serve devices", DEVICES)] + [
    (f"codex-appserver serve devices {name}", command) for name, command in DEVICES.commands.items()
]


def table_rows() -> list[tuple[str, str, str]]:
    """The roles table of the page (tbl): (message, kind, allowed parameters), header left out."""
    lines = PAGE.sections["DESCRIPTION"]
    start = lines.index(".TS") + 2
    rows = [tuple(plain(line).split("\t")) for line in lines[start : lines.index(".TE")]]
    assert rows[0] == ("message", "kind", "allowed parameters")
    return [(row[0], row[1], row[2]) for row in rows[1:]]


def expected_rows() -> list[tuple[str, str, str]]:
    """The table as the code has it, in the page's order."""
    rows: list[tuple[str, str, str]] = []
    for method, allowed in OBSERVER_ALLOWLIST.items():
        rows.append((method, "request", "any" if allowed is None else ", ".join(sorted(allowed, reverse=True))))
    rows += [(name, "notification", "none") for name in OBSERVER_NOTIFICATIONS]
    order = [row[0] for row in table_rows()]
    return sorted(rows, key=lambda row: order.index(row[0]) if row[0] in order else len(order))


def test_every_option_is_documented_with_its_default() -> None:
    documented = dict(PAGE.entries("OPTIONS"))
    tags = set()
    for name, command in COMMANDS:
        for option in options(command):
            tag = tag_of(option)
            tags.add(tag)
            assert tag in documented, f"{name}: {tag!r} is not in the OPTIONS of {PAGE_PATH.name}"
            if has_default(option):
                expected = documented_default(option, command)
                assert f"Default: {expected}." in documented[tag], (name, tag, documented[tag])
    assert sorted(tags) == sorted(documented)


def test_the_roles_table_is_the_code_table() -> None:
    assert table_rows() == expected_rows()


def test_the_readme_roles_table_is_the_code_table() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Roles.**", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `([^`]+)` \| (\w+) \| (.+) \|$", section, re.MULTILINE)
    readme_rows = [(method, kind, re.sub(r"`|\s*\(.*\)", "", allowed)) for method, kind, allowed in rows]
    assert sorted(readme_rows) == sorted(expected_rows())


def test_the_version_and_sections() -> None:
    assert PAGE.title[3] == f"codex-appserver-proxy {__version__}"
    assert list(PAGE.sections) == [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "FILES",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ]
    for ref in ("codex-appserver-serve(1)", "codex(1)"):
        assert ref in PAGE.text("SEE ALSO")
    serve_page = Page.read(MAN / "codex-appserver-serve.1")
    assert "codex-appserver-serve-devices(1)" in serve_page.text("SEE ALSO")


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_help_points_to_the_page(name: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*name.split()[1:], "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip("\n").split("\n\n")[-1].strip() == (
        "See 'man codex-appserver-serve-devices' for the full reference."
    )


def test_mandoc_lint_is_clean() -> None:
    done = subprocess.run(
        [mandoc(), "-T", "lint", "-W", "warning", str(PAGE_PATH)], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_renders_every_section_and_the_table() -> None:
    done = subprocess.run([mandoc(), "-T", "utf8", str(PAGE_PATH)], capture_output=True, text=True, check=True)
    rendered = re.sub(r".\x08", "", done.stdout)
    for section in PAGE.sections:
        assert re.search(rf"^{section}$", rendered, re.MULTILINE), section
    assert re.search(r"thread/resume\s+request\s+threadId, excludeTurns", rendered)
