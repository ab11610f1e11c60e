"""The device store: named device tokens with a role, kept hashed in ``$CODEX_HOME/codex-appserver/devices.json``.

The file holds no token, only each token's SHA-256 digest (hex), so reading it does not let anyone in::

    {"version": 1, "devices": [{"name": "phone", "role": "full", "sha256": "<64 hex digits>",
                                "created": "2026-12-01T13:00:00Z"}]}

It is mode 0600 in a 0700 folder, and every change is written to a temporary file in that folder, flushed and
renamed over the old one (POSIX ``rename`` is atomic), so a reader sees the old file or the new one, never half
of one. A new file has a new inode: a running bridge notices a change with one ``stat`` (:class:`DeviceWatch`).

No trio here; plain file I/O, used by the ``devices`` commands and by the bridge.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import LocalIOError, UsageError
from .auth import Offer, Token, bearer_from_authorization
from .roles import FULL_ACCESS, Identity, Role
from .statedir import ensure_state_dir, write_private

DEVICES_FILE = "devices.json"
LOCK_FILE = ".devices.lock"
FORMAT_VERSION = 1
#: Random bytes in a device token: 256 bits, written as 43 base64url characters.
TOKEN_BYTES = 32
#: Device names: short, printable, safe in a log line, a URI and a shell.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def token_digest(token: bytes) -> str:
    """The SHA-256 digest of *token*, as 64 lowercase hex digits: what the store keeps."""
    return hashlib.sha256(token).hexdigest()


def new_token() -> str:
    """A fresh 256-bit device token, base64url without padding (43 characters; valid in a subprotocol name)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def check_name(name: str) -> str:
    """*name* if it is a valid device name.

    :raises UsageError: with the rule (2).
    """
    if not NAME_PATTERN.match(name):
        raise UsageError(
            f"{name!r} is not a device name: use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def utc_now() -> str:
    """The time now, UTC, as ``YYYY-MM-DDTHH:MM:SSZ`` (RFC 3339)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Device:
    """One device: its name, role, token digest (hex) and creation time (RFC 3339, UTC)."""

    name: str
    role: Role
    sha256: str
    created: str

    def matches(self, digest: bytes) -> bool:
        """True when *digest* (the SHA-256 of a presented token) is this device's; constant time."""
        return hmac.compare_digest(digest, bytes.fromhex(self.sha256))

    def __repr__(self) -> str:
        return f"Device({self.name!r}, {self.role.value})"


def parse_devices(data: bytes, where: str) -> tuple[Device, ...]:
    """The devices in a store file's bytes.

    :raises LocalIOError: the file is not a device store this version understands (74).
    """
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a version-{FORMAT_VERSION} device store")
        devices = tuple(
            Device(str(item["name"]), Role(item["role"]), str(item["sha256"]), str(item["created"]))
            for item in document["devices"]
        )
        for device in devices:
            if len(device.sha256) != 64 or bytes.fromhex(device.sha256).hex() != device.sha256:
                raise ValueError(f"device {device.name!r} has no SHA-256 digest")
    except (ValueError, KeyError, TypeError) as exc:
        raise LocalIOError(f"cannot read the device store {where}: {exc}; fix or remove the file") from None
    return devices


def render_devices(devices: tuple[Device, ...]) -> bytes:
    """A store file's bytes for *devices* (pretty-printed: people look at it)."""
    document = {
        "version": FORMAT_VERSION,
        "devices": [{"name": d.name, "role": d.role.value, "sha256": d.sha256, "created": d.created} for d in devices],
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on *folder*'s ``.devices.lock`` (flock): two commands changing the store at once
    cannot lose each other's change. Readers need no lock: every write is an atomic rename."""
    ensure_state_dir(folder)
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise LocalIOError(f"cannot lock the device store in {folder}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class DeviceStore:
    """The device file in *folder*; every method reads the file afresh and writes it whole."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / DEVICES_FILE

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> tuple[Device, ...]:
        """The devices now (none when the file does not exist).

        :raises LocalIOError: it cannot be read or parsed (74).
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise LocalIOError(f"cannot read the device store {self.path}: {exc.strerror}") from None
        return parse_devices(data, str(self.path))

    def _save(self, devices: tuple[Device, ...]) -> None:
        ensure_state_dir(self.folder)
        write_private(self.path, render_devices(devices))

    def add(self, name: str, role: Role) -> str:
        """Create device *name* with *role*; return its token (the only time it exists outside the device).

        :raises UsageError: the name is invalid or taken (2).
        :raises LocalIOError: the store cannot be read or written (74).
        """
        check_name(name)
        with _locked(self.folder):
            devices = self.load()
            if any(device.name == name for device in devices):
                raise UsageError(
                    f"a device named {name!r} exists already; pick another name or revoke it first "
                    f"('codex-appserver serve devices revoke {name}')"
                )
            token = new_token()
            self._save((*devices, Device(name, role, token_digest(token.encode("ascii")), utc_now())))
        return token

    def revoke(self, name: str, sha256: str | None = None) -> Device:
        """Remove device *name* (only if its token digest is *sha256*, when given); return it.

        :raises UsageError: no such device (2).
        :raises LocalIOError: the store cannot be read or written (74).
        """
        with _locked(self.folder):
            devices = self.load()
            kept = tuple(device for device in devices if device.name != name or sha256 not in (None, device.sha256))
            if len(kept) == len(devices):
                raise UsageError(f"no device is named {name!r}; 'codex-appserver serve devices list' shows them")
            self._save(kept)
        return next(device for device in devices if device.name == name)


class DeviceWatch:
    """The store as a running bridge sees it: reloaded when the file's identity changes.

    :meth:`refresh` costs one ``stat``: the file is read again only when its inode, size or modification time
    changed (every write replaces the file, so the inode changes). A store that cannot be read keeps the last
    good devices and reports the problem once per change.
    """

    def __init__(self, store: DeviceStore) -> None:
        self.store = store
        self._identity: tuple[int, int, int, int] | None = None
        self.devices: tuple[Device, ...] = ()
        #: True once the file has existed: from then on every client needs a token.
        self.seen = False
        self.problem: str | None = None

    def refresh(self) -> bool:
        """Reload if the file changed; True when the devices changed."""
        try:
            info = os.stat(self.store.path)
            identity: tuple[int, int, int, int] | None = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        except FileNotFoundError:
            identity = None
        except OSError as exc:
            self.problem = f"cannot read the device store {self.store.path}: {exc.strerror}"
            return False
        if identity == self._identity:
            return False
        self._identity = identity
        if identity is None:
            devices: tuple[Device, ...] = ()
        else:
            self.seen = True
            try:
                devices = self.store.load()
            except LocalIOError as exc:
                self.problem = exc.message
                return False
        self.problem = None
        changed = devices != self.devices
        self.devices = devices
        return changed

    def match(self, token: bytes) -> Device | None:
        """The device whose token is *token*, else None. Every device is compared (constant time each)."""
        digest = hashlib.sha256(token).digest()
        found = None
        for device in self.devices:
            if device.matches(digest):
                found = device
        return found


def identify(
    token: Token | None, watch: DeviceWatch, required: bool, authorization: Sequence[bytes], offer: Offer
) -> Identity | None:
    """Who presents these credentials: the shared *token* (role ``full``), a device of *watch*, or nobody (None:
    401). A bridge that requires no token (loopback, no shared token, no device store) lets everyone in as
    ``full``. Every candidate is compared against everything, so the time taken does not say what matched.
    """
    if not required:
        return FULL_ACCESS
    candidates = list(offer.tokens)
    bearer = bearer_from_authorization(authorization)
    if bearer is not None:
        candidates.append(bearer)
    shared = [token is not None and token.matches(candidate) for candidate in candidates]
    devices = [watch.match(candidate) for candidate in candidates]
    if any(shared):
        return FULL_ACCESS
    device = next((found for found in devices if found is not None), None)
    if device is None:
        return None
    return Identity(device.role, device.name, device.sha256)
