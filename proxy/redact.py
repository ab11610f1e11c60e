"""Keep secrets (the bearer token) out of every text that leaves the process: stderr, logs, the trace file.

One :class:`Redactor`, :data:`SECRETS`, is applied where text leaves: the log formatter (:mod:`proxy.logs`),
the trace writer (:mod:`proxy.trace`) and the handshake's refusal text before it is shortened
(:mod:`proxy.handshake`). A server may echo the token anywhere (a 401 body, a 403 reason phrase, a header that
h11 quotes in its error text, a 101 header), so call sites never have to think about it.

Sans-I/O: no OS access; the CLI registers the token once it has read it.
"""

from __future__ import annotations

#: What a secret is replaced with.
REDACTED = "[REDACTED]"


class Redactor:
    """Replaces each registered secret, also as JSON and as Python ``repr`` escape it, by :data:`REDACTED`."""

    def __init__(self) -> None:
        self._forms: list[str] = []

    def add(self, secret: str) -> None:
        """Register *secret* (an empty one is ignored)."""
        if not secret:
            return
        import json  # only a run with a token gets here: the proxy's start-up path does without json

        forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], repr(secret.encode("utf-8", "replace"))[2:-1]}
        # Longest first, so that an escaped form is replaced whole before a shorter form inside it.
        self._forms = sorted(set(self._forms) | forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        """*text* with every registered secret replaced."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text


#: The process's secrets: what the log formatter and the trace writer redact.
SECRETS = Redactor()
