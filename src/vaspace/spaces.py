"""The Pythonic layer: ``VAS`` and ``Segment`` handles over the RFC calls.

A handle holds an id and the name it had when it was made.  It does not
keep the object alive: if the object is deleted, calls through the handle
fail with the RFC's EINVAL, exactly as the raw calls do.  ``Segment(sid)``
of a segment this process maps takes its name and region from the
process's own mapping (read from the registry at attach time; such a
segment cannot be renamed, moved, detached or deleted through the API), so
its ``view()`` still shows the mapped bytes if the segment's files were
removed behind the API's back, as a deleted file's mapping does.

    >>> seg = Segment.create("table", start=0x4000_0000_0000, size=1 << 20)
    >>> db = VAS.create("db-v1")
    >>> db.attach_segment(seg, os.O_RDWR)
    >>> db.attach(os.O_RDWR)
    >>> with db.active():
    ...     seg.array("u8", (1 << 17,))[:] = 7
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
from collections.abc import Iterator
from typing import Any, Self

from . import _core, api
from ._ntuples import Attr, Holder, SegLink
from .errors import vas_error
from .process import space as spacemod
from .process import state as statemod
from .process.space import Mapping


class _Handle:
    """What VAS and Segment handles share: identity by id, lookup, attributes.

    Subclasses name the RFC calls they stand on in ``_calls``.
    """

    __slots__ = ("id", "name")
    _calls: dict[str, Any] = {}

    def __init__(self, oid: int) -> None:
        self.id: int = oid
        self.name: str = self._calls["name"](oid)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.id == self.id  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id))

    @classmethod
    def find(cls, name: str) -> Self:
        """Find one by name; ESRCH if there is none."""
        return cls(cls._calls["find"](name))

    @classmethod
    def all(cls) -> Iterator[Self]:
        """Every one in the registry, by id (ones deleted meanwhile are skipped)."""
        for oid in cls._calls["ids"]():
            with contextlib.suppress(OSError):
                yield cls(oid)

    def delete(self) -> None:
        """Delete it; EBUSY while it is in use."""
        self._calls["delete"](self.id)

    @property
    def attr(self) -> Attr:
        """Mode, user and group; assign an ``Attr`` to set them."""
        return self._calls["getattr"](self.id)

    @attr.setter
    def attr(self, value: Attr) -> None:
        self._calls["setattr"](self.id, value)


class VAS(_Handle):
    """A first-class virtual address space, by id."""

    __slots__ = ()
    _calls = {"name": api.vas_name, "find": api.vas_find, "ids": api.vas_ids,
              "delete": api.vas_delete, "getattr": api.vas_getattr, "setattr": api.vas_setattr}

    @classmethod
    def create(cls, name: str, mode: int = 0o600) -> VAS:
        """Create a VAS (``vas_create``)."""
        return cls(api.vas_create(name, mode))

    def segments(self) -> list[tuple[Segment, int]]:
        """Attached segments and their access types."""
        return [(Segment(link.sid), link.type) for link in api.vas_segments(self.id)]

    def seg_links(self) -> list[SegLink]:
        """Attached segments as (sid, type) records."""
        return api.vas_segments(self.id)

    def attach_segment(self, seg: Segment | int, type: int = os.O_RDWR) -> None:  # noqa: A002
        """Attach a segment (``vas_seg_attach``)."""
        api.vas_seg_attach(self.id, _sid(seg), type)

    def detach_segment(self, seg: Segment | int) -> None:
        """Detach a segment (``vas_seg_detach``)."""
        api.vas_seg_detach(self.id, _sid(seg))

    def attach(self, type: int = os.O_RDWR, pid: int = 0) -> VAS:  # noqa: A002
        """Attach it to this process, or lazily to ``pid`` (``vas_attach``)."""
        api.vas_attach(pid, self.id, type)
        return self

    def detach(self, pid: int = 0) -> None:
        """Detach it (``vas_detach``)."""
        api.vas_detach(pid, self.id)

    def holders(self) -> list[Holder]:
        """Processes that have it attached."""
        return api.vas_holders(self.id)

    def clone(self, name: str) -> VAS:
        """A new VAS with the same segments and access, and a copy of its private
        memory (``vas_clone``)."""
        return VAS(api.vas_clone(self.id, name))

    def mmap(self, length: int, addr: int = 0, prot: int = _core.PROT_READ | _core.PROT_WRITE
             ) -> int:
        """Add private memory of ``length`` bytes to the VAS (``vas_mmap``); its address.

        ``addr`` 0 picks a free range.  The memory is visible only while a
        thread is inside this VAS; see ``view``.
        """
        return api.vas_mmap(self.id, addr, length, prot)

    def munmap(self, addr: int, length: int) -> None:
        """Remove the private memory inside [addr, addr+length) (``vas_munmap``)."""
        api.vas_munmap(self.id, addr, length)

    def private(self) -> list[tuple[int, int, int]]:
        """The private ranges as (start, end, prot)."""
        return api.vas_private(self.id)

    def view(self, addr: int) -> memoryview:
        """A memoryview of the private range that starts at ``addr``.

        The calling thread must be inside this VAS.  The same rules as
        ``Segment.view``: read-only if mapped read-only, and while it lives
        the mapping is pinned (a switch away or a detach raises BufferError).
        """
        if api.active_vas() != self.id:
            raise vas_error(errno.EFAULT, f"VAS {self.name!r} (vid {self.id}) is not the "
                            "calling thread's active VAS: switch into it first")
        att = statemod.state().attachments.get(self.id)
        for m in att.maps if att else ():
            if m.sid < 0 and m.start == addr:
                return _export(m)
        raise vas_error(errno.EFAULT, f"VAS {self.name!r} (vid {self.id}) has no private "
                        f"range at {addr:#x}")

    def release_views(self) -> None:
        """``Segment.release_views`` for every segment this VAS maps here."""
        att = statemod.state().attachments.get(self.id)
        _release(list(att.maps) if att else [])

    @contextlib.contextmanager
    def active(self) -> Iterator[VAS]:
        """Switch the calling thread in, and back to where it was on exit.

        The switch back happens on an exception too.
        """
        before = api.active_vas()
        api.vas_switch(self.id)
        try:
            yield self
        finally:
            api.vas_switch(before)


class Segment(_Handle):
    """A fixed-address memory region shared by VASes, by id."""

    __slots__ = ("end", "start")
    _calls = {"name": api.seg_name, "find": api.vas_seg_find, "ids": api.seg_ids,
              "delete": api.vas_seg_delete, "getattr": api.vas_seg_getattr,
              "setattr": api.vas_seg_setattr}

    def __init__(self, sid: int) -> None:
        self.id = sid
        # A segment this process maps: its name and region are in the
        # process's own mapping table, read from the registry when it was
        # attached (this process's state, not a cache of the registry: a
        # segment cannot be renamed or moved, and cannot be detached or
        # deleted while a VAS holding it is attached).  The first answer of
        # a fresh process saves a pin of the segment (8 system calls).
        if sid.__class__ is int:
            for m in tuple(statemod.state().space.mappings.values()):  # no lock: a snapshot
                if m.sid == sid:
                    self.name, self.start, self.end = m.name, m.start, m.end
                    return
        # _Handle.__init__'s work and the region from one pin of the segment.
        self.name, (self.start, self.end) = api.seg_name_region(sid)

    def __repr__(self) -> str:
        return (f"Segment(id={self.id}, name={self.name!r}, "
                f"start={self.start:#x}, end={self.end:#x})")

    @property
    def size(self) -> int:
        return self.end - self.start

    @classmethod
    def create(cls, name: str, start: int, end: int | None = None, *, size: int | None = None,
               mode: int = 0o600) -> Segment:
        """Create a segment for [start, end) or [start, start+size)."""
        if (end is None) == (size is None):
            raise TypeError("give exactly one of end and size")
        if size is not None:
            return cls(api.segment_create_sz(name, start, size, mode))
        return cls(api.vas_seg_create(name, start, end, mode))

    def _visible_mapping(self) -> Mapping:
        """The mapping through which the calling thread sees the segment, or raise."""
        vid = api.active_vas()
        st = statemod.state()
        att = st.attachments.get(vid) if vid else None
        for m in att.maps if att else ():
            # The active VAS's mappings are placed (the switch's invariant).
            if m.sid == self.id:
                return m
        where = f"VAS id {vid}" if vid else "the original address space"
        raise vas_error(errno.EFAULT, f"segment {self.name!r} (sid {self.id}) is not visible "
                        f"in {where}: switch into a VAS that holds it first")

    def view(self) -> memoryview:
        """A memoryview of the segment's bytes at their fixed address.

        Read-only if the segment is visible read-only.  While the view (or
        anything made from it: slices, numpy arrays, ctypes objects) is
        alive, the segment's mapping is pinned: a switch away from the VAS,
        a detach, anything that would move or unmap it raises ``BufferError``
        and changes nothing.  So no access through the view can fault.
        Release it with ``mv.release()``, ``with seg.view() as mv:``, or by
        dropping the objects made from it.
        """
        return _export(self._visible_mapping())

    def array(self, dtype: Any = "u1", shape: int | tuple[int, ...] | None = None) -> Any:
        """A numpy array over the segment's memory (no copy); same rules as ``view``.

        The array holds the view: the segment stays pinned until the array
        (and every array made from it) is gone.
        """
        import numpy as np

        dt = np.dtype(dtype)
        if shape is None:
            shape = (self.size // dt.itemsize,)
        arr = np.frombuffer(self.view(), dtype=dt, count=int(np.prod(shape)))
        return arr.reshape(shape)

    def clone(self, name: str) -> Segment:
        """A new segment with the same region and mode and a copy of the data
        (``vas_seg_clone``); EBUSY while a process has it attached for writing."""
        return Segment(api.vas_seg_clone(self.id, name))

    def release_views(self) -> None:
        """Release every memoryview ``view()`` gave out for this segment here.

        Objects that hold a view without being one (numpy arrays, slices,
        ctypes objects) cannot be released from outside: if any is still
        alive this raises ``BufferError`` naming the segment, and the
        segment stays pinned until they are dropped.
        """
        _release([m for m in statemod.state().space.mappings.values() if m.sid == self.id])


def _export(m: Mapping) -> memoryview:
    """A memoryview of a placed mapping; it pins the mapping while it lives."""
    view = memoryview(_core.WindowView(m.token, readonly=not m.prot & _core.PROT_WRITE))
    m.add_view(view)
    return view


def _release(maps: list[Mapping]) -> None:
    for m in maps:
        for view in m.live_views():
            with contextlib.suppress(BufferError):  # a numpy array holds it: reported below
                view.release()
    if any(spacemod.exports().get(m.token) for m in maps):
        gc.collect()  # arrays that only a reference cycle keeps alive
    spacemod.check_unpinned(maps, "a switch away, a detach or a delete")


def _sid(seg: Segment | int) -> int:
    return seg.id if isinstance(seg, Segment) else seg
