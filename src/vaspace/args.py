"""Integer arguments taken by their value, never by what their class says.

An ``int`` subclass can override ``__format__``, ``__str__``, ``__mod__``,
the comparisons and ``&``: checked one way and formatted into a registry path
another, it could pass the checks and then name another object's directory
or write a different region or mode from the one that was checked.  Every
public call that takes an int (an id, a pid, an address, a size, a mode)
therefore converts it once with :func:`exact_int` and uses only the result.
"""

from __future__ import annotations


def exact_int(value: object) -> int | None:
    """The exact ``int`` value of ``value``, or None if it is no int (or a bool).

    ``int.__int__`` reads the value itself: it calls none of the subclass's
    methods.
    """
    if value.__class__ is int:
        return value  # type: ignore[return-value]  # the common case, no call
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return int.__int__(value)
