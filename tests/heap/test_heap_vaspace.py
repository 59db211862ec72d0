"""A heap in a real vaspace segment, shared by two processes through the
vaspace API (VAS + fixed-address segment + attach + switch)."""

from __future__ import annotations

import os

import vaspace
from vaspace.heap import Dict, Heap

# A broken vaspace API must fail this module, not skip it (issue 17): the
# import above fails loudly, and so does a missing entry point.
assert callable(vaspace.vas_create), "vaspace.vas_create is missing"

SEG_START = 0x4000_0000_0000 + 0x10_0000_0000  # inside the default window
SEG_SIZE = 4 << 20


def _in_child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn() or 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _enter(vas_name: str) -> memoryview:
    vid = vaspace.vas_find(vas_name)
    vaspace.vas_attach(0, vid, os.O_RDWR)
    vaspace.vas_switch(vid)
    return vaspace.Segment.find("heapseg").view()


def test_heap_in_vaspace_segment(registry):
    vid = vaspace.vas_create("heapvas", 0o600)
    sid = vaspace.vas_seg_create("heapseg", SEG_START, SEG_START + SEG_SIZE, 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)

    def writer() -> int:
        view = _enter("heapvas")
        h = Heap.format(view)
        assert h.base == SEG_START
        d = Dict(h, root="kv")
        for i in range(500):
            d[f"key{i}"] = i * i
        d["self"] = d.address  # an absolute pointer stored inside the segment
        h.close()
        return 0

    def reader() -> int:
        view = _enter("heapvas")
        h = Heap.open(view)
        d = Dict.open(h, "kv")
        assert len(d) == 501
        assert all(d[f"key{i}"] == i * i for i in range(500))
        assert Dict.at(h, d["self"])["key7"] == 49  # pointer valid here too
        d["reader"] = "was here"
        h.check()
        h.close()
        return 0

    assert _in_child(writer) == 0
    assert _in_child(reader) == 0
    assert _in_child(lambda: 0 if Dict.open(Heap.open(_enter("heapvas")), "kv")["reader"]
                     == "was here" else 1) == 0
