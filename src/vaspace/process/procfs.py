"""The RFC's ``/proc/<pid>/vas/<vid>/{status,maps}``, as functions.

For the calling process the answers come from its own state; for another
process, from the registry's attachment records and the thread slots it
publishes (``publish.py``).  A lazy attach request shows once the target has
carried it out.  A dead process has no attachments.
"""

from __future__ import annotations

import os

from .. import _core
from .._ntuples import ProcMap, ProcVas
from ..access import prot_for, prot_text
from ..errors import invalid
from ..registry import objects, records
from ..registry import root as rootmod
from ..registry.kind import SEG, VAS
from . import attach, publish
from .state import state


def _is_self(pid: int) -> bool:
    return pid == 0 or pid == os.getpid()


def proc_vas(pid: object) -> list[ProcVas]:
    """Attachments of a process: vid, name, type, and the threads inside each."""
    pid = attach.check_pid(pid)
    if _is_self(pid):
        attach.sync()
        st = state()
        with st.lock:
            inside: dict[int, list[int]] = {}
            for tid, v in _core.thread_vids():
                inside.setdefault(v, []).append(tid)
            return [ProcVas(a.vid, a.name, a.type, tuple(sorted(inside.get(a.vid, ()))))
                    for a in sorted(st.attachments.values(), key=lambda a: a.vid)]
    rootmod.existing()
    inside = publish.threads_of(pid)
    out = []
    for vid, access in records.attached_vids(pid):
        try:
            with objects.pin(VAS, vid) as ref:
                out.append(ProcVas(vid, ref.name, access, inside.get(vid, ())))
        except OSError:
            continue  # deleted meanwhile, or damaged
    return out


def proc_maps(pid: object, vid: object) -> list[ProcMap]:
    """Segments of one attachment: start, end, access ("r--"/"rw-") and name."""
    pid = attach.check_pid(pid)
    vid = objects.check_id(VAS, vid)
    if _is_self(pid):
        attach.sync()
        st = state()
        with st.lock:
            att = st.attachments.get(vid)
            if att is None:
                raise invalid(f"VAS id {vid} is not attached to this process")
            return [ProcMap(m.start, m.end, prot_text(m.prot), m.name)
                    for m in sorted(att.maps, key=lambda m: m.start)]
    held = dict(records.attached_vids(pid))
    if vid not in held:
        raise invalid(f"VAS id {vid} is not attached to pid {pid}")
    out = []
    with objects.pin(VAS, vid) as vas:
        links = vas.links()
    for link in links:
        try:
            with objects.pin(SEG, link.sid) as seg:
                start, end = seg.region()
                out.append(ProcMap(start, end, prot_text(prot_for(held[vid], link.type)),
                                   seg.name))
        except OSError:
            continue  # deleted meanwhile, or damaged: not mapped there
    return sorted(out)
