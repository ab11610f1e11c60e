"""Real bash completes with completions/codex-appserver.bash and the installed ``codex-appserver``.

bash runs non-interactively: it sources the completion file, sets ``COMP_WORDS``/``COMP_CWORD`` as readline
would for the words typed so far, calls the completion function and prints ``COMPREPLY``. The function runs
``codex-appserver`` (found on ``PATH``: this venv's bin folder) with ``_CODEX_APPSERVER_COMPLETE`` set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPLETIONS = ROOT / "completions"
BIN = Path(sys.executable).parent
TIMEOUT = 60  # a guard against hangs; each run takes well under a second

DRIVER = r"""
source "$1"; shift
COMP_WORDS=("$@")
COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
_codex_appserver_completion codex-appserver
printf '%s\n' "${COMPREPLY[@]}"
"""


def environment() -> dict[str, str]:
    if not (BIN / "codex-appserver").is_file():
        pytest.fail(f"codex-appserver is not installed in {BIN}; run pip install -e '.[test]'")
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def bash() -> str:
    found = shutil.which("bash")
    if found is None:
        pytest.skip("bash is not installed")
    return found


def bash_completes(*words: str) -> list[str]:
    """COMPREPLY for the command line *words*, the last one being the word under the cursor."""
    done = subprocess.run(
        [bash(), "--norc", "--noprofile", "-c", DRIVER, "driver", str(COMPLETIONS / "codex-appserver.bash"), *words],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_an_option() -> None:
    assert bash_completes("codex-appserver", "proxy", "--so") == ["--sock"]


def test_bash_completes_the_subcommand() -> None:
    assert bash_completes("codex-appserver", "pro") == ["proxy"]


def test_bash_completes_several_options() -> None:
    assert bash_completes("codex-appserver", "proxy", "--max-") == ["--max-message-size", "--max-incoming-size"]


def test_the_file_registers_the_function_for_the_command() -> None:
    script = f'source "{COMPLETIONS / "codex-appserver.bash"}"; complete -p codex-appserver'
    done = subprocess.run(
        [bash(), "--norc", "--noprofile", "-c", script], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert done.stdout.strip() == "complete -o nosort -F _codex_appserver_completion codex-appserver"


@pytest.mark.parametrize("option", ["--sock", "--trace", "--cacert", "--codex-bin"])
def test_the_installed_program_asks_for_file_names(option: str) -> None:
    # What the bash function reads back from the program: "file," makes it fall back to bash's file completion.
    env = {
        **environment(),
        "_CODEX_APPSERVER_COMPLETE": "bash_complete",
        "COMP_WORDS": f"codex-appserver proxy {option} ",
        "COMP_CWORD": "3",
    }
    done = subprocess.run(
        [str(BIN / "codex-appserver")], capture_output=True, text=True, env=env, timeout=TIMEOUT, check=True
    )
    assert done.stdout.splitlines() == ["file,"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_installed_program_prints_the_committed_script(shell: str) -> None:
    env = {**environment(), "_CODEX_APPSERVER_COMPLETE": f"{shell}_source"}
    done = subprocess.run(
        [str(BIN / "codex-appserver")], capture_output=True, text=True, env=env, timeout=TIMEOUT, check=True
    )
    name = {"bash": "codex-appserver.bash", "zsh": "_codex-appserver", "fish": "codex-appserver.fish"}[shell]
    committed = [line for line in (COMPLETIONS / name).read_text().splitlines() if not line.startswith("# Generated")]
    assert done.stdout.splitlines() == committed


@pytest.mark.parametrize(("shell", "flag"), [("zsh", "-n"), ("fish", "--no-execute")])
def test_other_shells_parse_their_file(shell: str, flag: str) -> None:
    found = shutil.which(shell)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{shell} is not installed; CI is set, and scripts/test installs it")
        pytest.skip(f"{shell} is not installed (scripts/test installs it where apt-get may)")
    name = {"zsh": "_codex-appserver", "fish": "codex-appserver.fish"}[shell]
    subprocess.run([found, flag, str(COMPLETIONS / name)], timeout=TIMEOUT, check=True)
