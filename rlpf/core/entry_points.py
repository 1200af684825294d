"""One way to find a plugin by name among installed packages' entry points (rewards, worlds, trackers).

Registries consult entry points only on a miss, so a broken third-party package never breaks
``import rlpf`` or the names that do not involve it: unreadable metadata warns and finds nothing;
an entry point that fails to load (or to pass the registry's check) warns and raises the registry's
own error naming it.
"""
from __future__ import annotations

import importlib.metadata
import warnings
from typing import Any, Callable


def load_entry_point(group: str, name: str, what: str, error: Callable[[str], Exception],
                     convert: Callable[[Any], Any] = lambda obj: obj, entry_points=None) -> Any | None:
    """``convert(loaded object)`` of the entry point ``name`` in ``group``, or None when there is none.

    ``what`` names the kind in messages ("world", "tracker", ...); ``error(message)`` builds the
    exception raised when the entry point fails to load or ``convert`` raises. ``entry_points``:
    what to search (default: the installed ones of ``group``).
    """
    if entry_points is None:
        try:
            entry_points = importlib.metadata.entry_points(group=group)
        except Exception as e:  # a broken distribution's metadata
            warnings.warn(f"rlpf: could not read '{group}' entry points: {e}", stacklevel=3)
            return None
    for ep in entry_points:
        if ep.name != name:
            continue
        try:
            return convert(ep.load())
        except Exception as e:
            msg = f"entry point {ep.value!r} failed to load: {type(e).__name__}: {e}"
            warnings.warn(f"rlpf: {what} {name!r}: {msg}", stacklevel=3)
            raise error(msg) from None
    return None
