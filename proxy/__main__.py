"""``python -m proxy``: the same CLI as ``codex-appserver``."""

from .cli import main

main(prog_name="codex-appserver")
