"""Object names: validation, and their encoding as file names.

The RFC allows any name of 1..255 bytes without NUL, "/" included.  A name
is therefore never used raw as a file name: it is percent-encoded (bytes
outside ``[A-Za-z0-9_.-]``, and a leading ".", become ``%XX``), which keeps
ordinary names readable under ``ls`` and makes ".." or "a/b" harmless.  An
encoding longer than a file name may be is replaced by ``#`` plus the
SHA-256 of the name; the object directory stores the real name, and lookups
compare it, so the two forms can never be confused ("#" itself is always
encoded as ``%23``).
"""

from __future__ import annotations

import functools
import hashlib
import urllib.parse

from .errors import invalid

MAX_NAME_BYTES = 255
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_SAFE_BYTES = bytes(sorted(_SAFE))
_MAX_FILE_NAME = 255


def check(name: object, kind: str) -> bytes:
    """Validate a name and return its UTF-8 bytes; EINVAL if it is not valid."""
    if not isinstance(name, str):
        raise invalid(f"{kind} name must be str, not {type(name).__name__}", repr(name))
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(f"{kind} name {name!r} is not encodable as UTF-8", repr(name)) from None
    if not raw:
        raise invalid(f"{kind} name is empty", name)
    if len(raw) > MAX_NAME_BYTES:
        raise invalid(f"{kind} name is {len(raw)} bytes long (at most {MAX_NAME_BYTES})",
                      name[:40] + "...")
    if b"\0" in raw:
        raise invalid(f"{kind} name {name!r} contains NUL", repr(name))
    return raw


# Valid names already seen, and their encodings.  Pure (a name's validity and
# encoding never change), so no other process can make an entry stale.
_ENCODED: dict[str, str] = {}
_ENCODED_MAX = 4096


def checked_encoding(name: object, kind: str) -> str:
    """``encode(check(name, kind))``, answered from a dict for names seen before.

    Only exact ``str`` objects are remembered: a subclass could hash or
    compare unlike the text it holds.
    """
    if type(name) is str:
        enc = _ENCODED.get(name)
        if enc is not None:
            return enc
    enc = encode(check(name, kind))
    if type(name) is str:
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[name] = enc
    return enc


@functools.lru_cache(maxsize=4096)  # pure; a process uses few names over and over
def encode(raw: bytes) -> str:
    """The file name under which a (valid) name is registered."""
    if (not raw.translate(None, _SAFE_BYTES) and raw[:1] != b"."
            and len(raw) <= _MAX_FILE_NAME):
        # Every byte is safe (the usual name): it is its own encoding.  One
        # C-level pass instead of a Python loop, which a fresh process runs cold.
        return raw.decode("ascii")
    parts = []
    for i, b in enumerate(raw):
        if b in _SAFE and not (i == 0 and b == ord(".")):
            parts.append(chr(b))
        else:
            parts.append(f"%{b:02X}")
    enc = "".join(parts)
    if len(enc) > _MAX_FILE_NAME:
        enc = "#" + hashlib.sha256(raw).hexdigest()
    return enc



@functools.lru_cache(maxsize=4096)
def decode(enc: str) -> str | None:
    """The name that ``encode`` turned into ``enc``; None if it was hashed or is not ours.

    Reading a name back from its encoding saves opening the ``name`` file.
    The result is checked by encoding it again, so an entry that ``encode``
    would never produce gives None rather than a wrong name.
    """
    if enc.startswith("#"):
        return None
    try:
        name = urllib.parse.unquote_to_bytes(enc).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return name if encode(name.encode("utf-8")) == enc else None
