"""The Ray backend: chunks of scoring and tracking work on Ray actors, one actor per worker.

The contract is ``rlpf.core.backend``'s (that of the local ``WorkerPool``): ``submit`` gives a Future
of an ``Outcome``, ``imap`` one Outcome per item in order, a dying worker fails only its chunk.

How it maps onto Ray:

* One actor per worker (``num_cpus=1`` each, so Ray spreads them one per CPU over the cluster). Its
  constructor runs the initializer once: the world's compiled model and the tracker are built once
  per actor and live there for every chunk it runs, never shipped per task.
* Each actor runs one chunk at a time, sent by a dispatcher thread in this process; so when an actor
  dies (its process SIGKILLed, a segfault in MuJoCo, a node lost) the backend knows the one chunk it
  held: that chunk's Outcome has ``died=True``, a replacement actor is started, and it serves the next
  chunks. Actors are not restarted by Ray (``max_restarts=0``) and tasks are not retried
  (``max_task_retries=0``): a clip that crashes the simulator natively would crash its retry too, so
  it is isolated, excluded and counted instead.
* A chunk is pickled in the caller at ``submit`` (as the local pool does: a bad argument raises there)
  and sent as one bytes object; Ray moves large ones through its object store. Callers size chunks
  to amortize that transfer (``Tracker.track``: about four chunks per worker).
* Connecting: ``address`` (``host:port`` of a head node's GCS, ``auto``, or ``ray://host:port``), else
  ``RAY_ADDRESS``, else a Ray already initialized in this process (a test's), else a local Ray of
  ``workers`` CPUs is started (``ray.init(num_cpus=workers, include_dashboard=False)``), which lives
  until this process exits (Ray shuts it down then): later backends of the same process reuse it. A
  ``host:port`` is probed with a TCP connect first (``CONNECT_TIMEOUT_S``), so an unreachable cluster
  is an error naming the address within seconds instead of Ray's own minute of retries.
"""
from __future__ import annotations

import collections
import os
import pickle
import socket
import threading
import traceback
from concurrent.futures import Future
from multiprocessing.reduction import ForkingPickler
from typing import Callable, Sequence

import ray

from rlpf.core.errors import BackendError
from rlpf.core.pool import ChunkedMap, Outcome, PoolError, STARTUP_DEATHS, _picklable

CONNECT_TIMEOUT_S = 3.0
"""How long the TCP probe of a ``host:port`` address waits: a reachable head answers on loopback or
a LAN in milliseconds; an unreachable one otherwise costs Ray's own ~60 s of GCS retries."""

READY_TIMEOUT_S = 300.0
"""How long a new actor may take to start and run its initializer (a node pulling its environment,
a tracker loading a policy) before the backend gives up on it."""

POLL_S = 0.05
"""The dispatcher's wait between looks at its queue while chunks run (ray.wait's timeout)."""


@ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
class _Actor:
    """One worker: runs the initializer once, then chunks, one at a time."""

    def __init__(self, initializer, initargs):
        from rlpf.core.threads import configure_worker_threads

        configure_worker_threads()
        self.init_error = None
        try:
            if initializer is not None:
                initializer(*initargs)
        except BaseException as e:  # noqa: BLE001 - reported by ready(); the backend breaks with it
            self.init_error = (f"{type(e).__name__}: {e}", traceback.format_exc())

    def ready(self):
        """``("ready", pid)`` or ``("init_error", message, traceback)``."""
        if self.init_error is not None:
            return ("init_error", *self.init_error)
        return ("ready", os.getpid())

    def run(self, blob: bytes):
        try:
            fn, args = pickle.loads(blob)
            return ("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - this chunk's failure, the actor goes on
            return ("error", f"{type(e).__name__}: {e}", traceback.format_exc(), _picklable(e))


def connect(address: str | None, workers: int) -> None:
    """Make sure this process is connected to a Ray cluster (module docstring: which one)."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _probe(address)  # a wrong address is an error even when this process is connected already
    if ray.is_initialized():
        return
    if address is None:
        # "local": a new instance, never a stale `ray start` cluster Ray would otherwise look for
        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001 - ConnectionError, RuntimeError...: the user's address, named
        raise BackendError(f"ray backend: cannot connect to the Ray cluster at {address!r}: {type(e).__name__}: {e}") from None


def _probe(address: str) -> None:
    """A ``host:port`` (or ``ray://host:port``) that nothing listens on: BackendError naming it, fast."""
    hostport = address.split("://", 1)[1] if "://" in address else address
    if address == "auto" or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        port_n = int(port)
    except ValueError:
        raise BackendError(f"ray backend: address {address!r}: the port {port!r} is not a number "
                           "(give host:port of the head node, e.g. 127.0.0.1:6379)") from None
    try:
        socket.create_connection((host.strip("[]"), port_n), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise BackendError(f"ray backend: cannot reach the Ray cluster at {address!r} ({e}); start one with "
                           "`ray start --head` and give its address, or leave --address / RAY_ADDRESS "
                           "unset to start a local Ray") from None


class RayBackend(ChunkedMap):
    """``workers`` Ray actors running chunks (module docstring: mapping, connecting)."""

    def __init__(self, workers: int, initializer: Callable | None = None, initargs: Sequence = (),
                 address: str | None = None, name: str = "rlpf-worker"):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise PoolError(f"workers={workers!r}: the ray backend needs a positive integer number of actors")
        connect(address, workers)
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < workers:  # actors of one CPU each beyond the cluster's CPUs would wait forever
            raise BackendError(f"ray backend: {workers} workers need {workers} CPUs, the Ray cluster has {cpus:g}; "
                               "give fewer workers or add nodes")
        self.size, self.name = workers, name
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: collections.deque = collections.deque()  # (blob, future)
        self._closing = False
        self._broken: str | None = None
        self.restarts = 0
        """Actors started to replace dead ones."""
        self._actors: list = []
        self._pids: dict = {}  # actor -> pid of its process
        starting = [self._new_actor() for _ in range(workers)]
        for actor, ready in starting:
            self._await_ready(actor, ready)
        if self._broken:
            self._kill_all()
            raise PoolError(f"{name} ray backend: {self._broken}")
        self._idle = list(self._actors)
        self._running: dict = {}  # ObjectRef -> (actor, future)
        self._thread = threading.Thread(target=self._manage, name=f"{name}-ray-dispatcher", daemon=True)
        self._thread.start()

    # ---- public (the WorkerPool contract) ----------------------------------------------------------
    def submit(self, fn: Callable, *args) -> Future:
        blob = bytes(ForkingPickler.dumps((fn, args)))
        future: Future = Future()
        with self._lock:
            if self._closing:
                raise PoolError(f"{self.name} ray backend: closed, it runs nothing more")
            if self._broken:
                raise PoolError(f"{self.name} ray backend: {self._broken}")
            self._pending.append((blob, future))
        self._wake.set()
        return future

    @property
    def pids(self) -> list[int]:
        """Process ids of the current actors (on their nodes: this machine's with a local Ray)."""
        return [self._pids[a] for a in self._actors if a in self._pids]

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> "RayBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- actors -------------------------------------------------------------------------------------
    def _new_actor(self):
        actor = _Actor.remote(self._initializer, self._initargs)
        return actor, actor.ready.remote()

    def _await_ready(self, actor, ready) -> bool:
        """Wait for a new actor's initializer; a failing initializer (or repeated deaths) breaks the backend."""
        deaths = 0
        while True:
            try:
                msg = ray.get(ready, timeout=READY_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                self._broken = f"a Ray actor did not start within {READY_TIMEOUT_S:g} s"
                ray.kill(actor)
                return False
            except ray.exceptions.RayActorError as e:
                deaths += 1
                if deaths >= STARTUP_DEATHS:
                    self._broken = f"{STARTUP_DEATHS} Ray actors in a row died before running anything (last: {e})"
                    return False
                actor, ready = self._new_actor()
                continue
            if msg[0] == "init_error":
                self._broken = f"a worker's initializer failed: {msg[1]}\n\nworker traceback:\n{msg[2]}"
                ray.kill(actor)
                return False
            self._actors.append(actor)
            self._pids[actor] = msg[1]
            return True

    def _kill_all(self) -> None:
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self._actors, self._pids = [], {}

    # ---- dispatcher thread --------------------------------------------------------------------------
    def _manage(self) -> None:
        try:
            while True:
                with self._lock:
                    closing = self._closing
                if closing:
                    break
                self._dispatch()
                if self._running:
                    done, _ = ray.wait(list(self._running), num_returns=1, timeout=POLL_S)
                    for ref in done:
                        self._finish(ref)
                else:
                    self._wake.wait(POLL_S * 20)
                    self._wake.clear()
        except BaseException as e:  # a bug here must not leave submitters waiting forever
            with self._lock:
                self._broken = f"its dispatcher thread failed: {type(e).__name__}: {e}"
            raise
        finally:
            self._shutdown()

    def _dispatch(self) -> None:
        while self._idle:
            with self._lock:
                if not self._pending:
                    return
                blob, future = self._pending.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            actor = self._idle.pop()
            self._running[actor.run.remote(blob)] = (actor, future)

    def _finish(self, ref) -> None:
        actor, future = self._running.pop(ref)
        try:
            msg = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # its process died under the chunk: only this chunk fails
            self._replace(actor)
            future.set_result(Outcome(error=f"a worker process died (Ray actor lost: {_first_line(e)}) while "
                                            "running this chunk (killed, or crashed in native code)", died=True))
            return
        except Exception as e:  # noqa: BLE001 - e.g. the result could not be stored: this chunk's failure
            self._idle.append(actor)
            future.set_result(Outcome(error=f"the chunk's result cannot be sent back: {type(e).__name__}: {e}"))
            return
        self._idle.append(actor)
        if msg[0] == "ok":
            future.set_result(Outcome(value=msg[1]))
        else:
            future.set_result(Outcome(error=msg[1], traceback=msg[2], exception=msg[3]))

    def _replace(self, actor) -> None:
        self._actors.remove(actor)
        self._pids.pop(actor, None)
        if self._await_ready(*self._new_actor()):
            self._idle.append(self._actors[-1])
            self.restarts += 1
        else:  # no worker can start: every queued chunk fails with the reason, and every later submit
            with self._lock:
                pending, self._pending = list(self._pending), collections.deque()
            for _, future in pending:
                if future.set_running_or_notify_cancel():
                    future.set_result(Outcome(error=f"{self.name} ray backend: {self._broken}"))

    def _shutdown(self) -> None:
        with self._lock:
            pending, self._pending = list(self._pending), collections.deque()
        closed = Outcome(error=f"{self.name} ray backend: closed before this chunk finished")
        for _, future in pending:
            if future.set_running_or_notify_cancel():
                future.set_result(closed)
        for _, future in self._running.values():
            future.set_result(closed)
        self._running = {}
        self._kill_all()  # no actor outlives the backend (busy ones are killed mid-chunk, as locally)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
