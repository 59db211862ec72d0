"""Segment clone vs rebuilding the same index, vs ``cp --sparse=always`` (issue 16).

Several worlds at one address need version 2 of an index beside version 1.
Without clones, version 2 is rebuilt from scratch: a fresh heap and a Dict of
1M entries inserted one by one.  With ``vas_seg_clone`` it is a copy of the
segment's written extents (a reflink where the filesystem has one), and the
clone's heap opens as it is.  The same run also copies the segment's data
file with ``cp --sparse=always``, the best a user could do by hand (and an
unsafe one: nothing stops a writer meanwhile).

Timed: the rebuild (format + 1M inserts, in a VAS switched into the
segment), ``vas_seg_clone`` of the built segment, and ``cp``.  Not timed:
deleting clones and copies between runs, and one check that the clone
opens and holds every entry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from . import common, machine
from .common import MiB, Section


def _built(vaspace, vid: int, sid: int, items: dict) -> float:  # type: ignore[no-untyped-def]
    """Rebuild the index in segment ``sid`` from scratch; seconds taken."""
    from vaspace.heap import Dict, Heap

    vaspace.vas_attach(0, vid, os.O_RDWR)
    vaspace.vas_switch(vid)
    try:
        seg = vaspace.Segment(sid)
        t0 = time.perf_counter()
        with Heap.format(seg.view()) as h:
            Dict(h, root="index").update(items)
        took = time.perf_counter() - t0
    finally:
        vaspace.vas_switch(0)
        vaspace.Segment(sid).release_views()
        vaspace.vas_detach(0, vid)
    return took


def _entries_in_clone(vaspace, sid: int) -> int:  # type: ignore[no-untyped-def]
    from vaspace.heap import Dict, Heap

    vid = vaspace.vas_create("check", 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDONLY)
    vaspace.vas_attach(0, vid, os.O_RDONLY)
    vaspace.vas_switch(vid)
    try:
        with Heap.open(vaspace.Segment(sid).view()) as h:
            n = len(Dict.open(h, "index"))
    finally:
        vaspace.vas_switch(0)
        vaspace.Segment(sid).release_views()
        vaspace.vas_detach(0, vid)
        vaspace.vas_delete(vid)
    return n


def _fs_type(path: str) -> str:
    """The filesystem type of the mount holding ``path`` (tmpfs: no reflink, so the
    clone is copy_file_range over the written extents)."""
    best, kind = "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mnt, fstype, *_ = line.split()
            if path.startswith(mnt.rstrip("/") + "/") and len(mnt) > len(best):
                best, kind = mnt, fstype
    return f"{kind} ({best})"


def run(smoke: bool = False) -> Section:
    """Measure rebuild, clone and cp; returns the section for the report."""
    n = 20_000 if smoke else 1_000_000
    size = (64 if smoke else 1024) * MiB
    runs = 5  # the report's rule: the median of at least five runs
    sec = Section("clone", "Segment clone vs rebuilding the index vs cp --sparse=always")
    items = {f"key{i}": i for i in range(n)}
    with common.temp_registry():
        import vaspace

        start = vaspace.window()[0]
        vid = vaspace.vas_create("db", 0o600)
        sid = vaspace.vas_seg_create("index", start, start + size, 0o600)
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
        rebuild = [_built(vaspace, vid, sid, items) * 1e3 for _ in range(runs)]
        data = f"{vaspace.registry_root()}/seg/{sid}/data"
        st = os.stat(data)
        sec.facts.update(entries=n, segment_bytes=size, written_bytes=st.st_blocks * 512)

        clone_ms = []
        for i in range(runs):
            t0 = time.perf_counter()
            copy = vaspace.vas_seg_clone(sid, f"index-v{i + 2}")
            clone_ms.append((time.perf_counter() - t0) * 1e3)
            if i == 0:
                sec.facts["clone_entries"] = _entries_in_clone(vaspace, copy)
                cst = os.stat(f"{vaspace.registry_root()}/seg/{copy}/data")
                sec.facts["clone_allocated_bytes"] = cst.st_blocks * 512
            vaspace.vas_seg_delete(copy)

        cp_ms = []
        cp = shutil.which("cp") or "cp"
        with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="vaspace-bench-cp-") as tmp:
            for i in range(runs):
                dst = os.path.join(tmp, f"copy{i}")
                t0 = time.perf_counter()
                subprocess.run([cp, "--sparse=always", data, dst], check=True)
                cp_ms.append((time.perf_counter() - t0) * 1e3)
                os.unlink(dst)

        sec.add("rebuild", f"rebuild: Heap.format + Dict.update of {n:,} entries", "ms", rebuild)
        sec.add("clone", "vas_seg_clone of the built segment", "ms", clone_ms,
                baseline="rebuild")
        sec.add("cp", "cp --sparse=always of the segment's data file", "ms", cp_ms,
                baseline="rebuild")
        speedup = sec.get("rebuild").median / sec.get("clone").median
        sec.facts["clone_speedup_vs_rebuild"] = round(speedup, 1)
        sec.facts["target_10x"] = "MET" if speedup >= 10 else "MISSED"
        d = machine.describe()
        sec.facts["machine"] = f"{d['cpu']}, {d['cpus']} CPUs, {d['kernel']}"
        sec.facts["registry_fs"] = _fs_type(vaspace.registry_root())
    return sec


def markdown(sec: Section) -> list[str]:
    """The section's part of BENCHMARKS.md (``python -m bench`` appends it)."""
    f = sec.facts
    lines = ["## Segment clone (issue 16): clone vs rebuild vs cp", ""]
    if "clone_speedup_vs_rebuild" in f:
        lines += [f"`vas_seg_clone` is **{f['clone_speedup_vs_rebuild']}x** faster than "
                  f"rebuilding the index (target 10x: **{f.get('target_10x', '?')}**). "
                  f"Registry filesystem: {f.get('registry_fs', '?')}; "
                  f"{f.get('machine', '')}.", ""]
    return [*lines, *common.figures_markdown(sec), ""]


if __name__ == "__main__":
    sys.exit(common.section_main(run, __doc__, markdown=markdown))
