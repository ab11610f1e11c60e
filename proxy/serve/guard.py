"""A :class:`~proxy.relay.Relay` whose client has a role: each client message passes :func:`~proxy.serve.roles.check`
before it may reach the app-server (every message a relay sends passes :meth:`~proxy.relay.Relay.forward_all`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..relay import Relay
from ..upstream import Text
from .roles import Drop, Identity, Refuse, Role, check

#: Refusals go to the connection log, shown at the default verbosity: what a device was refused is auditable.
access = logging.getLogger("codex_appserver.access")


class GuardedRelay(Relay):
    """A relay for a client with *role*; *label* names the client in log lines (never a token or payload)."""

    def __init__(self, *args: Any, role: Role, label: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.role = role
        self._label = label

    def forward_all(self, texts: Sequence[Text]) -> None:
        """Send what the role allows; refuse or drop the rest (every message the relay sends comes here)."""
        allowed = []
        for text in texts:
            verdict = check(self.role, text)
            if isinstance(verdict, Refuse):
                access.info("%s: refused %s (role %s)", self._label, verdict.method, self.role.value)
                self._downstream.deliver([verdict.reply])
            elif isinstance(verdict, Drop):
                access.info("%s: dropped %s (role %s)", self._label, verdict.what, self.role.value)
            else:
                allowed.append(text)
        if allowed:
            super().forward_all(allowed)


def make_relay(identity: Identity, label: str, *args: Any, **kwargs: Any) -> Relay:
    """The relay for a client with *identity*: a plain :class:`~proxy.relay.Relay` for role ``full`` (nothing is
    looked at), a :class:`GuardedRelay` otherwise. *args* and *kwargs* are :class:`~proxy.relay.Relay`'s."""
    if identity.role is Role.FULL:
        return Relay(*args, **kwargs)
    return GuardedRelay(*args, role=identity.role, label=label, **kwargs)
