"""Security (issue 6, part 4): two unprivileged users sharing one registry.

``NOBODY`` (65534) is the victim and ``OTHER_USER`` (65533) the attacker;
both are real uids set in forked children (setgroups/setgid/setuid after
importing), so the kernel enforces file modes and signal permissions exactly
as it would for strangers.  The registry root is shared (sticky, world
writable, like /tmp), which is the setting where a malicious user can plant
files and links: every test here plants one and checks the victim refuses it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from relutil import NOBODY, OTHER_USER, PAGE, SEG_BASE, as_user, run_child, snapshot

import vaspace
from vaspace.registry import records
from vaspace.registry import root as rootmod
from vaspace_testing import needs_root

pytestmark = needs_root  # every test here plays two users (setuid) or chowns

ATTACKER, VICTIM = OTHER_USER, NOBODY


def errno_of(fn, *args) -> int | str:  # type: ignore[no-untyped-def]
    """The errno a call fails with, or "ok"."""
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or 0
    return "ok"


def _victim_objects(mode: int) -> dict[str, int]:
    """As the victim: a VAS holding a segment (both ``mode``) with known data."""
    vid = vaspace.vas_create("v-vas", mode)
    sid = vaspace.vas_seg_create("v-seg", SEG_BASE, SEG_BASE + PAGE, mode)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    vaspace.vas_attach(0, vid, os.O_RDWR)
    with vaspace.VAS(vid).active():
        vaspace.Segment(sid).view()[:6] = b"secret"
    vaspace.vas_detach(0, vid)
    return {"vid": vid, "sid": sid}


# ------------------------------------------------ modes, across two users


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604])
def test_attacker_cannot_use_objects_the_mode_forbids(registry: str, mode: int) -> None:
    """Read, write, attach, delete, setattr and the backing files, as another user."""
    objs = as_user(VICTIM, _victim_objects, mode)
    before = snapshot(registry)
    root = Path(registry)

    def attack() -> dict[str, object]:
        vid, sid = objs["vid"], objs["sid"]
        own = vaspace.vas_create("a-vas", 0o600)
        out: dict[str, object] = {
            "attach_rw": errno_of(vaspace.vas_attach, 0, vid, os.O_RDWR),
            "attach_wo": errno_of(vaspace.vas_attach, 0, vid, os.O_WRONLY),
            "seg_attach_rw": errno_of(vaspace.vas_seg_attach, own, sid, os.O_RDWR),
            "vas_delete": errno_of(vaspace.vas_delete, vid),
            "seg_delete": errno_of(vaspace.vas_seg_delete, sid),
            "vas_setattr": errno_of(vaspace.vas_setattr, vid, vaspace.Attr(0o666, ATTACKER, 0)),
            "seg_setattr": errno_of(vaspace.vas_seg_setattr, sid,
                                    vaspace.Attr(0o666, VICTIM, VICTIM)),
            "open_data_w": errno_of(os.open, root / f"seg/{sid}/data", os.O_WRONLY),
            "open_lock_w": errno_of(os.open, root / f"vas/{vid}/lock", os.O_WRONLY),
            "seg_detach": errno_of(vaspace.vas_seg_detach, vid, sid),
        }
        if not mode & 0o004:
            out["attach_ro"] = errno_of(vaspace.vas_attach, 0, vid, os.O_RDONLY)
            out["seg_attach_ro"] = errno_of(vaspace.vas_seg_attach, own, sid, os.O_RDONLY)
            out["open_data_r"] = errno_of(os.open, root / f"seg/{sid}/data", os.O_RDONLY)
        vaspace.vas_delete(own)
        return out

    results = as_user(ATTACKER, attack)
    refused = {errno.EACCES, errno.EPERM}
    if results["seg_delete"] == errno.EBUSY:  # attached to the victim's VAS: checked first
        results["seg_delete"] = errno.EPERM
    assert {k: r for k, r in results.items() if r not in refused} == {}
    # Nothing the attacker tried changed the victim's objects.
    after = {k: v for k, v in snapshot(registry).items() if not k.startswith("procs")}
    assert after == {k: v for k, v in before.items() if not k.startswith("procs")}


def test_read_only_attachment_faults_on_write(registry: str) -> None:
    """Mode 0o644: the attacker may map the segment read-only; a write must SIGSEGV."""
    objs = as_user(VICTIM, _victim_objects, 0o644)

    def read_then_write() -> None:
        import faulthandler

        faulthandler.disable()  # the fault is expected: no traceback dump on stderr
        vaspace.vas_attach(0, objs["vid"], os.O_RDONLY)
        vaspace.vas_switch(objs["vid"])
        assert bytes(vaspace.Segment(objs["sid"]).view()[:6]) == b"secret"
        ctypes.memmove(SEG_BASE, b"pwned!", 6)  # must fault: mapped PROT_READ

    out = run_child(read_then_write, uid=ATTACKER)
    assert out.signal == signal.SIGSEGV, out
    assert as_user(VICTIM, _read_secret, objs) == b"secret"


def _read_secret(objs: dict[str, int]) -> bytes:
    vaspace.vas_attach(0, objs["vid"], os.O_RDONLY)
    with vaspace.VAS(objs["vid"]).active():
        return bytes(vaspace.Segment(objs["sid"]).view()[:6])


# ------------------------------------------------ attaching to other processes


@pytest.fixture
def victim_process(registry: str) -> Iterator[tuple[int, int, int]]:
    """A process running as the victim, that makes a vaspace call when told to.

    Yields (pid, command fd, answer fd): write one byte to make it call
    ``proc_vas(0)`` (which carries out pending lazy attaches) and read back
    the vids it then has attached.
    """
    cmd_r, cmd_w = os.pipe()
    ans_r, ans_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(cmd_w)
            os.close(ans_r)
            rootmod.forget()
            os.setgroups([])
            os.setgid(VICTIM)
            os.setuid(VICTIM)
            vaspace.registry_root()
            os.write(ans_w, b"ready\n")
            while os.read(cmd_r, 1):
                vids = [p.vid for p in vaspace.proc_vas(0)]
                os.write(ans_w, (" ".join(map(str, vids)) + "\n").encode())
        finally:
            os._exit(0)
    os.close(cmd_r)
    os.close(ans_w)
    assert os.read(ans_r, 100) == b"ready\n"
    try:
        yield pid, cmd_w, ans_r
    finally:
        os.close(cmd_w)
        os.close(ans_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _victim_attachments(victim: tuple[int, int, int]) -> list[int]:
    _, cmd, ans = victim
    os.write(cmd, b"x")
    return [int(x) for x in os.read(ans, 1000).split()]


def test_cannot_attach_to_a_process_it_may_not_signal(registry: str, victim_process) -> None:
    """vas_attach(pid) needs the right to signal pid: EPERM for another user's process."""
    pid = victim_process[0]
    vid = vaspace.vas_create("open", 0o666)

    def attack() -> tuple[object, object, object]:
        return (errno_of(vaspace.vas_attach, pid, vid, os.O_RDONLY),
                errno_of(vaspace.vas_attach, 1, vid, os.O_RDONLY),
                errno_of(vaspace.vas_detach, pid, vid))

    assert as_user(ATTACKER, attack) == (errno.EPERM, errno.EPERM, errno.EPERM)
    assert _victim_attachments(victim_process) == []


def _plant_request(pid: int, vid: int) -> None:
    """What an attacker can do by hand: write a lazy-attach request for ``pid``."""
    d = Path(records._pending_dir(pid, records.start_time(pid)))
    os.mkdir(d, 0o755)
    os.symlink("rw", d / str(vid))


def test_planted_lazy_attach_request_is_ignored(registry: str, victim_process) -> None:
    """Bypassing vas_attach's EPERM by writing the pending/ request directly must not work."""
    pid = victim_process[0]
    vid = as_user(VICTIM, vaspace.vas_create, "victims-own", 0o600)
    as_user(ATTACKER, _plant_request, pid, vid)
    assert _victim_attachments(victim_process) == []
    # The planted directory is in the way of the victim's own requests (a
    # denial of service the threat model accepts): they fail cleanly, EPERM.
    assert as_user(VICTIM, errno_of, vaspace.vas_attach, pid, vid, os.O_RDONLY) == errno.EPERM
    # Root removes what was planted, and its request gets through.
    vaspace.vas_attach(pid, vid, os.O_RDONLY)
    assert _victim_attachments(victim_process) == [vid]


def test_planted_attachment_record_does_not_mislead(registry: str, victim_process) -> None:
    """A forged procs/ record neither blocks the victim's attach nor shows up as a holder."""
    pid = victim_process[0]
    vid = as_user(VICTIM, vaspace.vas_create, "victims-own", 0o600)

    def plant() -> None:
        os.symlink(f"{records.start_time(pid)}:rw", Path(registry) / f"procs/{vid}.{pid}")

    as_user(ATTACKER, plant)
    assert vaspace.vas_holders(vid) == []
    as_user(VICTIM, vaspace.vas_attach, pid, vid, os.O_RDONLY)
    assert _victim_attachments(victim_process) == [vid]


def test_root_request_does_not_follow_a_planted_symlink(registry: str, victim_process,
                                                        tmp_path: Path) -> None:
    """A root process asking another to attach must not chown through a planted link.

    The request directory is chowned to the target when root makes it; a
    symlink planted under its name would turn that into chown(any path).
    """
    pid = victim_process[0]
    target = tmp_path / "root-owned"
    target.write_text("x")
    vid = vaspace.vas_create("open", 0o666)

    def plant() -> None:
        d = records._pending_dir(pid, records.start_time(pid))
        os.symlink(target, d)

    as_user(ATTACKER, plant)
    vaspace.vas_attach(pid, vid, os.O_RDONLY)
    assert os.lstat(target).st_uid == 0
    # Root removed the planted link and made a real request.
    assert _victim_attachments(victim_process) == [vid]


# ------------------------------------------------ names cannot escape the root


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../b", "..", ".", "../../../tmp",
                                  "x/", "%2e%2e", "\\..\\x", "..\u2215x"])
def test_names_stay_inside_the_root(registry: str, name: str) -> None:
    """Any name is just a name: nothing appears outside the registry root."""
    base = Path(registry).parent
    # Where a name used raw as a path under any registry directory would land.
    dirs = [Path(registry, *sub.split("/")) for sub in (".", *rootmod.SUBDIRS)]
    landing = {os.path.normpath(d / name) for d in dirs} | {os.path.normpath("/" + name)}
    landing = {p for p in landing if not p.startswith(registry + "/") and p != registry}
    existing = {p for p in landing if os.path.lexists(p)}
    vid = vaspace.vas_create(name, 0o600)
    sid = vaspace.vas_seg_create(name, SEG_BASE, SEG_BASE + PAGE, 0o600)
    assert vaspace.vas_find(name) == vid and vaspace.vas_name(vid) == name
    assert vaspace.vas_seg_find(name) == sid and vaspace.seg_name(sid) == name
    assert {p for p in landing if os.path.lexists(p)} == existing
    assert os.listdir(base) == ["root"]
    for sub in ("names/vas", "names/seg"):
        entries = os.listdir(Path(registry) / sub)
        assert len(entries) == 1 and "/" not in entries[0] and entries[0] not in (".", "..")
    vaspace.vas_delete(vid)
    vaspace.vas_seg_delete(sid)
    assert not os.listdir(Path(registry) / "names/vas")


# ------------------------------------------------ planted links and swapped files


def _attacker_vas_with_segment() -> dict[str, int]:
    """As the attacker: a VAS anyone may attach, holding the attacker's own segment."""
    vid = vaspace.vas_create("shared", 0o666)
    sid = vaspace.vas_seg_create("bait", SEG_BASE, SEG_BASE + PAGE, 0o666)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    return {"vid": vid, "sid": sid}


def _victim_attach(vid: int) -> int | str:
    return errno_of(vaspace.vas_attach, 0, vid, os.O_RDWR)


def _victim_file(path: Path) -> None:
    path.write_bytes(b"victim's own data".ljust(PAGE, b"\0"))
    os.chown(path, VICTIM, VICTIM)
    path.chmod(0o600)


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_victim_refuses_a_planted_data_file(registry: str, tmp_path: Path, how: str) -> None:
    """The attacker swaps its segment's data for a link to the victim's file.

    A victim attaching the attacker's VAS would otherwise map its own private
    file read-write at a known address.  A symlink is refused by O_NOFOLLOW;
    a hard link (which the kernel forbids unless fs.protected_hardlinks=0,
    so root plants it here to stand for such a system) by the link count.
    """
    secret = Path(registry).parent / "victim-file"
    _victim_file(secret)
    objs = as_user(ATTACKER, _attacker_vas_with_segment)
    data = Path(registry) / f"seg/{objs['sid']}/data"

    def swap() -> None:
        os.unlink(data)
        if how == "symlink":
            os.symlink(secret, data)

    as_user(ATTACKER, swap)
    if how == "hardlink":
        assert as_user(ATTACKER, errno_of, os.link, secret, data) == errno.EPERM
        os.link(secret, data)  # the OS stopped the attacker; play a laxer kernel
    result = as_user(VICTIM, _victim_attach, objs["vid"])
    assert result != "ok"
    assert secret.read_bytes().startswith(b"victim's own data")


def test_victim_refuses_a_planted_lock_link(registry: str) -> None:
    """A symlink in place of a VAS's lock file is refused, not followed."""
    objs = as_user(ATTACKER, _attacker_vas_with_segment)
    lock = Path(registry) / f"vas/{objs['vid']}/lock"

    def swap() -> None:
        os.unlink(lock)
        os.symlink("/etc/passwd", lock)

    as_user(ATTACKER, swap)
    assert as_user(VICTIM, _victim_attach, objs["vid"]) != "ok"


def test_attacker_cannot_swap_the_victims_files(registry: str) -> None:
    """The sticky registry and per-object directories stop renames of others' entries."""
    objs = as_user(VICTIM, _victim_objects, 0o666)
    root = Path(registry)

    def attack() -> list[object]:
        return [
            errno_of(os.rename, root / f"seg/{objs['sid']}", root / "seg/9999"),
            errno_of(os.unlink, root / f"seg/{objs['sid']}/data"),
            errno_of(os.unlink, root / f"vas/{objs['vid']}/lock"),
            errno_of(os.rename, root / "names/seg/v-seg", root / "names/seg/x"),
            errno_of(os.unlink, root / "names/vas/v-vas"),
            errno_of(os.symlink, "/etc/passwd", root / f"seg/{objs['sid']}/data2"),
        ]

    assert all(r in (errno.EPERM, errno.EACCES) for r in as_user(ATTACKER, attack))
    assert as_user(VICTIM, _read_secret, objs) == b"secret"


def test_attacker_cannot_make_victim_map_via_swapped_object_dir(registry: str) -> None:
    """The attacker replaces its own segment directory by a link to the victim's.

    The victim would then open the victim's private data through the
    attacker's segment; the name check (the name file behind the link names
    another id) makes the segment not exist instead.
    """
    victim = as_user(VICTIM, _victim_objects, 0o600)
    objs = as_user(ATTACKER, _attacker_vas_with_segment)
    root = Path(registry)

    def swap() -> None:
        os.rename(root / f"seg/{objs['sid']}", root / "seg/stash")
        os.symlink(root / f"seg/{victim['sid']}", root / f"seg/{objs['sid']}")

    as_user(ATTACKER, swap)

    def victim_attaches() -> list[int]:
        vaspace.vas_attach(0, objs["vid"], os.O_RDWR)
        return [m.start for m in vaspace.proc_maps(0, objs["vid"])]

    assert as_user(VICTIM, victim_attaches) == []


# ------------------------------------------------ the root itself


def test_root_precreated_by_another_user_is_refused(registry: str) -> None:
    """A root owned by someone else (not root) could be emptied or rigged by them: refuse it."""
    rootmod.remove_tree(Path(registry))
    os.makedirs(registry)
    os.chown(registry, ATTACKER, ATTACKER)
    os.chmod(registry, 0o1777)

    def use() -> object:
        rootmod.forget()
        return errno_of(vaspace.vas_create, "mine", 0o600)

    assert as_user(VICTIM, use) == errno.EACCES
    assert os.listdir(registry) == []


def test_root_replaced_by_a_symlink_is_refused(registry: str, tmp_path: Path) -> None:
    rootmod.remove_tree(Path(registry))
    real = Path(registry).parent / "attackers"
    real.mkdir()
    os.chown(real, ATTACKER, ATTACKER)
    os.symlink(real, registry)

    def use() -> object:
        rootmod.forget()
        return errno_of(vaspace.vas_create, "mine", 0o600)

    assert as_user(VICTIM, use) in (errno.ENOTDIR, errno.EACCES)
    assert os.listdir(real) == []


def test_precreated_subdirectory_is_refused(registry: str) -> None:
    """An attacker racing the first user to create names/ inside a root-owned root loses."""
    rootmod.remove_tree(Path(registry))
    os.makedirs(registry)
    os.chmod(registry, 0o1777)
    as_user(ATTACKER, os.mkdir, Path(registry) / "names", 0o777)

    def use() -> object:
        rootmod.forget()
        return errno_of(vaspace.vas_create, "mine", 0o600)

    assert as_user(VICTIM, use) == errno.EACCES


# ------------------------------------------------ permissions whatever the umask


@pytest.mark.parametrize("umask", [0, 0o022, 0o077, 0o277, 0o777])
def test_registry_modes_do_not_depend_on_umask(registry: str, umask: int) -> None:
    """Whoever creates the registry and objects, and whatever their umask, modes are fixed."""
    rootmod.remove_tree(Path(registry))  # the victim creates the whole registry
    os.chown(Path(registry).parent, VICTIM, VICTIM)

    def create() -> dict[str, int]:
        os.umask(umask)
        rootmod.forget()
        vid = vaspace.vas_create("é" * 100, 0o640)  # stored by hash: it has a name file
        sid = vaspace.vas_seg_create("s", SEG_BASE, SEG_BASE + PAGE, 0o604)
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        vaspace.vas_switch(vid)
        vaspace.vas_switch(0)
        return {"vid": vid, "sid": sid}

    objs = as_user(VICTIM, create)
    root = Path(registry)

    def mode(rel: str) -> int:
        return stat.S_IMODE(os.lstat(root / rel).st_mode)

    assert mode(".") == 0o1777
    for sub in rootmod.SUBDIRS:
        assert mode(sub) == 0o1777, sub
    assert mode("lock") == 0o644
    vid, sid = objs["vid"], objs["sid"]
    assert mode(f"vas/{vid}") == 0o1755 and mode(f"vas/{vid}/lock") == 0o640
    assert mode(f"vas/{vid}/name") == 0o644
    assert mode(f"seg/{sid}") == 0o755 and mode(f"seg/{sid}/data") == 0o604
    assert mode(f"seg/{sid}/region") == 0o644
    assert not (root / f"seg/{sid}/name").exists()  # "s" is spelt by its index link
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            assert st.st_uid == VICTIM
            # Nothing is writable by others except the sticky shared directories.
            if not stat.S_ISLNK(st.st_mode) and not st.st_mode & stat.S_ISVTX:
                assert not st.st_mode & 0o002, os.path.join(dirpath, n)


def test_victim_processes_outlive_attacker_kill(registry: str) -> None:
    """A process killed while holding a VAS releases it (no lock held by the dead)."""
    vid = as_user(VICTIM, vaspace.vas_create, "held", 0o600)

    def hold() -> None:
        vaspace.vas_attach(0, vid, os.O_RDWR)
        time.sleep(30)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setgroups([])
        os.setgid(VICTIM)
        os.setuid(VICTIM)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        os.write(w, b"1")
        time.sleep(30)
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    assert as_user(VICTIM, errno_of, vaspace.vas_attach, 0, vid, os.O_RDONLY) == errno.EBUSY
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert as_user(VICTIM, errno_of, vaspace.vas_attach, 0, vid, os.O_RDWR) == "ok"
    assert vaspace.vas_holders(vid) == []


def test_victim_refuses_a_rewritten_region(registry: str) -> None:
    """The attacker rewrites its segment's region to lie over the victim's own memory.

    Mapping there would replace the victim's heap or code with the
    attacker's file; the victim must refuse with EFAULT instead.
    """
    objs = as_user(ATTACKER, _attacker_vas_with_segment)
    region = Path(registry) / f"seg/{objs['sid']}/region"

    # A forked child shares this process's layout: this page is its heap too.
    page = id(vaspace) - id(vaspace) % PAGE
    as_user(ATTACKER, region.write_text, f"{page:x}-{page + PAGE:x}\n")

    def victim() -> object:
        return errno_of(vaspace.vas_attach, 0, objs["vid"], os.O_RDWR)

    assert run_child(victim, uid=VICTIM).get() == errno.EFAULT


def test_planted_thread_slot_file_does_not_block_the_victim(registry: str) -> None:
    """Anyone can guess a process's slot file name (pid and start time are public)."""
    vid = as_user(VICTIM, vaspace.vas_create, "mine", 0o600)
    go_r, go_w = os.pipe()

    def victim() -> None:
        os.read(go_r, 1)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        vaspace.vas_switch(vid)
        vaspace.vas_switch(0)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = run_child(victim, uid=VICTIM)
        os.write(w, b"ok" if out.error is None and out.signal is None else repr(out).encode())
        os._exit(0)
    os.close(w)
    # The grandchild is the victim; its pid is the next one we can see.
    kids: list[int] = []
    for _ in range(500):
        kids = [int(t) for t in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        if kids:
            break
        time.sleep(0.01)
    victim_pid = kids[0]
    slots = Path(registry) / f"procs/{victim_pid}-{records.start_time(victim_pid)}.threads"

    def plant() -> None:
        fd = os.open(slots, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
        os.fchmod(fd, 0o666)
        os.close(fd)

    as_user(ATTACKER, plant)
    os.write(go_w, b"x")
    result = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    assert result == b"ok", result


def test_planted_unicode_digit_slot_file_does_not_break_attach(registry: str) -> None:
    as_user(ATTACKER, Path(registry, "procs", "\u00b2-1.threads").touch)
    vid = as_user(VICTIM, vaspace.vas_create, "mine", 0o600)
    assert as_user(VICTIM, errno_of, vaspace.vas_attach, 0, vid, os.O_RDWR) == "ok"


def _swapper(root: Path, sid: int, target: Path, what: str, started: int, stop: int) -> int:
    """As the attacker: keep swapping our segment's data (or directory) for a link.

    Counted, not timed: it says so on ``started`` after its first swap and
    goes on until ``stop`` is readable.
    """
    d = root / f"seg/{sid}"
    swaps = 0
    if what == "dir":
        os.rename(d, root / "seg/real")
    while not select.select([stop], [], [], 0)[0]:
        if what == "data":
            os.symlink(target, d / "tmp")
            os.rename(d / "tmp", d / "data")
            with open(d / "tmp", "wb") as f:
                f.truncate(PAGE)
            os.rename(d / "tmp", d / "data")
        else:
            os.symlink(target, root / "seg/tmp")
            os.rename(root / "seg/tmp", d)
            os.unlink(d)
            os.symlink(root / "seg/real", d)
            os.unlink(d)
        swaps += 1
        if swaps == 1:
            os.write(started, b"s")
    return swaps


@pytest.mark.parametrize("what", ["data", "dir"])
def test_swap_races_never_map_the_victims_file(registry: str, what: str) -> None:
    """While the attacker swaps links in and out, the victim attaches again and again.

    Each check runs on the open descriptor (O_NOFOLLOW, then fstat), and
    names are checked against the index, so no interleaving maps the
    victim's own data through the attacker's segment.
    """
    victim = as_user(VICTIM, _victim_objects, 0o600)
    objs = as_user(ATTACKER, _attacker_vas_with_segment)
    root = Path(registry)
    target = root / (f"seg/{victim['sid']}/data" if what == "data" else f"seg/{victim['sid']}")

    attempts = 300
    started_r, started_w = os.pipe()
    stop_r, stop_w = os.pipe()

    def victim_loop() -> dict[str, int]:
        seen = {"mapped": 0, "empty": 0, "refused": 0, "secret": 0}
        assert select.select([started_r], [], [], 20)[0], "the attacker never swapped"
        for _ in range(attempts):  # all of them while the attacker swaps
            try:
                vaspace.vas_attach(0, objs["vid"], os.O_RDWR)
            except OSError:
                seen["refused"] += 1
                continue
            try:
                vaspace.vas_switch(objs["vid"])
                maps = vaspace.proc_maps(0, objs["vid"])
                if maps:
                    seen["mapped"] += 1
                    if bytes((ctypes.c_char * 6).from_address(maps[0].start)) == b"secret":
                        seen["secret"] += 1
                else:
                    seen["empty"] += 1
                vaspace.vas_switch(0)
            finally:
                vaspace.vas_detach(0, objs["vid"])
        return seen

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = run_child(_swapper, root, objs["sid"], target, what, started_w, stop_r,
                        uid=ATTACKER)
        os.write(w, str(out.value if out.error is None else -1).encode())
        os._exit(0)
    os.close(w)
    try:
        seen = run_child(victim_loop, uid=VICTIM, timeout=60).get()
    finally:
        os.write(stop_w, b"x")  # a byte, not EOF: every fork holds the pipe's ends
        swaps = int(os.read(r, 100) or b"-1")
        for fd in (r, started_r, started_w, stop_r, stop_w):
            os.close(fd)
        os.waitpid(pid, 0)
    assert swaps > 0, "the attacker must really have been swapping"
    assert seen["secret"] == 0, seen
    assert seen["mapped"] + seen["empty"] + seen["refused"] == attempts, seen


def test_directory_swapped_between_check_and_open_is_refused(registry: str) -> None:
    """The race above, made deterministic: the swap happens right after the victim's checks.

    A hook in the victim stops it after it found the segment alive and lets
    the attacker swap its segment directory for a link to the victim's own;
    the open that follows (which reads the region through the same pinned
    directory) must not land in the victim's directory.
    """
    from vaspace.registry import seg as segreg

    victim = as_user(VICTIM, _victim_objects, 0o600)
    objs = as_user(ATTACKER, _attacker_vas_with_segment)
    root = Path(registry)
    ask_r, ask_w = os.pipe()
    done_r, done_w = os.pipe()

    def swap() -> None:
        os.read(ask_r, 1)
        os.rename(root / f"seg/{objs['sid']}", root / "seg/real")
        os.symlink(root / f"seg/{victim['sid']}", root / f"seg/{objs['sid']}")
        os.write(done_w, b"1")

    def victim_attaches() -> object:
        # Stop the victim right after it found the segment alive (its last
        # look before opening the data file) and let the attacker swap.
        from vaspace.registry import ref as refmod

        real_init = refmod.Ref.__init__
        fired = []

        def pin_then_swap(self, kind, oid, *args) -> None:  # type: ignore[no-untyped-def]
            real_init(self, kind, oid, *args)
            if kind is segreg.SEG and oid == objs["sid"] and not fired:
                fired.append(oid)
                os.write(ask_w, b"1")
                os.read(done_r, 1)

        refmod.Ref.__init__ = pin_then_swap
        try:
            vaspace.vas_attach(0, objs["vid"], os.O_RDWR)
        except OSError as exc:
            return exc.errno
        finally:
            refmod.Ref.__init__ = real_init
        with vaspace.VAS(objs["vid"]).active():
            return bytes((ctypes.c_char * 6).from_address(SEG_BASE))

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = run_child(swap, uid=ATTACKER, timeout=20)
        os.write(w, b"ok" if out.error is None else repr(out.error).encode())
        os._exit(0)
    os.close(w)
    result = run_child(victim_attaches, uid=VICTIM, timeout=20).get()
    assert os.read(r, 1000) == b"ok"
    os.close(r)
    os.waitpid(pid, 0)
    assert result != b"secret"
    # The pinned directory is the attacker's own: its (zero) data, or a refusal.
    assert result in (b"\0" * 6, errno.EINVAL, errno.EIO)


def test_vas_directory_swapped_after_the_lock_is_refused(registry: str) -> None:
    """The same race one level up: the attacker's VAS directory becomes a link to the victim's.

    Once the victim holds the attacker's VAS lock, the attacker swaps the
    VAS directory for a link to the victim's own VAS; reading the segment
    links through it would map the victim's private segment under the
    attacker's VAS.
    """
    victim = as_user(VICTIM, _victim_objects, 0o600)
    objs = as_user(ATTACKER, _attacker_vas_with_segment)
    root = Path(registry)
    ask_r, ask_w = os.pipe()
    done_r, done_w = os.pipe()

    def swap() -> None:
        os.read(ask_r, 1)
        os.rename(root / f"vas/{objs['vid']}", root / "vas/real")
        os.symlink(root / f"vas/{victim['vid']}", root / f"vas/{objs['vid']}")
        os.write(done_w, b"1")

    def victim_attaches() -> object:
        from vaspace.registry import ref as refmod

        real_links = refmod.Ref.links
        fired = []

        def swap_then_links(self) -> list:  # type: ignore[no-untyped-def]
            if self.id == objs["vid"] and not fired:
                fired.append(self.id)
                os.write(ask_w, b"1")
                os.read(done_r, 1)
            return real_links(self)

        refmod.Ref.links = swap_then_links
        try:
            vaspace.vas_attach(0, objs["vid"], os.O_RDWR)
        except OSError as exc:
            return exc.errno
        return [m.segment for m in vaspace.proc_maps(0, objs["vid"])]

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = run_child(swap, uid=ATTACKER, timeout=20)
        os.write(w, b"ok" if out.error is None else repr(out.error).encode())
        os._exit(0)
    os.close(w)
    result = run_child(victim_attaches, uid=VICTIM, timeout=20).get()
    assert os.read(r, 1000) == b"ok"
    os.close(r)
    os.waitpid(pid, 0)
    assert result != ["v-seg"]
    # Read through the pinned directory: the attacker's own segment, or nothing.
    assert result in ([], ["bait"], errno.EINVAL, errno.EIO)


# ------------------------------------------------ issue 11: hostile registry entries
#
# Each test below performs an attack that worked before the registry was
# rewritten to pin directories and never follow, block on or recurse into
# what another user can plant (registry/fs.py).


def _precious_dir(parent: Path, owner: int) -> Path:
    """A private directory of ``owner`` outside the registry, with a file in it."""
    d = parent / f"precious-{owner}"
    d.mkdir()
    (d / "keep").write_text("mine")
    (d / "sub").mkdir()
    (d / "sub" / "keep2").write_text("mine too")
    for p in (d, d / "keep", d / "sub", d / "sub" / "keep2"):
        os.chown(p, owner, owner)
    d.chmod(0o700)
    return d


def _intact(d: Path) -> bool:
    return (d / "keep").read_text() == "mine" and (d / "sub" / "keep2").read_text() == "mine too"


def _dead_pid() -> tuple[int, int]:
    """(pid, start time) of a process that has exited (and been reaped)."""
    pid = os.fork()
    if pid == 0:
        time.sleep(0.05)
        os._exit(0)
    started = records.start_time(pid)
    os.waitpid(pid, 0)
    assert started is not None
    return pid, started


def test_reap_pending_does_not_follow_a_planted_symlink(registry: str, victim_process) -> None:
    """1.1: a symlink planted as pending/<dead pid>-<n> must not aim root's reaper.

    Every lazy attach ``vas_attach(other_pid, ...)`` reaps the request
    directories of dead processes; root makes one here.
    """
    precious = _precious_dir(Path(registry).parent, 0)
    pid, started = _dead_pid()
    link = Path(registry) / "pending" / f"{pid}-{started}"
    as_user(ATTACKER, os.symlink, precious, link)
    vid = vaspace.vas_create("open", 0o666)
    vaspace.vas_attach(victim_process[0], vid, os.O_RDONLY)
    assert _intact(precious)
    assert os.path.islink(link)  # left alone: not a directory, so not ours to reap
    assert _victim_attachments(victim_process) == [vid]


def test_reap_pending_removes_a_dead_process_directory_without_recursing(registry: str) -> None:
    """A dead process's request directory is reaped; links inside are unlinked, not followed."""
    precious = _precious_dir(Path(registry).parent, 0)
    pid, started = _dead_pid()
    d = Path(registry) / "pending" / f"{pid}-{started}"

    def plant() -> None:
        d.mkdir()
        os.symlink(precious, d / "7")
        os.symlink(precious / "keep", d / "8")

    as_user(ATTACKER, plant)
    assert records.reap_pending() == [d.name]
    assert not os.path.lexists(d) and _intact(precious)


@pytest.mark.parametrize("how", ["explicit", "automatic"])
def test_reap_orphans_does_not_follow_a_planted_symlink(registry: str, how: str) -> None:
    """1.1: a backdated symlink planted as vas/<N> must not aim the orphan reaper."""
    from vaspace.registry import objects

    precious = _precious_dir(Path(registry).parent, VICTIM)
    link = Path(registry) / "vas" / "999"

    def plant() -> None:
        os.symlink(precious, link)
        os.utime(link, (1, 1), follow_symlinks=False)

    as_user(ATTACKER, plant)

    def reap() -> object:
        rootmod.forget()
        if how == "explicit":
            return objects.reap_orphans(objects.VAS)
        return vaspace.vas_create("first-create-reaps", 0o600)  # the automatic, bounded reap

    run_child(reap, uid=VICTIM).get()
    assert objects.reap_orphans(objects.VAS) == []  # root's reaper refuses it too
    assert _intact(precious) and os.path.islink(link)


def test_reap_orphans_removes_a_half_made_directory(registry: str) -> None:
    """A directory left by a creator that died before publishing is reaped, links unfollowed."""
    from vaspace.registry import objects

    precious = _precious_dir(Path(registry).parent, 0)
    d = Path(registry) / "vas" / "77"
    d.mkdir()
    (d / "name").write_text("half")
    os.symlink(precious, d / "seg.1")
    os.utime(d, (1, 1))
    assert objects.orphans(objects.VAS) == [77]
    assert objects.reap_orphans(objects.VAS) == [77]
    assert not d.exists() and _intact(precious)


def _renameat2_exchange(dfd: int, a: str, b: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd_rel = dfd
    return libc.renameat2(at_fdcwd_rel, a.encode(), at_fdcwd_rel, b.encode(), 2)  # EXCHANGE


def _exchanger(root: Path, precious: Path, rounds_r: int, ack_w: int) -> int:
    """As a writer of the victim's VASes: in each one, swap a dir and a link to ``precious``."""
    swaps = 0
    while True:
        line = os.read(rounds_r, 32)
        if not line:
            return swaps
        vid = int(line)
        d = root / "vas" / str(vid)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        os.mkdir("x", dir_fd=dfd)
        fd = os.open("x/inner", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd)
        os.close(fd)
        os.symlink(str(precious), "y", dir_fd=dfd)
        os.write(ack_w, b"1")
        stop = time.monotonic() + 0.2
        while time.monotonic() < stop:
            if _renameat2_exchange(dfd, "x", "y") != 0:
                break  # the VAS is being deleted under us
            swaps += 1
        os.close(dfd)


def test_delete_is_not_redirected_by_exchanged_entries(registry: str) -> None:
    """1.2: a VAS's writer swaps a planted dir and a link to the owner's files during a delete.

    The owner's ``vas_delete`` must succeed (or fail with a clean OSError)
    and must never remove anything outside the registry.
    """
    root = Path(registry)
    os.chmod(root.parent, 0o755)
    precious = _precious_dir(root.parent, VICTIM)
    rounds_r, rounds_w = os.pipe()
    ack_r, ack_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rounds_w)
        os.close(ack_r)
        out = run_child(_exchanger, root, precious, rounds_r, ack_w, uid=ATTACKER, timeout=60)
        os.write(ack_w, b"S" + str(out.value if out.error is None else -1).encode())
        os._exit(0)
    os.close(rounds_r)
    os.close(ack_w)

    def owner() -> list[object]:
        results: list[object] = []
        for i in range(15):
            vid = vaspace.vas_create(f"v{i}", 0o666)
            os.write(rounds_w, f"{vid}".ljust(32).encode())
            os.read(ack_r, 1)
            time.sleep(0.01)
            results.append(errno_of(vaspace.vas_delete, vid))
            results.append(errno_of(vaspace.vas_find, f"v{i}"))
        return results

    try:
        results = run_child(owner, uid=VICTIM, timeout=60).get()
    finally:
        os.close(rounds_w)
    tail = os.read(ack_r, 100)
    os.close(ack_r)
    os.waitpid(pid, 0)
    assert tail.startswith(b"S") and int(tail[1:]) > 100, tail  # it really swapped
    assert results == ["ok", errno.ESRCH] * 15
    assert _intact(precious)


def _attacker_fifo_objects(root: Path, what: str) -> dict[str, int]:
    """As the attacker: a VAS and a segment of its own (mode 0o666), one file a FIFO."""
    objs = _attacker_vas_with_segment()
    target = {"vas-name": f"vas/{objs['vid']}/name", "seg-name": f"seg/{objs['sid']}/name",
              "region": f"seg/{objs['sid']}/region", "data": f"seg/{objs['sid']}/data",
              "lock": f"vas/{objs['vid']}/lock"}[what]
    with contextlib.suppress(FileNotFoundError):  # a short name has no name file: plant one
        os.unlink(root / target)
    os.mkfifo(root / target, 0o666)
    os.chmod(root / target, 0o666)  # so that only the file type stops the victim
    return objs


@pytest.mark.parametrize("what", ["vas-name", "seg-name", "region", "data", "lock"])
def test_fifos_never_hang_anyone(registry: str, what: str) -> None:
    """1.3: a FIFO in place of any registry file; every call returns, none blocks.

    Before, ``vas_ids``, ``vaspace ls`` and ``vas_seg_delete`` opened ``name``
    files blocking, and ``vas_seg_attach`` blocked on a FIFO ``region``
    while holding the registry lock.
    """
    from vaspace.cli import model

    root = Path(registry)
    objs = as_user(ATTACKER, _attacker_fifo_objects, root, what)
    mine = as_user(VICTIM, lambda: {"vid": vaspace.vas_create("mine", 0o600),
                                    "sid": vaspace.vas_seg_create("mine", SEG_BASE + 16 * PAGE,
                                                                  SEG_BASE + 17 * PAGE, 0o600)})

    def victim() -> dict[str, object]:
        out: dict[str, object] = {
            "vas_ids": vaspace.vas_ids(), "seg_ids": vaspace.seg_ids(),
            "snapshot": sorted(v.name for v in model.snapshot().vases),
            "attach": errno_of(vaspace.vas_attach, 0, objs["vid"], os.O_RDWR),
            "attach_ro": errno_of(vaspace.vas_attach, 0, objs["vid"], os.O_RDONLY),
            "seg_attach": errno_of(vaspace.vas_seg_attach, mine["vid"], objs["sid"], os.O_RDWR),
            "seg_delete": errno_of(vaspace.vas_seg_delete, mine["sid"]),
        }
        # The registry lock is free: another change goes through at once.
        out["create"] = errno_of(vaspace.vas_create, "after", 0o600)
        return out

    result = run_child(victim, uid=VICTIM, timeout=20)
    assert not result.hung
    out = result.get()
    assert mine["vid"] in out["vas_ids"] and out["seg_delete"] == "ok" and out["create"] == "ok"
    assert "mine" in out["snapshot"]
    if what in ("data", "lock", "region"):
        assert out["attach"] == out["attach_ro"] == errno.EIO, out
    if what == "region":
        assert out["seg_attach"] == errno.EIO, out
    # A name is read back from the name index, so a FIFO as the name file is
    # never even opened (only names too long to encode are read from it).


def test_fifo_slot_file_does_not_hang_proc_vas(registry: str, victim_process) -> None:
    """1.3: a FIFO at procs/<pid>-<start>.threads hangs neither proc_vas(pid) nor root."""
    pid = victim_process[0]
    vid = as_user(VICTIM, vaspace.vas_create, "victims-own", 0o600)
    as_user(VICTIM, vaspace.vas_attach, pid, vid, os.O_RDONLY)
    assert _victim_attachments(victim_process) == [vid]
    slots = Path(registry) / f"procs/{pid}-{records.start_time(pid)}.threads"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(slots)  # the attacker got there first in the real attack
    as_user(ATTACKER, os.mkfifo, slots, 0o666)
    for uid in (None, VICTIM):
        out = run_child(lambda: [(p.vid, p.name) for p in vaspace.proc_vas(pid)], uid=uid,
                        timeout=10)
        assert not out.hung
        assert out.get() == [(vid, "victims-own")]


def _junk_region(root: Path) -> dict[str, int]:
    objs = _attacker_vas_with_segment()
    (root / f"seg/{objs['sid']}/region").write_text("not a region at all")
    return objs


def test_junk_region_is_eio_in_calls_and_damaged_in_listings(registry: str) -> None:
    """1.4: junk in one's own region file breaks nobody else's listing."""
    from vaspace.cli import model

    root = Path(registry)
    objs = as_user(ATTACKER, _junk_region, root)
    vid = vaspace.vas_create("unrelated", 0o600)

    def victim() -> dict[str, object]:
        snap = model.snapshot()
        seg = snap.segs[objs["sid"]]
        return {
            "seg_region": errno_of(vaspace.vas_seg_getattr, objs["sid"]) == "ok"
            and errno_of(vaspace.seg_region, objs["sid"]),
            "damaged": seg.damaged,
            "json": model.seg_json(seg, {}),
            "vases": sorted(v.name for v in snap.vases),
            "attach": errno_of(vaspace.vas_attach, 0, objs["vid"], os.O_RDWR),
        }

    out = run_child(victim, uid=VICTIM).get()
    assert out["seg_region"] == errno.EIO
    assert out["damaged"] is True and out["json"]["damaged"] is True
    assert out["vases"] == ["shared", "unrelated"] and vid
    assert out["attach"] == errno.EIO


def test_seg_delete_uses_the_reverse_index(registry: str) -> None:
    """1.5: a segment knows the VASes holding it; stale or planted hints do not block a delete."""
    root = Path(registry)
    sid = vaspace.vas_seg_create("s", SEG_BASE, SEG_BASE + PAGE, 0o666)
    a = vaspace.vas_create("a", 0o666)
    b = vaspace.vas_create("b", 0o666)
    vaspace.vas_seg_attach(a, sid, os.O_RDWR)
    vaspace.vas_seg_attach(b, sid, os.O_RDONLY)
    assert sorted(os.listdir(root / f"seg/{sid}/vases")) == [str(a), str(b)]
    with pytest.raises(OSError) as e:
        vaspace.vas_seg_delete(sid)
    assert e.value.errno == errno.EBUSY
    assert "VAS 'a' (vid 1)" in str(e.value) and "VAS 'b' (vid 2)" in str(e.value)
    vaspace.vas_seg_detach(a, sid)
    vaspace.vas_delete(b)  # drops its hint with its links
    assert os.listdir(root / f"seg/{sid}/vases") == []
    # An attacker plants hints naming VASes that do not hold the segment.
    as_user(ATTACKER, os.symlink, "rw", root / f"seg/{sid}/vases/{a}")
    as_user(ATTACKER, os.symlink, "rw", root / f"seg/{sid}/vases/12345")
    vaspace.vas_seg_delete(sid)
    assert not (root / f"seg/{sid}").exists()


def test_truncation_by_a_writer_kills_mappers_with_sigbus(registry: str) -> None:
    """1.6, the documented behaviour: any user the mode lets write a segment can truncate it.

    That is inherent to shared file mappings (POSIX shm has it too); the
    README's threat model says so.  A process touching the lost pages dies
    of SIGBUS; this pins that down.
    """
    objs = as_user(VICTIM, _victim_objects, 0o666)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def mapper() -> None:
        import faulthandler

        faulthandler.disable()
        vaspace.vas_attach(0, objs["vid"], os.O_RDWR)
        vaspace.vas_switch(objs["vid"])
        assert bytes((ctypes.c_char * 6).from_address(SEG_BASE)) == b"secret"
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        ctypes.string_at(SEG_BASE, 1)  # the page is gone: SIGBUS

    def truncate() -> None:
        os.read(ready_r, 1)
        os.truncate(Path(registry) / f"seg/{objs['sid']}/data", 0)
        os.write(go_w, b"1")

    pid = os.fork()
    if pid == 0:
        out = run_child(truncate, uid=ATTACKER, timeout=20)
        os._exit(0 if out.error is None and not out.hung else 1)
    out = run_child(mapper, uid=VICTIM, timeout=20)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert out.signal == signal.SIGBUS, out
