"""The machinery under ``vaspace.shared_memory``.

- ``fixed``: an ``mmap.mmap`` whose memory sits at a chosen address.
- ``placement``: first-fit placement in ``window.shm_range()``, under the
  registry lock.
- ``mappings``: this process's table of shared-memory mappings (one per
  segment, shared by every ``SharedMemory`` object of it).
- ``tracking``: ``track=True`` -- the creator's exit destroys the segment.
- ``stdlib``: the standard library's ``ShareableList`` and manager classes,
  re-bound to ``vaspace.shared_memory``.
- ``forksafe``: module locks that a forked child gets fresh.
"""
