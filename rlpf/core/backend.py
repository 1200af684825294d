"""Where scoring and tracking chunks run: a backend interface and the factory that picks one.

Two backends, one contract (that of ``rlpf.core.pool.WorkerPool``, which is the local one):

* ``submit(fn, *args)`` queues one chunk (a picklable module-level ``fn`` and its arguments, pickled
  now: a bad argument raises in the caller) and returns a ``concurrent.futures.Future`` of an
  ``Outcome`` - never an exception for a failed chunk.
* A chunk's exception is its ``Outcome.error``; a worker that dies while running a chunk fails only
  that chunk (``Outcome.died``) and a fresh worker serves the chunks after it.
* ``imap`` / ``map`` split items into chunks and give one ``Outcome`` per item, in item order.
* ``initializer(*initargs)`` runs once in every worker (replacements included), before its first chunk:
  what a worker builds there (a world's compiled model, a tracker) is built once per worker, never
  shipped with each chunk.
* ``close()`` (or leaving the ``with`` block) fails the chunks not done yet and stops the workers.

``local`` (default): ``WorkerPool``, processes of this machine. ``ray``: ``rlpf.core.ray_backend.RayBackend``,
one Ray actor per worker, on the Ray cluster at ``address`` (else ``RAY_ADDRESS``, else a local Ray
started here). ray is imported only when the ray backend is made: ``import rlpf`` and the local path
never import it (it is an optional extra, ``pip install -e .[ray]``).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from rlpf.core.errors import BackendError
from rlpf.core.pool import Outcome

BACKENDS = ("local", "ray")
"""Backend names ``make_backend`` (``--backend``, the ``backend`` config fields) accepts."""


class Backend(Protocol):
    """What scoring and tracking need from a backend (module docstring: the semantics)."""

    size: int
    """Workers."""

    def submit(self, fn: Callable, *args) -> Any:  # a concurrent.futures.Future of an Outcome
        ...

    def imap(self, fn: Callable, items: Iterable, chunksize: int = 1) -> Iterator[Outcome]:
        ...

    def map(self, fn: Callable, items: Iterable, chunksize: int = 1) -> list[Outcome]:
        ...

    def close(self) -> None:
        ...

    def __enter__(self): ...

    def __exit__(self, *exc) -> None: ...


def check_backend(name) -> str:
    """``name`` if it names a backend; else BackendError listing them (before any work is done)."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)} "
                           "(local: processes of this machine; ray: actors on a Ray cluster)")
    return name


def make_backend(name: str = "local", workers: int = 2, initializer: Callable | None = None,
                 initargs: Sequence = (), address: str | None = None, label: str = "rlpf-worker") -> Backend:
    """A started backend of ``workers`` workers, each having run ``initializer(*initargs)`` once.

    ``name``: ``local`` or ``ray``. ``address`` (ray only): a Ray cluster (``host:port``, ``auto`` or
    ``ray://host:port``); default ``RAY_ADDRESS``, else a local Ray of ``workers`` CPUs is started
    (``ray.init(num_cpus=workers, include_dashboard=False)``). An address the local backend would
    ignore is refused rather than silently dropped. ``label`` names the workers (process titles)."""
    check_backend(name)
    if name == "local":
        if address is not None:
            raise BackendError(f"address {address!r} is for the ray backend; the local backend runs on this machine")
        from rlpf.core.pool import WorkerPool

        return WorkerPool(workers, initializer=initializer, initargs=initargs, name=label)
    try:
        from rlpf.core.ray_backend import RayBackend
    except ImportError as e:
        raise BackendError(f"the ray backend needs ray ({e}): pip install -e '.[ray]' (ray==2.60.0)") from None
    return RayBackend(workers, initializer=initializer, initargs=initargs, address=address, name=label)


__all__ = ["BACKENDS", "Backend", "BackendError", "Outcome", "check_backend", "make_backend"]
