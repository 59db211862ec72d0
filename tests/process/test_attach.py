"""vas_attach / vas_detach: the sharing rule, EBUSY hooks and process life."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, MiB, in_child


def make_vas(name: str = "v", mode: int = 0o666, segs: int = 1) -> tuple[int, list[int]]:
    vid = v.vas_create(name, mode)
    sids = []
    for i in range(segs):
        sid = v.vas_seg_create(f"{name}-s{i}", SEG_BASE + i * 4 * MiB,
                               SEG_BASE + (i * 4 + 1) * MiB, mode)
        v.vas_seg_attach(vid, sid, os.O_RDWR)
        sids.append(sid)
    return vid, sids


def _hold(vid: int, access: int, w: int) -> None:
    """In a child: attach, tell the parent, then wait to be killed."""
    v.vas_attach(0, vid, access)
    os.write(w, b"!")
    time.sleep(60)


def spawn_holder(vid: int, access: int) -> int:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _hold(vid, access, w)
        finally:
            os._exit(1)
    os.close(w)
    assert os.read(r, 1) == b"!", "holder failed to attach"
    os.close(r)
    return pid


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def test_attach_detach_self(registry: str) -> None:
    vid, _ = make_vas()
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_attach(0, vid, os.O_RDWR)  # already attached: no-op
    assert [p.vid for p in v.proc_vas(0)] == [vid]
    assert v.vas_holders(vid) == [v.Holder(os.getpid(), os.O_RDWR)]
    v.vas_detach(0, vid)
    assert v.proc_vas(0) == []
    with pytest.raises(OSError) as e:
        v.vas_detach(0, vid)
    assert e.value.errno == errno.EINVAL


@pytest.mark.parametrize("bad_type", [3, -1, 0o100])
def test_attach_bad_type(registry: str, bad_type: int) -> None:
    vid, _ = make_vas()
    with pytest.raises(OSError) as e:
        v.vas_attach(0, vid, bad_type)
    assert e.value.errno == errno.EINVAL


def test_attach_bad_pid_and_vid(registry: str) -> None:
    vid, _ = make_vas()
    for pid in (-1, "0", None):
        with pytest.raises(OSError) as e:
            v.vas_attach(pid, vid, os.O_RDWR)  # type: ignore[arg-type]
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        v.vas_attach(0, 12345, os.O_RDWR)
    assert e.value.errno == errno.EINVAL


def test_sharing_rule_across_processes(registry: str) -> None:
    vid, _ = make_vas()
    r1 = spawn_holder(vid, os.O_RDONLY)
    r2 = spawn_holder(vid, os.O_RDONLY)  # any number of readers
    try:
        def try_attach(access: int) -> int:
            try:
                v.vas_attach(0, vid, access)
            except OSError as exc:
                return exc.errno or 0
            return 0

        assert in_child(try_attach, os.O_RDWR).get() == errno.EBUSY
        assert in_child(try_attach, os.O_WRONLY).get() == errno.EBUSY
        assert in_child(try_attach, os.O_RDONLY).get() == 0
        holders = {h.pid for h in v.vas_holders(vid)}
        assert {r1, r2} <= holders
    finally:
        kill(r1)
        kill(r2)
    w = spawn_holder(vid, os.O_RDWR)  # one writer ...
    try:
        with pytest.raises(OSError) as e:
            v.vas_attach(0, vid, os.O_RDONLY)  # ... and nothing else
        assert e.value.errno == errno.EBUSY
        assert f"pid {w}" in str(e.value)
    finally:
        kill(w)


def test_sigkill_frees_attachment(registry: str) -> None:
    vid, _ = make_vas()
    w = spawn_holder(vid, os.O_RDWR)
    with pytest.raises(OSError):
        v.vas_attach(0, vid, os.O_RDWR)
    kill(w)
    v.vas_attach(0, vid, os.O_RDWR)  # no cleanup step needed
    assert [h.pid for h in v.vas_holders(vid)] == [os.getpid()]


def test_ebusy_hooks_while_attached(registry: str) -> None:
    vid, (sid,) = make_vas()
    other = v.vas_seg_create("other", SEG_BASE + 64 * MiB, SEG_BASE + 65 * MiB, 0o600)
    w = spawn_holder(vid, os.O_RDONLY)
    try:
        for call, args in ((v.vas_seg_attach, (vid, other, os.O_RDWR)),
                           (v.vas_seg_detach, (vid, sid)),
                           (v.vas_delete, (vid,))):
            with pytest.raises(OSError) as e:
                call(*args)
            assert e.value.errno == errno.EBUSY, call
            assert f"pid {w}" in str(e.value)
    finally:
        kill(w)
    v.vas_seg_attach(vid, other, os.O_RDWR)
    v.vas_seg_detach(vid, sid)
    v.vas_delete(vid)


def test_detach_busy_while_inside(registry: str) -> None:
    vid, _ = make_vas()
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_switch(vid)
    with pytest.raises(OSError) as e:
        v.vas_detach(0, vid)
    assert e.value.errno == errno.EBUSY
    v.vas_switch(0)
    v.vas_detach(0, vid)


def test_fork_child_starts_clean(registry: str) -> None:
    vid, (sid,) = make_vas()
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_switch(vid)
    v.Segment(sid).view()[0] = 42

    def child() -> tuple[int, list, int]:
        # No attachments, original AS, and the parent's lock is not inherited:
        # the child can attach read-only only if the parent's writer lock is
        # not shared with it... it is held by the parent, so EBUSY proves the
        # rule holds across fork too.
        try:
            v.vas_attach(0, vid, os.O_RDONLY)
            code = 0
        except OSError as exc:
            code = exc.errno or 0
        return v.active_vas(), v.proc_vas(0), code

    active, attached, code = in_child(child).get()
    assert active == 0 and attached == [] and code == errno.EBUSY
    assert v.active_vas() == vid and v.Segment(sid).view()[0] == 42  # parent unaffected
    v.vas_switch(0)


def test_fork_child_cannot_touch_segment(registry: str) -> None:
    vid, (sid,) = make_vas()
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_switch(vid)

    def child() -> None:
        import ctypes
        ctypes.c_char.from_address(SEG_BASE).value  # noqa: B018 - must fault

    assert in_child(child).signal == signal.SIGSEGV
    v.vas_switch(0)


def _threads_file_maps() -> list[str]:
    """The lines of /proc/self/maps that map a published thread-slots file."""
    with open("/proc/self/maps") as f:
        return [line for line in f if line.rstrip().endswith(".threads")]


def test_fork_child_does_not_map_the_parents_thread_slots(registry: str) -> None:
    """The published slots are MADV_DONTFORK: a child that kept them mapped
    would hold a window onto its parent's slots (and lazy-attach word) that
    nothing in the child tracks."""
    vid, _ = make_vas()
    v.vas_attach(0, vid, os.O_RDWR)  # the first attach publishes the slots
    v.vas_switch(vid)
    assert len(_threads_file_maps()) == 1
    assert in_child(_threads_file_maps).get() == []
    v.vas_switch(0)


def test_exec_drops_attachments(registry: str) -> None:
    """A writer's lock must not survive into a program it execs (O_CLOEXEC)."""
    import subprocess
    import sys

    vid, _ = make_vas()
    code = ("import os, vaspace as v; vid=int(os.environ['VID']);"
            "v.vas_attach(0, vid, os.O_RDONLY); print(v.proc_vas(0)[0].vid)")
    env = dict(os.environ, VID=str(vid), PYTHONPATH=os.pathsep.join(sys.path))
    v.vas_attach(0, vid, os.O_RDWR)
    # While we hold the writer lock a new program cannot attach ...
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "Device or resource busy" in res.stderr
    v.vas_detach(0, vid)
    # ... and a program exec'd from a process that had it attached starts
    # with nothing: exec from a forked child that attached it writable.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        v.vas_attach(0, vid, os.O_RDWR)
        os.dup2(w, 1)
        os.execve(sys.executable, [sys.executable, "-c",
                  "import os, vaspace as v; print(v.proc_vas(0)); "
                  "v.vas_attach(0, int(os.environ['VID']), os.O_RDWR); print('ok')"], env)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and out.decode().split() == ["[]", "ok"]


def test_lazy_attach_of_other_pid(registry: str) -> None:
    vid, (sid,) = make_vas()
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(go_w)
        os.read(go_r, 1)  # wait until the parent attached us
        v.vas_switch(vid)  # the next vaspace call materializes the attachment
        v.Segment(sid).view()[:5] = b"lazy!"
        os.write(w, str(v.proc_vas(0)[0].vid).encode())
        os._exit(0)
    os.close(w)
    os.close(go_r)
    v.vas_attach(pid, vid, os.O_RDWR)
    os.write(go_w, b"x")
    got = os.read(r, 64)
    os.waitpid(pid, 0)
    assert int(got) == vid
    v.vas_attach(0, vid, os.O_RDONLY)
    with v.VAS(vid).active():
        assert bytes(v.Segment(sid).view()[:5]) == b"lazy!"


def test_a_published_process_reads_requests_when_woken(registry: str) -> None:
    """Once a process has published its lazy-attach word and read pending/,
    its slow paths read pending/ only when the word is set: a request
    carried out needs the requester's wake (which ``vas_attach(pid)`` does,
    after writing the request), and one left without it waits for it."""
    from vaspace.process import publish
    from vaspace.registry import records

    a, _ = make_vas("a")
    b, _ = make_vas("b")
    c, _ = make_vas("c")
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.close(go_w)
            v.vas_attach(0, a, os.O_RDONLY)  # publishes the slots and the word
            v.vas_switch(a)  # a slow path: reads pending/ once, then trusts the word
            v.vas_switch(0)
            seen = []
            for _ in range(3):
                os.write(w, b"r")
                os.read(go_r, 1)
                seen.append(sorted(p.vid for p in v.proc_vas(0)))  # a slow path
            os.write(w, repr(seen).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    os.close(go_r)
    try:
        assert os.read(r, 1) == b"r"
        v.vas_attach(pid, b, os.O_RDONLY)  # request, then wake
        os.write(go_w, b"g")
        assert os.read(r, 1) == b"r"
        records.request(pid, c, os.O_RDONLY)  # a request left without the wake
        os.write(go_w, b"g")
        assert os.read(r, 1) == b"r"
        assert publish.wake(pid)  # now the word says there is something to read
        os.write(go_w, b"g")
        seen = os.read(r, 256).decode()
    finally:
        _, status = os.waitpid(pid, 0)
    assert status == 0
    assert seen == repr([[a, b], [a, b], [a, b, c]])


def test_requests_of_dead_processes_are_reaped(registry: str) -> None:
    vid, _ = make_vas()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)  # never carries out the request: it just exits
        os._exit(0)
    v.vas_attach(pid, vid, os.O_RDONLY)
    assert len(os.listdir(f"{registry}/pending")) == 1
    os.write(w, b"x")
    os.waitpid(pid, 0)
    other = spawn_holder(v.vas_create("w2", 0o666), os.O_RDONLY)
    try:
        v.vas_attach(other, vid, os.O_RDONLY)  # any later request sweeps the dead one's
        assert os.listdir(f"{registry}/pending") == [f"{other}-{records_start(other)}"]
    finally:
        kill(other)


def records_start(pid: int) -> int:
    from vaspace.registry import records

    return records.start_time(pid)


def test_attach_other_pid_errors(registry: str) -> None:
    vid, _ = make_vas()
    with pytest.raises(OSError) as e:
        v.vas_attach(2**22 + 12345, vid, os.O_RDONLY)  # above pid_max: no such process
    assert e.value.errno == errno.ESRCH

    def as_other() -> int:
        try:
            v.vas_attach(1, vid, os.O_RDONLY)  # init: not ours to signal
        except OSError as exc:
            return exc.errno or 0
        return 0

    assert in_child(as_other, uid=65534).get() == errno.EPERM


def test_procfs_views(registry: str) -> None:
    vid, (sid,) = make_vas("pv")
    v.vas_attach(0, vid, os.O_RDONLY)
    v.vas_switch(vid)
    (pv,) = v.proc_vas(0)
    assert pv.vid == vid and pv.name == "pv" and pv.type == os.O_RDONLY
    import threading

    assert pv.threads == (threading.get_native_id(),)
    assert v.proc_maps(0, vid) == [v.ProcMap(SEG_BASE, SEG_BASE + MiB, "r--", "pv-s0")]
    v.vas_switch(0)

    def other() -> tuple[list, list]:
        ppid = os.getppid()
        return v.proc_vas(ppid), v.proc_maps(ppid, vid)

    v.vas_switch(vid)
    views, maps = in_child(other).get()
    v.vas_switch(0)
    # Another process sees our attachment and which thread is inside it.
    assert views == [v.ProcVas(vid, "pv", os.O_RDONLY, (threading.get_native_id(),))]
    assert maps == [v.ProcMap(SEG_BASE, SEG_BASE + MiB, "r--", "pv-s0")]
    # A dead process has none.
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert v.proc_vas(pid) == []


def test_rewritten_region_is_refused(registry: str) -> None:
    """An owner who edits ``region`` after attaching cannot steer our mappings."""
    vid, (sid,) = make_vas("r")
    path = f"{registry}/seg/{sid}/region"
    with open(path, "w") as f:
        f.write("7f0000000000-7f0000100000\n")  # over libc's neighbourhood
    with pytest.raises(OSError) as e:
        v.vas_attach(0, vid, os.O_RDWR)
    assert e.value.errno == errno.EFAULT and "outside the window" in str(e.value)
    assert v.proc_vas(0) == [] and v.vas_holders(vid) == []


def test_mappings_get_tokens_and_lose_them_on_detach(registry: str) -> None:
    """Each mapping is named by a fresh token; detach forgets it, never reused."""
    from vaspace import _core

    vid, _ = make_vas(segs=2)
    seen: set[int] = set()
    for _ in range(3):
        v.vas_attach(0, vid, os.O_RDWR)
        tokens = {m[0] for m in _core.mappings()}
        assert len(tokens) == 2 and not tokens & seen and 0 not in tokens
        seen |= tokens
        gen = _core.window_gen()
        v.vas_switch(vid)
        assert _core.window_gen() != gen and all(m[4] for m in _core.mappings())
        v.vas_switch(0)
        v.vas_detach(0, vid)
        assert _core.mappings() == []


def _loop_cached_switches_until(pid_ready_w: int, go_r: int, a: int, b: int, want: int,
                                attached: bool) -> tuple[bool, int, int]:
    """In the target: warm the plans A<->B, then loop on cached switches until
    VAS ``want`` is (``attached``) or is not attached any more; (seen, switches
    before, slow paths taken by switches in the loop)."""
    from vaspace import _core
    from vaspace.process import state as statemod
    from vaspace.process import switch as switchmod

    for vid in (a, b):
        v.vas_attach(0, vid, os.O_RDWR)
    for vid in (a, b, a):
        v.vas_switch(vid)
    assert _core.plan_get(a, b) is not None and _core.plan_get(b, a) is not None
    slow = []
    real_slow = switchmod._switch_slow
    switchmod._switch_slow = lambda vid: (slow.append(vid), real_slow(vid))[1]
    os.write(pid_ready_w, b"r")
    os.read(go_r, 1)
    atts = statemod.state().attachments
    n = 0
    deadline = time.monotonic() + 20
    while (want in atts) != attached and time.monotonic() < deadline:
        v.vas_switch(b if n % 2 == 0 else a)
        n += 1
        atts = statemod.state().attachments
    seen = (want in atts) == attached  # before switching out: that is a slow path too
    v.vas_switch(0)
    return seen, n, len(slow)


@pytest.mark.parametrize("what", ["attach", "detach"])
def test_lazy_request_reaches_a_loop_of_cached_switches(registry: str, what: str) -> None:
    """A process that only does cached (C fast path) switches still carries out
    a lazy attach or detach request: the requester sets its lazy-attach word,
    and the next switch takes the slow path once, then the fast path again."""
    a, _ = make_vas("a")
    b, _ = make_vas("b")
    c, (sid,) = make_vas("c")
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def target() -> tuple[bool, int, int]:
        if what == "detach":
            v.vas_attach(0, c, os.O_RDONLY)
        return _loop_cached_switches_until(ready_w, go_r, a, b, c, what == "attach")

    child_pid = os.fork()
    if child_pid == 0:  # the target: a real process, looping in C
        code = 1
        try:
            seen, n, slow = target()
            os.write(ready_w, f"{int(seen)} {n} {slow}".encode())
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(ready_r, 1) == b"r"
        if what == "attach":
            v.vas_attach(child_pid, c, os.O_RDONLY)
        else:
            v.vas_detach(child_pid, c)
        os.write(go_w, b"g")
        seen, n, slow = (int(x) for x in os.read(ready_r, 64).split())
    finally:
        _, status = os.waitpid(child_pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert seen == 1, "the request was never carried out by a loop of cached switches"
    # One slow path (the word was set), or none if the request landed before
    # the loop started; the cached plans survive a request that changes
    # nothing for A and B only if it is not an attach (an attach drops them).
    assert slow <= 2 and n >= 1, (n, slow)


def test_lazy_attach_word_refuses_other_users(registry: str) -> None:
    """Only the target's user (or root) can set its lazy-attach word: the file
    is the target's, mode 0644."""
    from vaspace.process import publish

    vid, _ = make_vas("w")
    v.vas_attach(0, vid, os.O_RDONLY)  # publishes this process's slots
    me = os.getpid()
    assert publish.wake(me) is True
    from vaspace import _core

    assert _core.wake_take() is True and _core.wake_take() is False
    assert in_child(publish.wake, me, uid=65534).get() is False
    assert _core.wake_take() is False
