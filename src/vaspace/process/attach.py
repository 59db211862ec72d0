"""Attaching and detaching VASes to processes (RFC vas_attach / vas_detach).

Attaching takes the VAS's sharing lock (flock: shared for read-only,
exclusive for writable; EBUSY on conflict), then maps every segment's file
into a parking slot.  Nothing becomes visible at the segments' addresses
until a thread switches in.  The lock lives in this process's open file, so
the kernel drops it when the process dies, by SIGKILL too.

Another process can be asked to attach a VAS (``pid != 0``); it does so at its
next vaspace call (the RFC's lazy attach, moved to the process level), a
cached switch included: the requester sets the target's lazy-attach word
(``publish.wake``), which the switch's C fast path tests.
"""

from __future__ import annotations

import contextlib
import errno
import os

from .. import _core, perms
from .. import window as winmod
from ..access import BY_FLAG, open_flags, prot_for
from ..args import exact_int
from ..errors import invalid, vas_error
from ..registry import memfile, objects, records
from ..registry import root as rootmod
from ..registry import seg as segreg
from ..registry import vas as vasreg
from ..registry.kind import SEG, VAS
from ..registry.ref import Ref
from . import publish
from . import state as statemod
from .state import Attachment, state


def check_pid(pid: object) -> int:
    """pid must be an int >= 0; EINVAL otherwise."""
    value = exact_int(pid)  # by value: a subclass could lie in its comparisons
    if value is None or value < 0 or value > 2**31 - 1:
        raise invalid(f"bad pid {pid!r}")
    return value


def _signalable(pid: int) -> None:
    """The caller must be allowed to signal pid (same uid, or root)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise vas_error(errno.ESRCH, f"no process with pid {pid}") from None
    except PermissionError:
        raise vas_error(errno.EPERM, f"not allowed to act on pid {pid}") from None


def attach_self(vid: object, access: object) -> None:
    """Attach a VAS to the calling process.

    The warm path is kept flat (issue 11 §3: a warm attach in ≤ 50 µs):
    checks and lookups are inlined where a helper would only add a call,
    every check is still made, once, on the one pinned reference.
    """
    st = statemod.STATE  # state(), without the call (a fork replaces it)
    with objects.pin(VAS, vid) as ref:
        row = BY_FLAG.get(access) if access.__class__ is int else None  # type: ignore[call-overload]
        may = row.may if row is not None else perms.may_for_type(access, ref)
        assert isinstance(access, int)
        with st.changing():
            if ref.id in st.attachments:
                return
            fd = vasreg.take_lock(ref, access, may)
            try:
                # Deletion may have won the race for the lock: re-check liveness.
                ref.recheck()
                if st.space.window is None:
                    st.space.ensure_reserved()
                att = Attachment(vid=ref.id, name=ref.name, type=access, lock_fd=fd)
                try:
                    _map_segments(st, att, ref)
                except BaseException:
                    for m in att.maps:
                        st.space.put(m)
                    raise
                st.attachments[ref.id] = att
                _core.vas_members(ref.id, [m.token for m in att.maps])
                root = ref.root  # the root this call pinned the VAS in
                records.add(ref.id, st.pid, access, root)
                if st.published != root:
                    published = publish.publish(st.pid)
                    st.published = root  # tried once per root, published or not
                    st.wake_ready = False  # set by the next sync if published
                    st.wake_published = published
            except BaseException:
                if ref.id not in st.attachments:
                    os.close(fd)
                raise


def _check_region(seg: Ref, start: int, end: int, taken: list[tuple[int, int, str]]) -> None:
    """Re-check a segment's region before mapping anything there.

    ``region`` is a file its owner can rewrite after the segment was attached
    to someone's VAS; trusting it could make this process map over its own
    memory.  So the range must still lie in the window and must not overlap
    the VAS's other segments.
    """
    lo, hi = winmod.ranges()[0]  # window(), one call less
    if start % winmod.PAGE or end % winmod.PAGE or not lo <= start < end <= hi:
        raise seg.error(errno.EFAULT, f"has region [{start:#x}, {end:#x}) outside "
                        f"the window [{lo:#x}, {hi:#x}) or unaligned")
    hit = segreg.first_overlap(start, end, taken) if taken else None
    if hit is not None:
        raise seg.error(errno.EFAULT, f"has a region that overlaps segment {hit[2]!r}")
    taken.append((start, end, seg.name))


def _map_segments(st, att: Attachment, vas: Ref) -> None:
    taken: list[tuple[int, int, str]] = []
    read_only = att.type == os.O_RDONLY
    mappings = st.space.mappings
    for link in vas.links():
        # access.prot_for, inline: a read-only attachment maps everything read-only.
        prot = BY_FLAG[os.O_RDONLY if read_only else link.type].prot
        shared = mappings.get((link.sid, prot))
        if shared is not None:  # mapped (and checked) for another attachment
            try:
                seg = objects.pin(SEG, link.sid, root=vas.root)  # the VAS's root, checked
            except OSError:
                continue  # deleted meanwhile: the VAS no longer holds it
            with seg:
                _check_region(seg, shared.start, shared.end, taken)
                att.maps.append(st.space.get_or_map(seg.id, seg.name, shared.start, shared.end,
                                                    prot, -1))
            continue
        # The pin, the region and the data file's open in one call; open_flags, inline.
        got = segreg.pin_open_mapping(link.sid, vas.root,
                                      os.O_RDWR if prot & _core.PROT_WRITE else os.O_RDONLY)
        if got is None:
            continue  # deleted meanwhile: the VAS no longer holds it
        seg, fd, start, end = got
        try:
            # The region read through the same pinned directory as the file.
            _check_region(seg, start, end, taken)
            att.maps.append(st.space.get_or_map(seg.id, seg.name, start, end, prot, fd))
        finally:
            os.close(fd)
            seg.close()
    for entry in vas.entries():  # the directory read once, by links() above
        if entry.startswith(memfile.PREFIX):  # private ranges exist: map them all
            for rng in memfile.ranges(vas):
                _map_private(st, att, vas, rng, taken)
            break


def _map_private(st, att: Attachment, vas: Ref, rng: memfile.Range,
                 taken: list[tuple[int, int, str]]) -> None:
    """Map one private range of the VAS: a mapping of this attachment alone.

    Its key (a negative id per VAS and start) can never be a segment's, so no
    other attachment shares it.  The range is checked like a segment's region.
    """
    prot = prot_for(att.type, rng.access)
    try:
        fd = memfile.open_range(vas, rng, open_flags(prot))
    except PermissionError:
        raise vas.error(errno.EACCES, f"private memory {rng.file} cannot be opened: "
                        "the OS refuses") from None
    try:
        lo, hi = winmod.vas_range()
        if not lo <= rng.start < rng.end <= hi:
            raise vas.error(errno.EFAULT, f"has private memory [{rng.start:#x}, {rng.end:#x}) "
                            "outside the window")
        hit = segreg.first_overlap(rng.start, rng.end, taken)
        if hit is not None:
            raise vas.error(errno.EFAULT, f"has private memory that overlaps {hit[2]!r}")
        taken.append((rng.start, rng.end, memfile.NAME))
        key = memfile.private_key(vas.id, rng.start)
        att.maps.append(st.space.get_or_map(key, memfile.NAME, rng.start, rng.end, prot, fd))
    finally:
        os.close(fd)


def detach_self(vid: object) -> None:
    """Detach a VAS from the calling process; EBUSY while a thread is inside it."""
    st = statemod.STATE
    if vid.__class__ is not int:
        vid = objects.check_id(VAS, vid)
    with st.changing():
        att = st.attachments.get(vid)  # type: ignore[call-overload]
        if att is None:
            vid = objects.check_id(VAS, vid)  # EINVAL for a bad id first
            raise invalid(f"VAS id {vid} is not attached to this process")
        threads = _core.thread_vids()
        inside = [tid for tid, v in threads if v == vid] if threads else None
        if inside:
            raise vas_error(errno.EBUSY, f"{objects.describe(VAS, vid, att.name)}: threads "
                            f"{inside} are inside it; switch away first", att.name)
        st.space.put_all(att.maps)
        del st.attachments[vid]
        _core.vas_members(vid, None)
        records.remove(vid, os.getpid())
        os.close(att.lock_fd)


def request_other(pid: int, vid: object, access: object) -> None:
    """Ask another process to attach a VAS (lazy attach)."""
    _signalable(pid)
    with objects.pin(VAS, vid) as ref:
        may = perms.may_for_type(access, ref)
        assert isinstance(access, int)
        # The sharing rule, checked now; the target takes the lock for real.
        os.close(vasreg.take_lock(ref, access, may))
        try:
            records.reap_pending()  # requests left for processes that died meanwhile
            records.request(pid, ref.id, access)
        except ProcessLookupError:
            raise vas_error(errno.ESRCH, f"no process with pid {pid}", str(pid)) from None
        publish.wake(pid)  # after the request: the target clears the word, then reads


def request_detach_other(pid: int, vid: object) -> None:
    """Ask another process to detach a VAS at its next vaspace call."""
    _signalable(pid)
    with objects.pin(VAS, vid) as ref:
        if ref.id not in {v for v, _ in records.attached_vids(pid)}:
            raise ref.error(errno.EINVAL, f"is not attached to pid {pid}")
        try:
            records.request(pid, ref.id, records.DETACH)
        except ProcessLookupError:
            raise vas_error(errno.ESRCH, f"no process with pid {pid}", str(pid)) from None
        publish.wake(pid)


def sync() -> None:
    """Carry out lazy attach/detach requests other processes left for us.

    Once our lazy-attach word is published under the current root, and
    ``pending/`` was read since, a requester that leaves a request also sets
    the word (``publish.wake``, after writing the request), so while the
    word is clear there is nothing to read: the slow path of a switch then
    makes no system call for this.  Until then (a fresh process, a new root,
    a process that could not publish) ``pending/`` is read every time.
    """
    # Clear the word first: a request left after this sets it again.
    woken = _core.wake_take()
    st = state()
    if not woken and st.wake_ready and st.published == rootmod.root_str():
        return
    if st.published == rootmod.root_str() and st.wake_published:
        st.wake_ready = True  # requests older than the word are read just below
    for vid, access in records.take_requests(st.pid):
        # A request that cannot be carried out now (EBUSY, or views that pin
        # the VAS's segments: BufferError) is dropped, as the RFC's lazy
        # attach drops a failed one; it must not fail the caller's own call.
        with contextlib.suppress(OSError, BufferError):
            if access == records.DETACH:
                detach_self(vid)
            else:
                attach_self(vid, access)
