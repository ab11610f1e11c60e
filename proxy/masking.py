"""RFC 6455 §5.3 masking: a payload XOR a 4-byte key repeated, in C when websockets is installed.

:func:`mask` uses the websockets library's C ``apply_mask`` (SIMD) when the package is installed (the ``fast``
and ``bench`` extras), else :func:`python_mask`, 10 to 40 times slower.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
from collections.abc import Callable

#: Payloads up to this many bytes are masked with one big-integer XOR; longer ones with bytes.translate.
INT_MASK_MAX = 1024


def _websockets_apply_mask() -> Callable[[bytes | bytearray, bytes], bytes] | None:
    """``apply_mask`` of the websockets library's C extension (SIMD), when websockets is installed; else None.

    The extension is loaded from its file without importing the websockets package, whose import costs
    ``importlib.metadata`` (tens of milliseconds at startup and 1.6 MiB of RSS) for one function.
    """
    try:
        spec = importlib.util.find_spec("websockets")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(folder, "speedups" + suffix)
                if os.path.isfile(path):
                    loader = importlib.machinery.ExtensionFileLoader("websockets.speedups", path)
                    found = importlib.util.spec_from_loader(loader.name, loader)
                    if found is None:
                        return None
                    module = importlib.util.module_from_spec(found)
                    loader.exec_module(module)
                    apply_mask: Callable[[bytes | bytearray, bytes], bytes] = module.apply_mask
                    return apply_mask
    except (ImportError, OSError, AttributeError, ValueError):
        pass
    return None


#: websockets' C masking function, or None: then :func:`python_mask` does it (10 to 40 times slower).
_C_MASK = _websockets_apply_mask()


@functools.lru_cache(maxsize=256)
def _xor_table(byte: int) -> bytes:
    """The bytes.translate table that XORs every byte with *byte*."""
    return bytes(value ^ byte for value in range(256))


def mask(payload: bytes | bytearray, key: bytes) -> bytes | bytearray:
    """*payload* XOR the 4-byte *key* repeated (RFC 6455 §5.3); the same call unmasks."""
    if _C_MASK is not None:
        return _C_MASK(payload, key)
    return python_mask(payload, key)


def python_mask(payload: bytes | bytearray, key: bytes) -> bytes | bytearray:
    """:func:`mask` in pure Python: one big-integer XOR for small payloads, ``bytes.translate`` for larger ones."""
    size = len(payload)
    if size <= INT_MASK_MAX:
        repeated = (key * ((size >> 2) + 1))[:size]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(size, "little")
    data = bytearray(payload)
    for offset in range(4):
        data[offset::4] = data[offset::4].translate(_xor_table(key[offset]))
    return data
