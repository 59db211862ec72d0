"""The machinery under ``vaspace.shared_memory``.

- the blocks themselves are ``vaspace._core.FixedMap`` exporters (a file mapped
  at a fixed address in the shared-memory range, with an export count).
- ``placement``: first-fit placement in ``window.shm_range()``, under the
  registry lock.
- ``mappings``: this process's table of shared-memory mappings (one per
  segment, shared by every ``SharedMemory`` object of it).
- ``tracking``: ``track=True`` -- the creator's exit destroys the segment.
- ``stdlib``: the standard library's ``ShareableList`` and manager classes,
  re-bound to ``vaspace.shared_memory``.
- ``forksafe``: module locks that a forked child gets fresh.
"""
