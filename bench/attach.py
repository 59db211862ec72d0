"""Attach time: a populated segment made usable, against reading its bytes from a file.

One VAS holds one segment of ``size`` bytes (1 GiB by default), every page
written once beforehand, so its data sit in tmpfs.  Timed per run:

  * ``vas_attach`` alone (open the files, map them in the parking range);
  * attach + ``vas_switch`` in + reading one byte of every page (the first
    touch faults the page-table entries in: that is the real cost);
  * the baseline: reading the same number of bytes from a file of the same
    size into a buffer that is already allocated and touched (``readinto``),
    i.e. what a process without shared mappings would pay to get the data.

Detaching between runs is not timed.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from . import common
from .common import GiB, MiB, Section


def run(smoke: bool = False) -> Section:
    """Measure attach, attach + first touch, and a file read of the same bytes."""
    runs = 5 if smoke else 7
    size = 4 * MiB if smoke else 1 * GiB
    sec = Section("attach", f"Attach + first touch of a {common.fmt_size(size)} populated "
                  "segment vs reading it from a file")
    sec.facts["size"] = size
    with common.temp_registry() as base:
        import vaspace

        w = vaspace.window()[0]
        vid = vaspace.vas_create("attach", 0o600)
        sid = vaspace.vas_seg_create("attach", w, w + size, 0o600)
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        vaspace.vas_switch(vid)
        common.touch_write(common.u8_at(w, size))
        vaspace.vas_switch(0)
        vaspace.vas_detach(0, vid)
        arr = common.u8_at(w, size)

        attach_ns, touch_ns, faults = [], [], []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            vaspace.vas_attach(0, vid, os.O_RDWR)
            attach_ns.append(time.perf_counter_ns() - t0)
            vaspace.vas_detach(0, vid)

            f0 = common.minflt()
            t0 = time.perf_counter_ns()
            vaspace.vas_attach(0, vid, os.O_RDWR)
            vaspace.vas_switch(vid)
            common.touch_read(arr)
            touch_ns.append(time.perf_counter_ns() - t0)
            faults.append(common.minflt() - f0)
            vaspace.vas_switch(0)
            vaspace.vas_detach(0, vid)

        # The baseline: the same bytes from a tmpfs file into a ready buffer.
        fd = common.shm_file(base, "attach-file", size)
        buf = np.ones(size, dtype=np.uint8)  # allocated and touched before timing
        view = memoryview(buf)
        read_ns = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            got = 0
            while got < size:
                got += os.preadv(fd, [view[got:]], got)
            read_ns.append(time.perf_counter_ns() - t0)
        os.close(fd)

        sec.add("read", f"read {common.fmt_size(size)} from a tmpfs file into a ready buffer",
                "ns", read_ns)
        sec.add("attach", "vas_attach alone (no data touched)", "ns", attach_ns,
                baseline="read")
        sec.add("attach_touch", "vas_attach + vas_switch + read one byte per page", "ns",
                touch_ns, baseline="read")
        sec.facts["faults_first_touch"] = int(np.median(faults))
        sec.facts["pages"] = size // common.PAGE
    return sec


if __name__ == "__main__":
    sys.exit(common.section_main(run, __doc__))
