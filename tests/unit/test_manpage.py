"""The man pages say what the code does, and mandoc finds nothing wrong with them; --help points to them.

man/codex-appserver.1 documents the command group, man/codex-appserver-proxy.1 the proxy, man/codex-appserver-serve.1
the bridge. Every option read from
the click objects is in its page's OPTIONS section, tagged ``-s, --long metavar`` (the metavar in lower case, as
man pages write placeholders), and its description holds one sentence ``Default: VALUE[ UNIT].`` where:

- a flag: ``off``; a counter (``-v``): its starting count, ``0``;
- no default in the code: the ``[default: ...]`` its help shows, else ``none``;
- a number: as click holds it, floats without a trailing ``.0`` (``10``, ``67108864``), followed by the unit
  its metavar names (``seconds``, ``bytes``); a byte count may add its size in MiB or GiB in parentheses;
- anything else: the value as it is (``codex``).

``--help`` and ``--version`` carry no default. The EXIT STATUS section is :data:`proxy.errors.EXIT_STATUSES`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from proxy import __version__
from proxy.cli import main
from proxy.errors import EXIT_STATUSES

from .project import ROOT, setuptools_data_files

MAN = ROOT / "man"
GROUP_PAGE = MAN / "codex-appserver.1"
PROXY_PAGE = MAN / "codex-appserver-proxy.1"
SERVE_PAGE = MAN / "codex-appserver-serve.1"
UNITS = {"SECONDS": "seconds", "BYTES": "bytes"}
SIZE_UNITS = {"MiB": 1024**2, "GiB": 1024**3}

# -- reading roff (the subset of man(7) these pages use) -------------------------------------------------

#: Alternating-font macros: their arguments are joined without spaces.
ALTERNATING = {".BR", ".RB", ".IR", ".RI", ".BI", ".IB"}
#: The escapes these pages use -> the characters they print.
ESCAPES = {
    "fB": "",
    "fI": "",
    "fR": "",
    "fP": "",
    "-": "-",
    "~": " ",
    "(aq": "'",
    "(dq": '"',
    "(lq": '"',
    "(rq": '"',
    "(ti": "~",
    "(mu": "x",
    "&": "",
    "%": "",
    "e": "\\",
}


def _escape(match: re.Match[str]) -> str:
    assert match[1] in ESCAPES, f"an escape this test does not know: {match[0]!r}"
    return ESCAPES[match[1]]


def plain(text: str) -> str:
    """*text* with font changes dropped and escapes replaced by the characters they print."""
    return re.sub(r"\\(f.|\(..|.)", _escape, text)


def arguments(rest: str) -> list[str]:
    """A request's arguments: words, or double-quoted strings that may hold spaces."""
    return [quoted or bare for quoted, bare in re.findall(r'"([^"]*)"|(\S+)', rest)]


def macro_text(line: str) -> str:
    """The text a font macro line (``.B``, ``.BR``, ...) prints; other requests print nothing."""
    name, _, rest = line.partition(" ")
    args = arguments(rest)
    if name in ALTERNATING:
        return "".join(args)
    if name in {".B", ".I"}:
        return " ".join(args)
    return ""


@dataclass
class Page:
    """A man page split into sections: name -> source lines (comments dropped)."""

    path: Path
    title: list[str]
    sections: dict[str, list[str]]

    @classmethod
    def read(cls, path: Path) -> Page:
        title: list[str] = []
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in path.read_text().splitlines():
            if line.startswith('.\\"'):
                continue
            if line.startswith(".TH "):
                title = [plain(arg) for arg in arguments(line[4:])]
            elif line.startswith(".SH "):
                current = sections.setdefault(plain(line[4:].strip('"')), [])
            elif current is not None:
                current.append(line)
        return cls(path, title, sections)

    def text(self, section: str) -> str:
        return to_text(self.sections[section])

    def entries(self, section: str) -> list[tuple[str, str]]:
        """The ``.TP`` paragraphs of *section*: (tag, body) as plain text, in order."""
        entries: list[tuple[str, str]] = []
        lines = self.sections[section]
        i = 0
        while i < len(lines):
            if lines[i] == ".TP":
                tag = to_text([lines[i + 1]])
                body: list[str] = []
                i += 2
                while i < len(lines) and lines[i].split(" ")[0] not in {".TP", ".PP", ".SS"}:
                    body.append(lines[i])
                    i += 1
                entries.append((tag, to_text(body)))
            else:
                i += 1
        return entries


def to_text(lines: list[str]) -> str:
    """Source lines as the plain text they print, on one line."""
    words = [macro_text(line) if line.startswith(".") else line for line in lines]
    return " ".join(plain(" ".join(word for word in words if word)).split())


GROUP = Page.read(GROUP_PAGE)
PROXY = Page.read(PROXY_PAGE)
SERVE = Page.read(SERVE_PAGE)


def page_of(command: click.Command) -> Page:
    return GROUP if command is main else SERVE if command is main.all_commands()["serve"] else PROXY


COMMANDS: list[tuple[str, click.Command]] = [("codex-appserver", main)] + [
    (f"codex-appserver {name}", command) for name, command in main.all_commands().items()
]

# -- what the code says -----------------------------------------------------------------------------------


def context_of(command: click.Command) -> click.Context:
    root = click.Context(main, **main.context_settings)
    return root if command is main else click.Context(command, parent=root)


def options(command: click.Command) -> list[click.Option]:
    """The options of *command* as it runs, --help included (click adds it with the group's option names)."""
    return [param for param in command.get_params(context_of(command)) if isinstance(param, click.Option)]


def known_flags() -> set[str]:
    """Every option name, short and long, of every command (``--help`` included), and of the subcommands of a
    command that is a group itself (``serve devices add``)."""
    flags = {opt for _, command in COMMANDS for option in options(command) for opt in option.opts}
    groups = [command for _, command in COMMANDS if command is not main and isinstance(command, click.Group)]
    while groups:
        for sub in groups.pop().commands.values():
            flags |= {opt for param in sub.params for opt in getattr(param, "opts", [])}
            if isinstance(sub, click.Group):
                groups.append(sub)
    return flags


def default_of(option: click.Option, command: click.Command) -> object:
    """The option's default value, None when it has none (click 8.3 and later say so with a sentinel)."""
    default = option.get_default(context_of(command), call=False)
    return default if isinstance(default, (bool, int, float, str, tuple)) else None


def takes_value(option: click.Option) -> bool:
    return not option.is_flag and not option.count


def tag_of(option: click.Option) -> str:
    """How OPTIONS tags *option*: ``-v, --verbose`` or ``--drain-timeout seconds``."""
    tag = ", ".join([*option.opts, *option.secondary_opts])
    if takes_value(option):
        assert option.metavar, f"{option.name} takes a value but has no metavar"
        tag += f" {option.metavar.lower()}"
    return tag


def has_default(option: click.Option) -> bool:
    """--help and --version (eager, exposing no value) have nothing to default."""
    return option.expose_value


def documented_default(option: click.Option, command: click.Command) -> str:
    """The default as the man page writes it, after the rules in this module's docstring."""
    default = default_of(option, command)
    if option.count:
        return str(default or 0)
    if option.is_flag:
        return "off"
    if default is None or (option.multiple and not default):
        shown = re.search(r"\[default: ([^\]]+)\]", option.help or "")
        return shown.group(1) if shown else "none"
    value = f"{default:g}" if isinstance(default, float) else str(default)
    unit = UNITS.get(option.metavar or "")
    return f"{value} {unit}" if unit else value


# -- OPTIONS ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_option_is_documented_with_its_default(name: str, command: click.Command) -> None:
    documented = dict(page_of(command).entries("OPTIONS"))
    for option in options(command):
        tag = tag_of(option)
        assert tag in documented, f"{name}: {tag!r} is not in the OPTIONS of {page_of(command).path.name}"
        body = documented[tag]
        defaults = re.findall(r"Default: ", body)
        if not has_default(option):
            assert not defaults, f"{name} {tag}: says a default"
            continue
        assert len(defaults) == 1, f"{name} {tag}: needs exactly one 'Default: ...' sentence: {body!r}"
        expected = documented_default(option, command)
        assert re.search(rf"Default: {re.escape(expected)}(?=\.?(?:\s|$)|[,;(])", body), (
            f"{name} {tag}: the man page should say 'Default: {expected}.', it says: {body!r}"
        )


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_the_man_page_has_no_options_the_code_lacks(name: str, command: click.Command) -> None:
    documented = [tag for tag, _ in page_of(command).entries("OPTIONS")]
    assert sorted(documented) == sorted(tag_of(option) for option in options(command))


@pytest.mark.parametrize("page", [PROXY, SERVE], ids=["proxy", "serve"])
def test_sizes_in_parentheses_match_the_byte_counts(page: Page) -> None:
    sizes = re.findall(r"Default: (\d+) bytes \((\d+) (\w+)", page.text("OPTIONS"))
    assert sizes
    for count, size, unit in sizes:
        assert int(count) == int(size) * SIZE_UNITS[unit], (count, size, unit)


def test_the_group_page_lists_every_command_and_each_has_a_page() -> None:
    assert [tag for tag, _ in GROUP.entries("COMMANDS")] == sorted(main.all_commands())
    for name in main.all_commands():
        assert (MAN / f"codex-appserver-{name}.1").is_file()
        assert f"codex-appserver-{name}(1)" in GROUP.text("COMMANDS")


# -- the other sections -----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [PROXY, SERVE], ids=["proxy", "serve"])
def test_exit_status_section_is_the_code_table(page: Page) -> None:
    rows = [(int(tag), body) for tag, body in page.entries("EXIT STATUS")]
    assert rows == list(EXIT_STATUSES)


@pytest.mark.parametrize(
    ("page", "sections"),
    [
        (GROUP, ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS"]),
        (PROXY, ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS"]),
        (SERVE, ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS"]),
    ],
    ids=["group", "proxy", "serve"],
)
def test_sections_in_order(page: Page, sections: list[str]) -> None:
    assert list(page.sections) == [*sections, "EXAMPLES", "SEE ALSO"]
    assert page.title[:2] == [page.path.stem.upper(), "1"]
    assert page.title[3] == f"codex-appserver-proxy {__version__}", "update .TH when the version changes"
    assert plain(page.sections["NAME"][0]).startswith(f"{page.path.stem} - ")


def test_environment_names_every_variable_the_code_reads() -> None:
    read = set()
    for source in (ROOT / "proxy").glob("*.py"):
        read |= set(re.findall(r"""(?:env|environ)(?:\.get\(|\[)\s*["']([A-Z_][A-Z0-9_]*)["']""", source.read_text()))
    assert "CODEX_HOME" in read  # the pattern still finds what it is meant to
    documented = {tag for tag, _ in PROXY.entries("ENVIRONMENT")}
    for name in read | {"TMPDIR"}:
        assert name in documented, f"{name} is read by proxy/ but not in ENVIRONMENT"
    assert "--remote-auth-token-env" in PROXY.text("ENVIRONMENT")  # the token's variable


def test_files_names_the_socket_its_link_and_the_spool() -> None:
    files = PROXY.text("FILES")
    assert "$CODEX_HOME/app-server-control/app-server-control.sock" in files
    assert "/tmp/codex-daemon-" in files
    assert "$TMPDIR" in files


def test_see_also() -> None:
    for page in (GROUP, PROXY, SERVE):
        for ref in ("codex(1)", "websocat(1)", "socat(1)"):
            assert ref in page.text("SEE ALSO"), (page.path.name, ref)


def test_examples_cover_what_users_do() -> None:
    examples = PROXY.text("EXAMPLES")
    for needle in ("| jq", "--until turn/completed", '"command": "codex-appserver"', "--start", "--remote wss://"):
        assert needle in examples, needle
    assert "--remote-auth-token-env" in examples


def flags_after_the_command(line: str) -> list[str]:
    """The options in *line* after ``codex-appserver``, up to a pipe or comment; ``-vv`` counts as ``-v``."""
    after = re.split(r"[|#]", line.split("codex-appserver", 1)[1], maxsplit=1)[0]
    flags = re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", after)
    return [flag[:2] if re.fullmatch(r"-(\w)\1+", flag) else flag for flag in flags]


def test_serve_examples_cover_the_readme_recipes() -> None:
    examples = SERVE.text("EXAMPLES")
    for needle in (
        "--new-token",
        "--tls-cert",
        "ssh -N -L 9100:127.0.0.1:9100",
        "codex --remote ws://127.0.0.1:9100",
        "codex-appserver.bearer.",
        "--allow-origin",
    ):
        assert needle in examples, needle


def test_serve_environment_names_the_variables_it_reads() -> None:
    documented = SERVE.text("ENVIRONMENT")
    for name in ("CODEX_HOME", "--token-env", "--remote-auth-token-env", "PATH", "SSL_CERT_FILE"):
        assert name in documented, name


def test_examples_use_real_options() -> None:
    known = known_flags()
    for page in (GROUP, PROXY, SERVE):
        for line in map(plain, page.sections["EXAMPLES"]):
            if "codex-appserver" in line:
                for flag in flags_after_the_command(line):
                    assert flag in known, f"{page.path.name}: unknown option {flag} in {line!r}"


def test_the_wheel_installs_every_page_in_man1() -> None:
    data_files = setuptools_data_files()
    assert sorted(data_files["share/man/man1"]) == sorted(f"man/{page.name}" for page in MAN.glob("*.1"))


# -- mandoc -----------------------------------------------------------------------------------------------


def mandoc() -> str:
    found = shutil.which("mandoc")
    if found is None:
        message = "mandoc is not installed (Debian package mandoc; scripts/test installs it when it can)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so the man page lint must run")
        pytest.skip(message)
    return found


@pytest.mark.parametrize("page", [GROUP_PAGE, PROXY_PAGE, SERVE_PAGE], ids=lambda page: page.name)
def test_mandoc_lint_is_clean(page: Path) -> None:
    done = subprocess.run(
        [mandoc(), "-T", "lint", "-W", "warning", str(page)], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("page", [GROUP_PAGE, PROXY_PAGE, SERVE_PAGE], ids=lambda page: page.name)
def test_renders_every_section(page: Path) -> None:
    done = subprocess.run([mandoc(), "-T", "utf8", str(page)], capture_output=True, text=True, check=True)
    rendered = re.sub(r".\x08", "", done.stdout)  # overstrike bold and underline
    for section in Page.read(page).sections:
        assert re.search(rf"^{section}$", rendered, re.MULTILINE), section


# -- --help ends with examples and the man page -----------------------------------------------------------


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_help_ends_with_examples_and_the_man_page(name: str, command: click.Command) -> None:
    args = name.split()[1:]
    result = CliRunner().invoke(main, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0
    blocks = result.output.rstrip("\n").split("\n\n")
    page = name.replace(" ", "-")
    assert blocks[-1].strip() == f"See 'man {page}' for the full reference."
    assert (MAN / f"{page}.1").is_file()
    heading, *examples = blocks[-2].splitlines()
    assert heading.strip() == "Examples:"
    indent = len(examples[0]) - len(examples[0].lstrip())
    commands = [line for line in examples if len(line) - len(line.lstrip()) == indent]  # deeper: continued
    assert 2 <= len(commands) <= 3, commands
    known = known_flags()
    for line in examples:
        if "codex-appserver" in line:
            for flag in flags_after_the_command(line):
                assert flag in known, f"{name} --help: unknown option {flag} in {line!r}"


def test_python_dash_m_runs_the_same_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "proxy", "--help"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.rstrip().endswith("See 'man codex-appserver-proxy' for the full reference.")
