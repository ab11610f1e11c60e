"""Option types shared by the commands' click definitions."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloat(click.FloatRange):
    """A :class:`click.FloatRange` that refuses ``nan`` and ``inf``, which Python's float() accepts (issue 9 #4):
    a timeout of ``nan`` never fires and trio refuses it with a traceback."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number: float = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return number
