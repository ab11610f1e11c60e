"""``python -m proxy``: the same CLI as ``codex-appserver``, through the same entry point."""

from .entry import main

main()
