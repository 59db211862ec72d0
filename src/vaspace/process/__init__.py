"""The process half: window, parking, attachments and switches (DESIGN.md §2-3).

Submodules: ``space`` (reservations and mappings), ``state`` (per-process
state, fork), ``attach``, ``switch`` and ``procfs``.
"""

from . import attach, procfs, space, state, switch

__all__ = ["attach", "procfs", "space", "state", "switch"]
