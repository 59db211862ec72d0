"""A crash-consistent heap and containers that live inside one memory region.

The region is normally a vaspace segment: a file mapped ``MAP_SHARED`` at the
same virtual address in every process.  Everything the heap needs (lock, undo
log, free lists, named roots) is stored inside the region, so all processes
that map it share one heap, and the containers can store raw absolute
pointers.  See ``docs/heap.md`` for the layout and the crash-safety argument.

Public names:

- :class:`Heap` -- allocator (``alloc``/``free``/``realloc``), named roots,
  :meth:`Heap.stats`.
- :class:`Dict` -- a ``MutableMapping`` of bytes/str/int keys to values
  (None, bool, int, float, str, bytes, or a container), in insertion order.
- :class:`List` -- a ``MutableSequence`` of the same values.
- :class:`Array` -- a resizable array of one numpy dtype with zero-copy views.
- :class:`HeapStats` -- the typed result of :meth:`Heap.stats`.
- :class:`HeapRecoveredWarning` -- issued when an operation found that another
  process died holding the heap lock and rolled its work back.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, MutableSequence
from typing import Any, NamedTuple, Union

from . import _heapcore

__all__ = ["Array", "Dict", "Heap", "HeapRecoveredWarning", "HeapStats", "Key", "List", "Value"]

HeapRecoveredWarning = _heapcore.HeapRecoveredWarning
HeapRecoveredWarning.__module__ = __name__

Key = bytes | str | int
Value = Union[None, bool, int, float, str, bytes, "Dict", "Array", "List"]

_MISSING = object()

# Value tags of containers (core/layout.h: T_DICT, T_ARRAY, T_LIST).
_T_DICT, _T_ARRAY, _T_LIST = 8, 9, 10


class _Ref(NamedTuple):
    """How a container travels between Python and the C layer as a value:
    its kind tag and header address.  Users see live handles instead."""

    kind: int
    addr: int


_heapcore._set_ref_type(_Ref)


# Values Dict.update stores in one operation (no container reference).
_PLAIN = (type(None), bool, int, float, str, bytes)


def _check_values(values: Iterable[Any]) -> None:
    """TypeError for the first value no container stores (checked before a
    bulk write that falls back to one item at a time stores anything)."""
    for v in values:
        if type(v) not in _KIND and not isinstance(v, _PLAIN):
            raise TypeError(f"value must be None, bool, int, float, str, bytes, or a Dict, "
                            f"Array or List of the same heap, not {type(v).__name__}")


def _to_value(c: _heapcore.HeapCore, value: Any) -> Any:
    """A container handle becomes a reference (same heap only); anything
    else goes to the C layer as is, which checks its type.

    The kind is found by exact type (subclasses register themselves, see
    ``_register``): ``isinstance`` against these ABC-derived classes costs
    more than a whole SET."""
    kind = _KIND.get(type(value))
    if kind is not None:
        # .base raises ValueError itself on a closed or stale heap
        if value._c is not c and value._c.base != c.base:
            raise ValueError(f"{type(value).__name__} belongs to another heap: a value can only "
                             "reference a container of the same heap")
        return _Ref(kind, value._addr)
    return value


def _from_value(heap: Heap, value: Any) -> Any:
    """A reference read from the heap becomes a live handle (its header is
    checked: a corrupt reference gives ValueError, never a fault)."""
    if type(value) is _Ref:
        return _CLASS[value.kind].at(heap, value.addr)
    return value


_heapcore._set_from_value(_from_value)  # Dict's GET path (in C) makes handles with it


def _refuse_if_readonly(core: _heapcore.HeapCore, what: str) -> None:
    # The C layer refuses every write itself; this covers Python-level calls
    # that might otherwise do nothing (an empty update) or fail less clearly.
    if core.readonly:
        raise PermissionError(f"heap opened read-only (read-only buffer): {what} would write to it")


class HeapStats(NamedTuple):
    """Heap usage, from :meth:`Heap.stats`.

    ``used`` counts bytes in allocated blocks including their 16-byte headers;
    ``free`` is the rest of the arena; ``largest_free`` is the largest single
    allocation that would currently succeed (at alignment 16);
    ``recoveries`` counts how often a dead lock holder's work was rolled back.
    """

    size: int
    used: int
    free: int
    allocations: int
    largest_free: int
    recoveries: int


class Heap:
    """An allocator whose metadata lives inside a writable buffer.

    Create with :meth:`format` (new heap) or :meth:`open` (existing heap).  On
    a plain buffer the heap holds a buffer export of it, so an ``mmap.mmap``
    cannot be closed underneath it; call :meth:`close` (or use ``with``) to
    release it.  On a vaspace segment's view it holds no export (switching
    away stays possible); instead every call checks that the segment is
    still mapped here, and raises ``ValueError("stale heap: ...")`` if not.
    Addresses are absolute: the heap must be mapped at the address it was
    formatted at (a vaspace segment guarantees this).  No call order
    crashes: see docs/heap.md for what raises.
    """

    __slots__ = ("_c", "__weakref__")

    def __init__(self, core: _heapcore.HeapCore) -> None:
        # Use Heap.format / Heap.open; this wraps an opened core.
        self._c = core

    @classmethod
    def format(cls, buf: Any) -> Heap:
        """Initialise a new, empty heap in ``buf`` (writable, page aligned).

        Anything in the region is overwritten.  Raises TypeError if the
        buffer is not writable and contiguous, ValueError if it is too small
        or not page aligned.
        """
        return cls(_heapcore.HeapCore(buf, True))

    @classmethod
    def open(cls, buf: Any, *, read_timeout: float = 2.0) -> Heap:
        """Open the heap that :meth:`format` created in ``buf``.

        A read-only buffer (e.g. ``Segment.view()`` of a VAS attached
        ``O_RDONLY``, whose mapping is ``PROT_READ``) opens the heap in
        *read-only mode* (:attr:`readonly`): lookups work lock-free through
        the seqlocks, and every call that would write raises PermissionError
        before touching memory.  A read-only reader cannot take the heap lock
        (it lives in the region), so when data stays mid-update it waits at
        most ``read_timeout`` seconds and then raises TimeoutError (a writer
        died mid-update; a writer must open the heap to recover it).

        Raises ValueError if the buffer holds no heap, a heap of another
        size or version, or one formatted at a different address.
        """
        heap = cls(_heapcore.HeapCore(buf, False, read_timeout))
        if heap._c.unflushed == 2:
            heap._check_after_restart()
        return heap

    def _check_after_restart(self) -> None:
        """The heap was written after its last flush, and the machine
        restarted before the next one: the file may hold pages from before
        and after those writes.  Walk it; refuse it if torn, warn if not."""
        try:
            self._c.check()
        except RuntimeError as exc:
            self._c.close()
            raise RuntimeError(
                f"{exc}: the heap was written after its last flush() and the machine "
                "restarted (power loss?) before the next one; the file is torn") from exc
        warnings.warn(HeapRecoveredWarning(
            "the heap was written after its last flush() and the machine restarted "
            "before the next one: its structure checks out, but writes made after that "
            "flush may be missing (docs/heap.md, Durability)"), stacklevel=3)

    # -- lifetime ---------------------------------------------------------
    def close(self) -> None:
        """Release the buffer.  Idempotent.  Later calls raise ValueError.

        Raises BufferError while numpy views of :class:`Array` data exist.
        """
        self._c.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._c.closed

    def __enter__(self) -> Heap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def readonly(self) -> bool:
        """True if the heap was opened on a read-only buffer (no writes)."""
        return self._c.readonly

    @property
    def base(self) -> int:
        """Absolute address of the first byte of the region."""
        return self._c.base

    @property
    def size(self) -> int:
        """Size of the region in bytes."""
        return self._c.size

    # -- allocation ---------------------------------------------------------
    def alloc(self, size: int, align: int = 16) -> int:
        """Allocate ``size`` bytes aligned to ``align``; return the address.

        MemoryError if no free block is large enough; ValueError for a
        negative size or an alignment that is not a power of two.
        """
        return self._c.alloc(size, align)

    def free(self, addr: int) -> None:
        """Free an allocation.  ValueError if ``addr`` is not a live one
        (double free, interior or foreign pointer); the heap is unchanged."""
        self._c.free(addr)

    def realloc(self, addr: int, size: int) -> int:
        """Resize an allocation, in place when possible; return its address.

        The first ``min(old, new)`` bytes are preserved.  The result is
        16-byte aligned (a larger alignment from :meth:`alloc` is not kept
        if the block moves).  On MemoryError the old allocation is intact.
        """
        return self._c.realloc(addr, size)

    def usable_size(self, addr: int) -> int:
        """Bytes usable at ``addr`` (at least what was requested)."""
        return self._c.usable_size(addr)

    def stats(self) -> HeapStats:
        """Return a consistent snapshot of the heap's usage counters."""
        return HeapStats(*self._c.stats())

    def check(self) -> int:
        """Walk all blocks and free lists and verify the invariants.

        Slow (linear in the arena).  Returns the number of live allocations;
        raises RuntimeError describing the first inconsistency found.
        """
        return self._c.check()

    # -- durability -------------------------------------------------------
    def flush(self) -> None:
        """Make the file behind the heap hold it, consistent, on disk.

        A heap is crash-consistent against process death on its own.  Against
        a power loss it is consistent only at a flush: when this returns,
        every operation that committed before it is on disk, and the file is
        a heap that :meth:`open` accepts after a power loss.  Writes after it
        are durable only once the next ``flush()`` returns; a power loss in
        between may leave them torn, which the next :meth:`open` detects
        (see docs/heap.md, "Durability").  It takes the heap lock, and costs
        one ``msync`` of the dirty pages.  OSError if the kernel cannot write
        them; PermissionError on a read-only heap.
        """
        self._c.flush()

    @property
    def flushed(self) -> bool:
        """True if nothing was written since the last :meth:`flush` (the
        file on disk holds the heap as it is now)."""
        return self._c.unflushed == 0

    # -- named roots ------------------------------------------------------
    def set_root(self, name: str, addr: int) -> None:
        """Record ``addr`` (inside the region) under ``name`` (<= 55 UTF-8
        bytes), replacing any previous value.  Survives restarts."""
        self._c.set_root(name, addr)

    def get_root(self, name: str) -> int:
        """Return the address stored under ``name``; KeyError if absent."""
        return self._c.get_root(name)

    def del_root(self, name: str) -> None:
        """Remove the root ``name``; KeyError if absent."""
        self._c.del_root(name)

    def roots(self) -> dict[str, int]:
        """All named roots as a new dict."""
        return self._c.roots()

    def __repr__(self) -> str:
        if self._c.closed:
            return "<vaspace.heap.Heap closed>"
        return f"<vaspace.heap.Heap base=0x{self.base:x} size={self.size}>"


class Dict(_heapcore.DictHandle, MutableMapping):
    """A hash table inside a :class:`Heap`, shared by every process mapping it.

    Keys are ``bytes``, ``str`` or ``int`` (``bool`` keys are ints, as in
    ``dict``).  Values are ``None``, ``bool``, ``int`` (any size), ``float``,
    ``str``, ``bytes``, or a :class:`Dict`, :class:`List` or :class:`Array`
    of the same heap; all keep their type.  Assigning a container stores a
    reference to it, and reading gives back a live handle.  A container has
    one parent: see docs/heap.md for the ownership rule.

    Writers serialise on the heap lock; readers use a seqlock and never
    block each other.  Every single-item operation is atomic, also against
    a crash of the writing process.  Iteration follows insertion order, on
    a consistent snapshot of the keys.

    ``d[key]``, :meth:`get` and ``key in d`` come from the C base
    ``_heapcore.DictHandle``, which also holds ``_heap``, ``_c`` and
    ``_addr``: each is one C call with no Python frame (the GET path).
    """

    __slots__ = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _register(cls)

    def __init__(self, heap: Heap, root: str | None = None, *, _addr: int | None = None) -> None:
        """Create a new empty Dict in ``heap``; with ``root``, also register
        it as a named root so :meth:`open` can find it later."""
        self._heap = heap
        self._c = heap._c
        if _addr is None:
            _addr = self._c.dict_new(0)
            if root is not None:
                self._c.set_root(root, _addr)
        self._addr = _addr

    @classmethod
    def open(cls, heap: Heap, name: str) -> Dict:
        """Return the Dict registered under the root ``name``.

        KeyError if there is no such root; ValueError if it is not a Dict.
        """
        addr = heap.get_root(name)
        heap._c.dict_len(addr)  # validates the header magic
        return cls(heap, _addr=addr)

    @classmethod
    def at(cls, heap: Heap, addr: int) -> Dict:
        """Return the Dict whose header is at ``addr`` (see :attr:`address`)."""
        heap._c.dict_len(addr)
        return cls(heap, _addr=addr)

    @property
    def address(self) -> int:
        """Absolute address of the Dict header (store it in other structures)."""
        return self._addr

    # __getitem__ (KeyError when the key is absent), get(key, default=None)
    # and __contains__ (False for a key of a type no Dict holds) are
    # _heapcore.DictHandle's: the GET path, in C.

    def __setitem__(self, key: Key, value: Value) -> None:
        """Store ``value``; a container value it replaces is destroyed."""
        if type(value) in _KIND:  # inline: this is the SET hot path
            value = _to_value(self._c, value)
        self._c.dict_set(self._addr, key, value)

    def __delitem__(self, key: Key) -> None:
        """Remove ``key``; a container it held is destroyed with it."""
        self._c.dict_del(self._addr, key)

    def pop(self, key: Key, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value atomically.  A container
        comes back detached (no parent): the caller now owns it."""
        if default is _MISSING:
            v = self._c.dict_pop(self._addr, key)
        else:
            v = self._c.dict_pop(self._addr, key, default)
        return _from_value(self._heap, v)

    def __len__(self) -> int:
        return self._c.dict_len(self._addr)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._c.dict_items(self._addr, 0))

    def keys(self) -> list[Key]:  # type: ignore[override]
        """Snapshot of the keys (a list, consistent at one instant)."""
        return self._c.dict_items(self._addr, 0)

    def values(self) -> list[Value]:  # type: ignore[override]
        """Snapshot of the values."""
        heap = self._heap
        return [_from_value(heap, v) for v in self._c.dict_items(self._addr, 1)]

    def items(self) -> list[tuple[Key, Value]]:  # type: ignore[override]
        """Snapshot of the (key, value) pairs."""
        heap = self._heap
        return [(k, _from_value(heap, v)) if type(v) is _Ref else (k, v)
                for k, v in self._c.dict_items(self._addr, 2)]

    def popitem(self) -> tuple[Key, Value]:
        """Remove and return the last inserted (key, value) pair, as
        ``dict.popitem``; a container comes back detached, as with pop()."""
        keys = self._c.dict_items(self._addr, 0)
        if not keys:
            raise KeyError("popitem(): Dict is empty")
        return keys[-1], self.pop(keys[-1])

    def clear(self) -> None:
        """Remove all items (one atomic step) and free their memory.

        Works in place, with no allocation, so it works on a full heap."""
        self._c.dict_clear(self._addr)

    def update(self, other: Any = (), /, **kw: Value) -> None:  # type: ignore[override]
        """Set every item of ``other`` (mapping or pairs) and ``kw``, as
        ``dict.update`` does, in ONE operation: a crash or an error (a bad
        key or value, a full heap) leaves the Dict as it was before, and
        lock-free readers see it before or after, never in between.

        This is the bulk load: the heap lock is taken once and the undo log
        does not grow with the number of items (docs/heap.md, "Bulk load").
        An update whose values include a container stores its items one at
        a time instead (each atomic on its own)."""
        _refuse_if_readonly(self._c, "Dict.update")
        items = list(other.items() if isinstance(other, Mapping) else other)
        if kw:
            items += kw.items()
        # a repeated key keeps its first position and its last value, as
        # successive assignments would (the C layer handles it)
        done = self._c.dict_update(self._addr, items)
        if done == 2:  # pairs that are not tuples
            items = [tuple(p) for p in items]
            done = self._c.dict_update(self._addr, items)
        if done == 0:
            return
        # container values: item by item, after checking every item so that
        # a bad one fails before anything is stored
        for k, _ in items:
            if not isinstance(k, (bytes, str, int)):
                raise TypeError(f"key must be bytes, str or int, not {type(k).__name__}")
        _check_values(v for _, v in items)
        for k, v in items:
            self[k] = v
        for k, v in kw.items():
            self[k] = v

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Dict):
            if other._c.base == self._c.base and other._addr == self._addr:
                return True
            other = dict(other.items())
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    @property
    def parent(self) -> int:
        """Address of the container holding this one as a value, or 0."""
        return self._c.container_parent(self._addr)

    def destroy(self) -> None:
        """Free the Dict, all its items and every container it holds.  The
        object (and any root that names it) must not be used afterwards;
        delete the root yourself.  ValueError if the Dict is a value in
        another container (delete it there instead)."""
        self._c.dict_destroy(self._addr)

    def check(self) -> int:
        """Verify the table (counts, hashes, entry allocations); return len."""
        return self._c.dict_check(self._addr)

    def __repr__(self) -> str:
        try:
            return f"<vaspace.heap.Dict at 0x{self._addr:x} len={len(self)}>"
        except ValueError as e:  # closed or stale heap: say so, do not raise
            return f"<vaspace.heap.Dict ({'heap closed' if self._c.closed else e})>"


def _stored_dtype(dts: bytes, itemsize: int) -> Any:
    """The dtype an Array header names, checked against its item size (the
    header is region bytes that any co-writer can overwrite)."""
    import numpy as np

    try:
        dt = np.dtype(dts.decode("ascii"))
    except (UnicodeDecodeError, TypeError, ValueError):
        raise RuntimeError(f"heap corrupt: Array dtype {dts!r} is not a numpy dtype") from None
    if dt.itemsize != itemsize or dt.hasobject or dt.fields is not None:
        raise RuntimeError(f"heap corrupt: Array dtype {dts!r} does not match its item size")
    return dt


class Array:
    """A resizable array of one fixed numpy dtype inside a :class:`Heap`.

    :meth:`numpy` returns a zero-copy view that writes through to the heap.
    While such a view lives, growing, shrinking or destroying the Array
    raises BufferError (as ``bytearray`` does), so a view never points at
    freed memory.  Element writes through a view are plain stores, not
    locked or crash-atomic; the length and the data pointer change
    atomically.
    """

    __slots__ = ("_heap", "_c", "_addr", "_dtype")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _register(cls)

    def __init__(
        self, heap: Heap, dtype: Any, root: str | None = None, *, _addr: int | None = None
    ) -> None:
        """Create a new, empty Array of ``dtype`` in ``heap`` (optionally
        registered as the named root ``root``)."""
        import numpy as np

        self._heap = heap
        self._c = heap._c
        if _addr is None:
            dt = np.dtype(dtype)
            if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
                raise TypeError(f"Array needs a plain numeric dtype, not {dt!r}")
            if dt.itemsize == 0:
                raise TypeError(f"Array needs a dtype with a fixed item size, not {dt!r}")
            _addr = self._c.array_new(dt.itemsize, dt.str)
            if root is not None:
                self._c.set_root(root, _addr)
            self._dtype = dt
        else:
            _data, _n, _cap, isz, dts = self._c.array_info(_addr)
            self._dtype = _stored_dtype(dts, isz)
        self._addr = _addr

    @classmethod
    def open(cls, heap: Heap, name: str) -> Array:
        """Return the Array registered under the root ``name``."""
        return cls(heap, None, _addr=heap.get_root(name))

    @classmethod
    def at(cls, heap: Heap, addr: int) -> Array:
        """Return the Array whose header is at ``addr`` (see :attr:`address`);
        ValueError if no live Array is there."""
        return cls(heap, None, _addr=addr)

    @property
    def parent(self) -> int:
        """Address of the container holding this one as a value, or 0."""
        return self._c.container_parent(self._addr)

    @property
    def address(self) -> int:
        """Absolute address of the Array header."""
        return self._addr

    @property
    def dtype(self) -> Any:
        """The numpy dtype of the elements."""
        return self._dtype

    def __len__(self) -> int:
        return self._c.array_info(self._addr)[1]

    def numpy(self) -> Any:
        """A numpy array viewing the current data, with no copy.

        Writes through to the heap (read-only view if the heap was opened
        read-only).  While it (or any array made from it) is alive, this
        Array refuses to grow, shrink or be destroyed (BufferError, as
        ``bytearray`` does), the heap refuses to close, and a heap in a
        vaspace segment keeps that segment pinned (a switch away raises
        BufferError), so no write through it can land in freed or foreign
        memory.  Delete it, or keep a ``.copy()``, before resizing.
        """
        import numpy as np

        return np.frombuffer(self._c.array_view(self._addr), dtype=self._dtype)

    def append(self, value: Any) -> None:
        """Append one element."""
        import numpy as np

        self._c.array_append(self._addr, np.asarray(value, dtype=self._dtype).reshape(1).tobytes())

    def extend(self, values: Any) -> None:
        """Append all elements of an iterable or array (one atomic step)."""
        import numpy as np

        _refuse_if_readonly(self._c, "Array.extend")
        arr = np.ascontiguousarray(np.asarray(list(values) if not hasattr(values, "__len__")
                                              else values, dtype=self._dtype)).reshape(-1)
        if arr.size:
            self._c.array_append(self._addr, arr.tobytes())

    def resize(self, n: int) -> None:
        """Set the length to ``n``; new elements are zero."""
        self._c.array_resize(self._addr, n)

    def __getitem__(self, index: Any) -> Any:
        view = self.numpy()
        v = view[index]
        # copy slices out so the result does not pin the Array's data
        v = v.copy() if hasattr(v, "copy") and getattr(v, "ndim", 0) else v
        del view
        return v

    def __setitem__(self, index: Any, value: Any) -> None:
        _refuse_if_readonly(self._c, "Array item assignment")
        self.numpy()[index] = value

    def __iter__(self) -> Iterator[Any]:
        return iter(self.numpy().copy())

    def destroy(self) -> None:
        """Free the Array's memory.  The object (and any root naming it)
        must not be used afterwards.  ValueError if the Array is a value in
        another container (delete it there instead)."""
        self._c.array_destroy(self._addr)

    def __repr__(self) -> str:
        try:
            return f"<vaspace.heap.Array at 0x{self._addr:x} dtype={self._dtype} len={len(self)}>"
        except ValueError as e:  # closed or stale heap: say so, do not raise
            return f"<vaspace.heap.Array ({'heap closed' if self._c.closed else e})>"


class List(MutableSequence):
    """A sequence of mixed values inside a :class:`Heap`.

    Items are what a :class:`Dict` value can be: ``None``, ``bool``, ``int``,
    ``float``, ``str``, ``bytes``, or a container of the same heap (stored
    as a reference, read back as a live handle; one parent each, see
    docs/heap.md).  Every single-item operation (``append``, ``insert``,
    item assignment, ``pop``, ``del``) is atomic, also against a crash of
    the writer; ``extend`` is atomic per item.  Reads (indexing, slices,
    iteration, ``len``) are lock-free snapshots under the List's seqlock.
    """

    __slots__ = ("_heap", "_c", "_addr")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        _register(cls)

    def __init__(
        self, heap: Heap, root: str | None = None, *, items: Iterable[Any] = (),
        _addr: int | None = None,
    ) -> None:
        """Create a new List in ``heap`` holding ``items``; with ``root``,
        also register it as a named root so :meth:`open` can find it."""
        self._heap = heap
        self._c = heap._c
        if _addr is None:
            _addr = self._c.list_new()
            if root is not None:
                self._c.set_root(root, _addr)
        self._addr = _addr
        if items:
            self.extend(items)

    @classmethod
    def open(cls, heap: Heap, name: str) -> List:
        """Return the List registered under the root ``name``."""
        return cls.at(heap, heap.get_root(name))

    @classmethod
    def at(cls, heap: Heap, addr: int) -> List:
        """Return the List whose header is at ``addr``; ValueError if none."""
        heap._c.list_len(addr)  # validates the header magic
        return cls(heap, _addr=addr)

    @property
    def address(self) -> int:
        """Absolute address of the List header."""
        return self._addr

    @property
    def parent(self) -> int:
        """Address of the container holding this one as a value, or 0."""
        return self._c.container_parent(self._addr)

    def __len__(self) -> int:
        return self._c.list_len(self._addr)

    def __getitem__(self, index: Any) -> Any:
        heap = self._heap
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                vals = self._c.list_range(self._addr, start, max(start, stop))
            else:  # one snapshot of the whole list, sliced here
                vals = self._c.list_range(self._addr, 0, 1 << 62)[index]
            return [_from_value(heap, v) for v in vals]
        return _from_value(heap, self._c.list_get(self._addr, index.__index__()))

    def __setitem__(self, index: Any, value: Any) -> None:
        """Replace one item; a container it held is destroyed."""
        if isinstance(index, slice):
            raise TypeError("List does not support slice assignment")
        self._c.list_set(self._addr, index.__index__(), _to_value(self._c, value))

    def __delitem__(self, index: Any) -> None:
        """Remove one item; a container it held is destroyed."""
        if isinstance(index, slice):
            raise TypeError("List does not support slice deletion")
        self._c.list_pop(self._addr, index.__index__(), True)

    def insert(self, index: int, value: Any) -> None:
        """Insert ``value`` before ``index`` (as ``list.insert``)."""
        self._c.list_insert(self._addr, index.__index__(), _to_value(self._c, value))

    def append(self, value: Any) -> None:
        """Append ``value`` at the end (atomic)."""
        self._c.list_insert(self._addr, 1 << 62, _to_value(self._c, value))

    def extend(self, values: Iterable[Any]) -> None:
        """Append every value in ONE operation: a crash or an error (a bad
        value, a full heap) leaves the List as it was, and lock-free readers
        see it before or after.  Values that include a container are
        appended one at a time instead (each atomic on its own), after all
        were checked.  See docs/heap.md, "Bulk load"."""
        _refuse_if_readonly(self._c, "List.extend")
        values = list(values)
        if self._c.list_extend(self._addr, values) == 0:
            return
        _check_values(values)
        for v in values:
            self.append(v)

    def pop(self, index: int = -1) -> Any:
        """Remove and return an item (atomic).  A container comes back
        detached (no parent): the caller now owns it."""
        return _from_value(self._heap, self._c.list_pop(self._addr, index.__index__(), False))

    def __iter__(self) -> Iterator[Any]:
        return iter(self[:])

    def clear(self) -> None:
        """Remove every item, last first (each removal atomic); containers
        the List held are destroyed."""
        while len(self):
            try:
                self._c.list_pop(self._addr, -1, True)
            except IndexError:  # another process emptied it meanwhile
                break

    def reverse(self) -> None:
        """Not supported: swapping items would give a container two places
        at once (one parent each).  Read ``lst[::-1]`` instead."""
        raise TypeError("List does not support reverse() in place; read lst[::-1]")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, List):
            other = other[:]
        if not isinstance(other, (list, tuple)):
            return NotImplemented
        return self[:] == list(other)

    __hash__ = None  # type: ignore[assignment]

    def destroy(self) -> None:
        """Free the List, its items and every container it holds.  The
        object (and any root naming it) must not be used afterwards.
        ValueError if the List is a value in another container."""
        self._c.list_destroy(self._addr)

    def __repr__(self) -> str:
        try:
            return f"<vaspace.heap.List at 0x{self._addr:x} len={len(self)}>"
        except ValueError as e:  # closed or stale heap: say so, do not raise
            return f"<vaspace.heap.List ({'heap closed' if self._c.closed else e})>"


_KIND: dict[type, int] = {Dict: _T_DICT, Array: _T_ARRAY, List: _T_LIST}


def _register(cls: type) -> None:
    """A subclass of Dict, Array or List travels as its base kind."""
    _KIND[cls] = next(k for base, k in list(_KIND.items()) if issubclass(cls, base))
_CLASS: dict[int, Any] = {_T_DICT: Dict, _T_ARRAY: Array, _T_LIST: List}
