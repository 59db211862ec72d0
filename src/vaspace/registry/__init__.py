"""The registry: VASes and segments as files (DESIGN.md §1).

Submodules: ``root`` (location, layout, safety), ``objects`` (what both kinds
share), ``vas``, ``seg`` and ``records`` (process attachments).
"""

from . import objects, records, root, seg, vas

__all__ = ["objects", "records", "root", "seg", "vas"]
