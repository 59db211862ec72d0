"""``python -m vaspace.cli``: the same as the ``vaspace`` command."""

from . import main

main()
