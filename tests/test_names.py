"""Names as file names: the encoding, and names too long to encode.

A name is %-encoded into a file name; one whose encoding would be longer than
a file name may be is stored as ``#`` + the SHA-256 of the name.  The ``#``
marks it as hashed: ``#`` in a name is always encoded (``%23``), so no name
encodes to a hashed form, and the literal 64 hex digits of a hash, a valid
name in their own right, encode to themselves without the mark.  Without
it, a long name and the text of its hash would be the same file name and the
second create would get a wrong EEXIST.
"""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

import vaspace as v
from vaspace import names
from vaspace_testing import SEG_BASE, MiB

LONG = [
    "é" * 127,            # 254 bytes, 762 once encoded
    "/" * 255,            # every byte encoded
    "a" * 200 + "%" * 20,  # 260 characters once encoded
    "a" * 253 + "/",      # 256 characters once encoded: one over
]
FITS = ["a" * 255, "%" * 85, "." + "a" * 252]  # 255, 255 and 255 characters once encoded


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@pytest.mark.parametrize("name", LONG)
def test_too_long_is_hashed_and_marked(name: str) -> None:
    enc = names.encode(name.encode())
    assert enc == "#" + digest(name)
    assert names.encode(digest(name).encode()) == digest(name)  # plain hex is safe as is
    assert names.encode(("#" + digest(name)).encode()) == "%23" + digest(name)


@pytest.mark.parametrize("name", FITS)
def test_at_the_limit_is_encoded_not_hashed(name: str) -> None:
    enc = names.encode(name.encode())
    assert len(enc) == 255 and not enc.startswith("#")


def test_encoding_is_readable_and_safe() -> None:
    assert names.encode(b"db-v1_2.x") == "db-v1_2.x"
    assert names.encode(b"a/b") == "a%2Fb"
    assert names.encode(b"..") == "%2E."  # a leading dot is encoded, so never "." or ".."
    assert names.encode(b"#1") == "%231"
    assert names.encode("é".encode()) == "%C3%A9"


@pytest.mark.parametrize("name", LONG + FITS)
def test_names_near_the_limit_can_be_created(registry: str, name: str) -> None:
    """Every valid name makes a file name the filesystem takes (no ENAMETOOLONG)."""
    vid = v.vas_create(name, 0o600)
    assert v.vas_find(name) == vid and v.vas_name(vid) == name
    v.vas_delete(vid)


CREATE = {
    "vas": (lambda n: v.vas_create(n, 0o600), v.vas_find, v.vas_name),
    "seg": (lambda n: v.vas_seg_create(n, SEG_BASE, SEG_BASE + MiB, 0o600), v.vas_seg_find,
            v.seg_name),
}


@pytest.mark.parametrize("kind", list(CREATE))
@pytest.mark.parametrize("long_first", [True, False], ids=["long-first", "hex-first"])
def test_long_name_and_its_hash_text_do_not_collide(registry: str, kind: str,
                                                     long_first: bool) -> None:
    create, find, name_of = CREATE[kind]
    long_name = LONG[0]
    pair = [long_name, digest(long_name), "#" + digest(long_name)]
    if not long_first:
        pair.reverse()
    ids = [create(n) for n in pair]  # no EEXIST: three different names
    assert len(set(ids)) == 3
    for n, oid in zip(pair, ids, strict=True):
        assert find(n) == oid and name_of(oid) == n
    listed = sorted(os.listdir(os.path.join(registry, "names", kind)))
    assert listed == sorted(["#" + digest(long_name), digest(long_name),
                             "%23" + digest(long_name)])
    # The same name again is the one real EEXIST.
    with pytest.raises(FileExistsError) as e:
        create(long_name)
    assert e.value.errno == errno.EEXIST
