"""The device store (proxy/serve/devices.py): hashed tokens, modes, atomic writes, the bridge's view, identify()."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from proxy.errors import LocalIOError, UsageError
from proxy.serve.auth import Offer, Token
from proxy.serve.devices import DeviceStore, DeviceWatch, identify
from proxy.serve.roles import FULL_ACCESS, Identity, Role

SHARED = b"s" * 43


@pytest.fixture
def store(tmp_path: Path) -> DeviceStore:
    return DeviceStore(tmp_path / "home" / "codex-appserver")


def bearer(token: str | bytes) -> list[bytes]:
    value = token.encode() if isinstance(token, str) else token
    return [b"Bearer " + value]


NO_OFFER = Offer((), ())


def test_add_returns_a_256_bit_token_and_stores_only_its_digest(store: DeviceStore) -> None:
    token = store.add("phone", Role.FULL)
    assert len(token) == 43
    data = store.path.read_text()
    assert token not in data
    (device,) = json.loads(data)["devices"]
    assert device["name"] == "phone"
    assert device["role"] == "full"
    assert device["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert device["created"].endswith("Z")


def test_modes_are_0600_and_0700(store: DeviceStore) -> None:
    store.add("phone", Role.FULL)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700


def test_an_existing_folder_is_tightened_to_0700(store: DeviceStore) -> None:
    store.folder.mkdir(parents=True, mode=0o755)
    store.folder.chmod(0o755)
    store.add("phone", Role.FULL)
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700


def test_every_write_replaces_the_file_atomically(store: DeviceStore) -> None:
    store.add("a", Role.FULL)
    before = store.path.stat().st_ino
    store.add("b", Role.OBSERVER)
    assert store.path.stat().st_ino != before  # a new file renamed over the old one
    assert sorted(entry.name for entry in store.folder.iterdir()) == [".devices.lock", "devices.json"]  # no temp file


def test_changes_at_once_lose_nothing(store: DeviceStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: DeviceStore(store.folder).add(f"d{i}", Role.FULL), range(40)))
    assert sorted(device.name for device in store.load()) == sorted(f"d{i}" for i in range(40))


def test_names_are_checked_and_unique(store: DeviceStore) -> None:
    store.add("phone", Role.FULL)
    with pytest.raises(UsageError, match="exists already"):
        store.add("phone", Role.OBSERVER)
    for bad in ("", "-x", "a b", "x" * 65, "caf\u00e9", "a/b"):
        with pytest.raises(UsageError, match="is not a device name"):
            store.add(bad, Role.FULL)


def test_revoke(store: DeviceStore) -> None:
    store.add("phone", Role.FULL)
    store.add("tablet", Role.OBSERVER)
    assert store.revoke("phone").name == "phone"
    assert [device.name for device in store.load()] == ["tablet"]
    with pytest.raises(UsageError, match="no device is named 'phone'"):
        store.revoke("phone")
    # With a digest, only that very device goes (a rollback never removes a device made again meanwhile).
    with pytest.raises(UsageError):
        store.revoke("tablet", "0" * 64)
    digest = store.load()[0].sha256
    assert store.revoke("tablet", digest).name == "tablet"


def test_a_broken_store_is_reported(store: DeviceStore) -> None:
    store.folder.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(LocalIOError, match="cannot read the device store"):
        store.load()


def test_the_watch_sees_changes_with_one_stat(store: DeviceStore) -> None:
    watch = DeviceWatch(store)
    assert not watch.refresh()
    assert not watch.seen
    token = store.add("phone", Role.FULL)
    assert watch.refresh()
    assert watch.seen
    assert watch.match(token.encode()) is not None
    assert not watch.refresh()  # unchanged: nothing read
    store.revoke("phone")
    assert watch.refresh()
    assert watch.match(token.encode()) is None
    store.path.write_text("garbage")
    assert not watch.refresh()
    assert watch.problem is not None  # keeps the last good devices, reports the problem
    os.unlink(store.path)
    watch.refresh()
    assert watch.seen  # once seen, tokens stay required


def test_identify(store: DeviceStore) -> None:
    watch = DeviceWatch(store)
    shared = Token(SHARED)
    assert identify(None, watch, False, [], NO_OFFER) == FULL_ACCESS  # open loopback bridge
    assert identify(shared, watch, True, [], NO_OFFER) is None
    assert identify(shared, watch, True, bearer(SHARED), NO_OFFER) == FULL_ACCESS
    phone = store.add("phone", Role.FULL)
    watcher = store.add("watcher", Role.OBSERVER)
    watch.refresh()
    digest = hashlib.sha256(watcher.encode()).hexdigest()
    assert identify(None, watch, True, bearer(watcher), NO_OFFER) == Identity(Role.OBSERVER, "watcher", digest)
    assert identify(None, watch, True, [], Offer((phone.encode(),), ())) == Identity(
        Role.FULL, "phone", hashlib.sha256(phone.encode()).hexdigest()
    )
    assert identify(None, watch, True, bearer("x" * 43), NO_OFFER) is None
    assert identify(shared, watch, True, bearer(SHARED), Offer((watcher.encode(),), ())) == FULL_ACCESS
