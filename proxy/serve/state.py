"""What a running bridge announces in ``$CODEX_HOME/codex-appserver/bridge.json`` (written by the bridge only)::

    {"version": 1, "pid": 4242, "url": "wss://host:9100/ws", "sha256": "<hex>" | null,
     "devices": {"phone": {"lastSeen": "2026-12-01T13:00:00Z", "connected": 1}}}

``pid`` is null once the bridge has stopped (it keeps ``lastSeen``). ``devices add --qr`` takes its default URL
from a running bridge's file, ``devices list`` its connected-now and last-seen columns. The folder also holds
``control.sock``, the running bridge's control socket (mode 0600, folder 0700): ``devices add --join`` hands it
a join code there and answers its confirmation questions, ``devices revoke`` asks it to re-read the devices.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .statedir import write_private

STATE_FILE = "bridge.json"
CONTROL_SOCKET = "control.sock"


@dataclass
class Presence:
    """One device as the bridge saw it: connections open now, and when it was last seen (RFC 3339, UTC)."""

    connected: int = 0
    last_seen: str | None = None


@dataclass
class BridgeState:
    """The content of ``bridge.json``."""

    pid: int | None = None
    url: str | None = None
    sha256: str | None = None
    devices: dict[str, Presence] = field(default_factory=dict)

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "version": 1,
            "pid": self.pid,
            "url": self.url,
            "sha256": self.sha256,
            "devices": {
                name: {"lastSeen": presence.last_seen, "connected": presence.connected}
                for name, presence in sorted(self.devices.items())
            },
        }
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    @property
    def running(self) -> bool:
        """True when the bridge that wrote this is still running (its pid exists)."""
        return self.pid is not None and pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(folder: Path) -> BridgeState:
    """The state in *folder*; an empty one when the file is missing or unreadable (it is advisory)."""
    try:
        document = json.loads((folder / STATE_FILE).read_bytes())
        devices = {
            str(name): Presence(int(entry.get("connected") or 0), entry.get("lastSeen"))
            for name, entry in dict(document.get("devices") or {}).items()
        }
        pid = document.get("pid")
        return BridgeState(
            int(pid) if isinstance(pid, int) else None, document.get("url"), document.get("sha256"), devices
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return BridgeState()


def write_state(folder: Path, state: BridgeState) -> None:
    """Replace ``bridge.json`` atomically (mode 0600). :raises LocalIOError: (74)."""
    write_private(folder / STATE_FILE, state.to_json(), sync=False)  # advisory: not worth an fsync per connection
