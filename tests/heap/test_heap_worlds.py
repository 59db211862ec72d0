"""Several worlds, one address (issue 7, section 5).

Two segments, ``idx-v1`` and ``idx-v2``, cover the SAME address range.  VAS
``A`` holds version 1 of a pointer-rich index (a root Dict whose values are
absolute addresses of per-word posting Dicts), VAS ``B`` holds version 2.
Readers serve lookups from A, read-only, while a writer builds version 2 in
B at the very same addresses; then each reader switches to B between two
requests.  Version 1 stays intact in A until A is deleted.

Every actor is a real process; the parent sequences the phases over pipes
and asserts on what each reader answered.
"""

from __future__ import annotations

import errno
import json
import os
import signal

import vaspace
from vaspace.heap import Dict, Heap
from vaspace_testing import SEG_BASE, MiB

START = SEG_BASE + 0x40_0000_0000
END = START + 4 * MiB
WORDS = [f"w{i}" for i in range(40)]


def _postings(version: int, word_no: int) -> dict[int, str]:
    """The posting list of a word in one version of the index."""
    return {doc: f"v{version}:{word_no}:{doc}" for doc in range(word_no % 5 + 1)}


def _build(version: int) -> dict[str, int]:
    """Build the index of ``version`` in the current VAS's segment; return
    the addresses of the root and posting Dicts (absolute pointers)."""
    seg = vaspace.Segment.find(f"idx-v{version}")
    with Heap.format(seg.view()) as h:
        index = Dict(h, root="index")
        addrs = {"index": index.address}
        for n, w in enumerate(WORDS):
            post = Dict(h)
            post.update(_postings(version, n))
            index[w] = post.address  # a raw pointer, valid at this address only
            addrs[w] = post.address
        index["version"] = version
        return addrs


def _lookup(h: Heap, word: str) -> dict:
    index = Dict.open(h, "index")
    return {"version": index["version"],
            "postings": {str(k): v for k, v in Dict.at(h, index[word]).items()}}


def _serve(req_r: int, resp_w: int) -> None:
    """A reader: answer requests from whatever VAS it is in, read-only."""
    vids = {"A": vaspace.vas_find("A")}
    seg_of = {"A": "idx-v1", "B": "idx-v2"}
    where = None
    heap = None

    def enter(name: str) -> Heap:
        nonlocal where, heap
        if heap is not None:
            heap.close()  # the mapping moves on switch: never keep using it
        vaspace.vas_switch(vids[name])
        where = name
        heap = Heap.open(vaspace.Segment.find(seg_of[name]).view())
        assert heap.readonly
        return heap

    vaspace.vas_attach(0, vids["A"], os.O_RDONLY)
    enter("A")
    with os.fdopen(req_r, "r") as req, os.fdopen(resp_w, "w") as resp:
        for line in req:
            cmd, arg = json.loads(line)
            try:
                if cmd == "lookup":
                    out = _lookup(heap, arg)
                    out["vas"] = where
                elif cmd == "attach":
                    vids[arg] = vaspace.vas_find(arg)
                    vaspace.vas_attach(0, vids[arg], os.O_RDONLY)
                    out = "attached"
                elif cmd == "switch":
                    h = enter(arg)
                    out = {"vas": where, "index": h.get_root("index")}
                elif cmd == "detach":
                    vaspace.vas_detach(0, vids.pop(arg))
                    out = "detached"
                elif cmd == "write":
                    Dict.open(heap, "index")["w0"] = 0
                    out = "wrote"
                else:
                    break
            except OSError as e:
                out = {"error": type(e).__name__, "errno": e.errno}
            resp.write(json.dumps(out) + "\n")
            resp.flush()
    heap.close()
    vaspace.vas_switch(0)


class _Proc:
    """A forked process driven over a pair of pipes (JSON lines)."""

    def __init__(self, target) -> None:
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 0
            try:
                os.close(self._req_w)
                os.close(self._resp_r)
                target(req_r, resp_w)
            except BaseException:  # noqa: BLE001 - the exit code reports it
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(resp_w)
        self._req = os.fdopen(self._req_w, "w")
        self._resp = os.fdopen(self._resp_r, "r")

    def ask(self, cmd: str, arg: object = None) -> object:
        self._req.write(json.dumps([cmd, arg]) + "\n")
        self._req.flush()
        line = self._resp.readline()
        assert line, f"process {self.pid} died during {cmd} {arg}"
        return json.loads(line)

    def finish(self) -> int:
        # An explicit "exit", not EOF: processes forked later inherited our
        # end of the request pipe, so EOF may never come.
        self._req.write(json.dumps(["exit", None]) + "\n")
        self._req.close()
        self._resp.close()
        _, status = os.waitpid(self.pid, 0)
        assert not os.WIFSIGNALED(status), f"killed by {signal.Signals(os.WTERMSIG(status))}"
        return os.waitstatus_to_exitcode(status)


def _builder(req_r: int, resp_w: int) -> None:
    """Writer of version 1 in A: builds, reports its addresses, leaves."""
    vid = vaspace.vas_find("A")
    vaspace.vas_attach(0, vid, os.O_RDWR)
    vaspace.vas_switch(vid)
    addrs = _build(1)
    vaspace.vas_switch(0)
    vaspace.vas_detach(0, vid)
    with os.fdopen(req_r, "r") as req, os.fdopen(resp_w, "w") as resp:
        resp.write(json.dumps(addrs) + "\n")
        resp.flush()
        req.readline()  # "exit"


def _writer_v2(req_r: int, resp_w: int) -> None:
    """Writer of version 2 in B: builds half, waits, finishes, leaves."""
    vid = vaspace.vas_find("B")
    vaspace.vas_attach(0, vid, os.O_RDWR)
    vaspace.vas_switch(vid)
    with os.fdopen(req_r, "r") as req, os.fdopen(resp_w, "w") as resp:
        req.readline()  # "start"
        seg = vaspace.Segment.find("idx-v2")
        with Heap.format(seg.view()) as h:  # half a build: the heap is mid-way
            index = Dict(h, root="index")
            index["version"] = 2
        resp.write(json.dumps({"half": index.address}) + "\n")
        resp.flush()
        req.readline()  # "finish": the parent has queried the readers meanwhile
        addrs = _build(2)  # the full build, from scratch, same addresses
        vaspace.vas_switch(0)
        vaspace.vas_detach(0, vid)
        resp.write(json.dumps(addrs) + "\n")
        resp.flush()
        req.readline()  # "exit": the parent is done with us


def _expect(version: int, word: str, vas: str) -> dict:
    n = WORDS.index(word)
    return {"version": version, "vas": vas,
            "postings": {str(k): v for k, v in _postings(version, n).items()}}


def test_several_worlds_one_address(registry):
    a = vaspace.vas_create("A", 0o600)
    b = vaspace.vas_create("B", 0o600)
    s1 = vaspace.vas_seg_create("idx-v1", START, END, 0o600)
    s2 = vaspace.vas_seg_create("idx-v2", START, END, 0o600)
    assert vaspace.seg_region(s1) == vaspace.seg_region(s2)  # one address range
    vaspace.vas_seg_attach(a, s1, os.O_RDWR)
    vaspace.vas_seg_attach(b, s2, os.O_RDWR)

    # 1. the builder writes version 1 into A and exits
    builder = _Proc(_builder)
    v1_addrs = json.loads(builder._resp.readline())
    assert builder.finish() == 0
    assert START <= v1_addrs["index"] < END

    # 2. two readers attach A read-only and serve version 1
    readers = [_Proc(_serve) for _ in range(2)]
    for r in readers:
        for w in WORDS[::7]:
            assert r.ask("lookup", w) == _expect(1, w, "A")
        assert r.ask("write") == {"error": "PermissionError", "errno": None}

    # 3. a writer builds version 2 in B, at the same addresses, meanwhile
    writer = _Proc(_writer_v2)
    half = writer.ask("start")
    assert half == {"half": v1_addrs["index"]}  # same address, other world
    for r in readers:  # B has a writer: the sharing rule refuses readers
        assert r.ask("attach", "B") == {"error": "OSError", "errno": errno.EBUSY}
        for w in WORDS[1::7]:
            assert r.ask("lookup", w) == _expect(1, w, "A")
    v2_addrs = writer.ask("finish")
    assert writer.finish() == 0
    assert v2_addrs == v1_addrs  # every pointer of v2 equals its v1 twin

    # 4. between two requests, each reader attaches B read-only and switches
    for r in readers:
        assert r.ask("lookup", "w3") == _expect(1, "w3", "A")
        assert r.ask("attach", "B") == "attached"
        assert r.ask("switch", "B") == {"vas": "B", "index": v1_addrs["index"]}
        for w in WORDS[::5]:
            assert r.ask("lookup", w) == _expect(2, w, "B")
    # the old world is intact: A is still registered, and a reader that
    # switches back still sees version 1 at the same addresses
    assert vaspace.vas_find("A") == a
    assert {h.pid for h in vaspace.vas_holders(a)} == {r.pid for r in readers}
    r0 = readers[0]
    assert r0.ask("switch", "A") == {"vas": "A", "index": v1_addrs["index"]}
    assert r0.ask("lookup", "w9") == _expect(1, "w9", "A")
    assert r0.ask("switch", "B") == {"vas": "B", "index": v1_addrs["index"]}
    assert r0.ask("lookup", "w9") == _expect(2, "w9", "B")

    # 5. A can go once no reader holds it; B keeps serving
    try:
        vaspace.vas_delete(a)
        raise AssertionError("vas_delete of an attached VAS succeeded")
    except OSError as e:
        assert e.errno == errno.EBUSY
    for r in readers:
        assert r.ask("detach", "A") == "detached"
    vaspace.vas_delete(a)
    vaspace.vas_seg_delete(s1)
    assert a not in vaspace.vas_ids() and s1 not in vaspace.seg_ids()
    for name, find in (("A", vaspace.vas_find), ("idx-v1", vaspace.vas_seg_find)):
        try:
            find(name)
            raise AssertionError(f"{name} still registered")
        except OSError as e:
            assert e.errno == errno.ESRCH  # the RFC's "no such object"
    for r in readers:
        assert r.ask("lookup", "w39") == _expect(2, "w39", "B")
        assert r.finish() == 0
    assert vaspace.vas_holders(b) == []
