"""The registry is plain files that ``ls`` and ``cat`` can read (documented layout)."""

from __future__ import annotations

import os
import subprocess

import vaspace as v
from vaspace_testing import SEG_BASE, MiB


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def test_layout_readable_with_ls_and_cat(registry: str) -> None:
    vid = v.vas_create("my/db", 0o640)
    sid = v.vas_seg_create("table", SEG_BASE, SEG_BASE + 2 * MiB, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    assert set(sh("ls", registry).split()) >= {"vas", "seg", "names", "procs", "pending"}
    # the index link spells the name (percent-encoded); only a name too long
    # for that (stored by hash) has a name file
    assert sh("readlink", f"{registry}/vas/{vid}/index") == "my%2Fdb\n"
    assert sh("readlink", f"{registry}/seg/{sid}/index") == "table\n"
    assert not os.path.lexists(f"{registry}/vas/{vid}/name")
    long_vid = v.vas_create("é" * 100, 0o600)  # 600 bytes encoded: hashed
    assert sh("cat", f"{registry}/vas/{long_vid}/name") == "é" * 100
    assert sh("cat", f"{registry}/seg/{sid}/region") == f"{SEG_BASE:x}-{SEG_BASE + 2 * MiB:x}\n"
    # mode, user and group are the real metadata of the attribute files
    lock = sh("stat", "-c", "%a %u %g", f"{registry}/vas/{vid}/lock").split()
    assert lock == ["640", str(os.geteuid()), str(os.getegid())]
    data = sh("stat", "-c", "%a %s", f"{registry}/seg/{sid}/data").split()
    assert data == ["600", str(2 * MiB)]
    # the attached segment and the name index are symlinks ls shows
    assert f"seg.{sid} -> rw" in sh("ls", "-l", f"{registry}/vas/{vid}")
    assert f"my%2Fdb -> {vid}" in sh("ls", "-l", f"{registry}/names/vas")
    # the data file is sparse until touched
    assert os.stat(f"{registry}/seg/{sid}/data").st_blocks == 0


def test_attachment_records_visible(registry: str) -> None:
    vid = v.vas_create("att", 0o600)
    v.vas_attach(0, vid, os.O_RDONLY)
    listing = sh("ls", "-l", f"{registry}/procs")
    assert f"{vid}.{os.getpid()} -> " in listing and ":ro" in listing
    v.vas_detach(0, vid)
    assert f"{vid}.{os.getpid()}" not in sh("ls", f"{registry}/procs").split()
    # the published thread slots (who is inside which VAS) stay until we exit
    assert f"{os.getpid()}-" in sh("ls", f"{registry}/procs")


def test_rm_of_name_link_deletes_object(registry: str) -> None:
    """Objects are files: removing the name link is deleting the object."""
    vid = v.vas_create("rm-me", 0o600)
    os.unlink(f"{registry}/names/vas/rm-me")
    assert vid not in v.vas_ids()


def test_orphans_of_a_crashed_create_are_invisible_and_reaped(registry: str) -> None:
    from vaspace.registry import objects
    from vaspace.registry.vas import VAS

    os.mkdir(f"{registry}/vas/77")  # what a create killed before publishing leaves
    with open(f"{registry}/vas/77/name", "w") as f:
        f.write("half")
    assert 77 not in v.vas_ids()
    assert objects.reap_orphans(VAS, min_age=0) == [77]
    assert not os.path.exists(f"{registry}/vas/77")
