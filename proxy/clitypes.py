"""What the commands' click definitions share: option types and the exit-status table of each ``--help``."""

from __future__ import annotations

import math
from typing import Any

import click

from .errors import EXIT_STATUSES


class FiniteFloat(click.FloatRange):
    """A :class:`click.FloatRange` that refuses ``nan`` and ``inf``, which Python's float() accepts (issue 9 #4):
    a timeout of ``nan`` never fires and trio refuses it with a traceback."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number: float = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return number


def exit_status_help() -> str:
    """The exit-status table (:data:`proxy.errors.EXIT_STATUSES`) as a ``--help`` epilog paragraph that click
    prints as it is (``\\b``)."""
    rows = "\n".join(f"  {status:>3}  {meaning}" for status, meaning in EXIT_STATUSES)
    return f"\b\nExit statuses:\n{rows}"
