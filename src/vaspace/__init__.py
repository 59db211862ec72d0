"""vaspace: first-class virtual address spaces for Linux, in user space.

The RFC's 16 calls (``vas_create`` ... ``vas_seg_setattr``) with its errno,
the libmvas aliases (``segment_*``), and a Pythonic layer (``VAS``,
``Segment``).  See the README for the model and where it differs from the
RFC.
"""

from . import api
from ._ntuples import Attr, Holder, ProcMap, ProcVas, SegLink
from .api import *  # noqa: F403 - the RFC's names are the public API
from .spaces import VAS, Segment

__version__ = "0.1.0"
__all__ = [*api.__all__, "VAS", "Attr", "Holder", "ProcMap", "ProcVas", "SegLink", "Segment"]
