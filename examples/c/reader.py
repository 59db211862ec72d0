"""reader.py: read what writer.c left in VAS "shared-demo", then delete it.

Run ``./writer "a message"`` first; this prints the message.  The same
objects, the same sharing rule and the same addresses serve C and Python.
"""

from __future__ import annotations

import ctypes
import os

import vaspace

SEG_START = 0x4000_0000_0000


def main() -> None:
    vid = vaspace.vas_find("shared-demo")
    sid = vaspace.vas_seg_find("shared-demo-seg")
    vaspace.vas_attach(0, vid, os.O_RDONLY)
    vaspace.vas_switch(vid)
    try:
        text = ctypes.string_at(SEG_START).decode()
    finally:
        vaspace.vas_switch(0)
    print(f"reader: {text}")
    # Clean up in order: detach, delete the VAS, delete the segment.
    vaspace.vas_detach(0, vid)
    vaspace.vas_delete(vid)
    vaspace.vas_seg_delete(sid)


if __name__ == "__main__":
    main()
