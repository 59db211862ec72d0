"""The two kinds of registry object, and how ids and messages name them."""

from __future__ import annotations

from dataclasses import dataclass

from ..args import exact_int
from ..errors import invalid

MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class Kind:
    """Describes one kind of registry object."""

    label: str  # "VAS" or "segment", for messages
    dirname: str  # "vas" or "seg"
    attr_file: str  # the file whose metadata holds the attributes
    idname: str  # "vid" or "sid"
    subdirs: tuple[str, ...] = ()  # directories the object's own directory holds


VAS = Kind(label="VAS", dirname="vas", attr_file="lock", idname="vid")
SEG = Kind(label="segment", dirname="seg", attr_file="data", idname="sid", subdirs=("vases",))


def check_id(kind: Kind, oid: object) -> int:
    """An id must be an int in [1, 2**31-1] (bool is refused); EINVAL otherwise."""
    value = exact_int(oid)  # by value: a subclass's __format__ could name another object
    if value is None:
        raise invalid(f"{kind.label} id must be int, not {type(oid).__name__}", repr(oid))
    if not 0 < value <= MAX_ID:
        raise invalid(f"{kind.label} id {value} is out of range", str(value))
    return value


def describe(kind: Kind, oid: int, name: str) -> str:
    """How messages name an object: ``VAS 'db' (vid 3)``."""
    return f"{kind.label} {name!r} ({kind.idname} {oid})"
