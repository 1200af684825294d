"""rlpf's one pool of worker processes: chunks of work in, one outcome per chunk out, and a worker
that dies fails only the chunk it was running.

Scoring (``rlpf.finetune.feedback``), tracking (``rlpf.judge.tracking.Tracker.track``) and dataset
simulation (``rlpf.data.motion_data.make_dataset``) all run here. Why not the standard library's pools:
``concurrent.futures.ProcessPoolExecutor`` marks itself broken when any worker dies and fails every
pending future, so one clip that crashes MuJoCo (or a worker the OOM killer picks) would fail a whole
batch; ``multiprocessing.Pool`` replaces a dead worker but loses its task, so ``imap`` waits forever.

Semantics:

* ``submit(fn, *args)`` queues one chunk (a picklable module-level ``fn`` and its arguments) and
  returns a ``concurrent.futures.Future`` whose result is an ``Outcome``: the value, or why the chunk
  failed. It never raises for a failed chunk; ``Outcome.unwrap()`` does, for callers that want that.
* An exception inside a chunk is that chunk's failure (``Outcome.error``: ``"Type: message"``, with
  the worker's traceback and, when it can be pickled, the exception itself); the worker goes on.
* A worker that dies (SIGKILL, a segfault, ``os._exit``) fails only the chunk it held
  (``Outcome.died``) - each worker runs one chunk at a time over its own pipe, so the pool knows which
  one - the other workers' chunks complete, and a fresh worker replaces it for later chunks.
  Workers that die before running anything three times in a row (a crashing initializer) break the
  pool: its chunks then fail with that reason instead of respawning forever.
* ``imap`` / ``map`` split items into chunks and give one ``Outcome`` per item, in item order.
* ``initializer(*initargs)`` runs once in every worker (including replacements) after it has set
  one torch thread (``rlpf.core.threads.configure_worker_threads``); an initializer that raises breaks
  the pool with its traceback as the reason. Workers ignore Ctrl-C: the parent decides, and
  ``close`` stops them.
* ``close()`` (or leaving the ``with`` block) fails chunks not yet done with "the pool was closed",
  stops idle workers, kills busy ones and waits for all of them: no worker outlives the pool.

Start method: **forkserver** (spawn where there is none, e.g. Windows). Not ``fork``: the pools are
created by processes that already run torch, whose OpenMP thread pool does not survive a fork - a
forked child that touches torch can deadlock on a lock a parent thread held at fork time - and so
can any other thread the parent runs (TensorBoard's event writer, for one). The fork server is a fresh single-threaded process that
imports ``FORKSERVER_PRELOAD`` once and forks each worker from there, so a worker (and a replacement
for a dead one) starts in milliseconds of fork plus whatever its chunks import beyond that, instead of
spawn's fresh interpreter importing numpy and MuJoCo again. Measured on the 2-core box (load ~1, 3 repeats each):
a 2-worker pool whose workers have imported numpy, MuJoCo and rlpf's reward and tracking modules is
ready in 0.08 s with forkserver once the server runs (0.2 s for the first pool of a process, which
starts the server) and in 0.2 s with spawn.
"""
from __future__ import annotations

import collections
import itertools
import multiprocessing
import multiprocessing.connection
import pickle
import signal
import threading
import traceback
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Iterable, Iterator, Sequence

from rlpf.core.errors import RLPFError

START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
"""How workers start (the module docstring says why)."""

FORKSERVER_PRELOAD = ("rlpf.core.threads", "numpy", "mujoco")
"""Imported once by the fork server, so every worker starts with them (none of them starts threads
at import). torch is not preloaded: most pools never import it, and it would add ~1 s to the server."""

STARTUP_DEATHS = 3
"""Workers dying in a row before running a chunk that break the pool."""


class PoolError(RLPFError, RuntimeError):
    """The pool cannot run a chunk: it is closed, or its workers cannot start."""


class WorkerDied(PoolError):
    """A worker process died while it ran this chunk (killed, or crashed in native code)."""


class TaskFailed(RuntimeError):
    """A chunk raised an exception that could not be sent back as itself (its message and traceback are)."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, attached as ``__cause__`` when it is re-raised."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


@dataclass
class Outcome:
    """What became of one chunk (or, from ``imap``/``map``, of one item)."""

    value: Any = None
    error: str | None = None
    """None when the chunk completed; else why not: ``"Type: message"`` of its exception, the death
    of its worker, or why the pool could not run it."""
    died: bool = False
    """The worker process died while running it."""
    traceback: str | None = None
    """The worker-side traceback of the chunk's exception."""
    exception: BaseException | None = None
    """The chunk's exception itself, when it could be pickled back."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self):
        """The value, or raise: ``WorkerDied`` / ``PoolError`` for the pool's reasons, the chunk's own
        exception (its worker traceback as ``__cause__``) or ``TaskFailed`` for its exceptions."""
        if self.ok:
            return self.value
        if self.died:
            raise WorkerDied(self.error)
        if self.exception is not None:
            raise self.exception from RemoteTraceback(self.traceback or "")
        if self.traceback is not None:
            raise TaskFailed(f"{self.error}\n\nworker traceback:\n{self.traceback}")
        raise PoolError(self.error)


def describe_exit(exitcode: int | None) -> str:
    """How a process ended, in words (``killed by SIGKILL``, ``exit code 3``)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


# ----------------------------------------------------------------------------------------------
# the worker side


def _worker_main(conn, initializer, initargs) -> None:
    from rlpf.core.threads import configure_worker_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; its close() stops us
    configure_worker_threads()
    try:
        if initializer is not None:
            initializer(*initargs)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which breaks the pool with it
        conn.send(("init_error", f"{type(e).__name__}: {e}", traceback.format_exc()))
        return
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent has gone
            return
        if msg is None:
            return
        task_id, blob = msg
        try:
            fn, args = pickle.loads(blob)
            reply = ("ok", task_id, fn(*args))
        except BaseException as e:  # noqa: BLE001 - SystemExit from a plugin too: this chunk's failure
            reply = ("error", task_id, f"{type(e).__name__}: {e}", traceback.format_exc(), _picklable(e))
        try:
            conn.send(reply)
        except (OSError, EOFError):  # the parent has gone
            return
        except Exception as e:  # noqa: BLE001 - a result that cannot be pickled fails its chunk only
            conn.send(("error", task_id, f"the chunk's result cannot be sent back: {type(e).__name__}: {e}",
                       traceback.format_exc(), None))


def _picklable(e: BaseException) -> BaseException | None:
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return None


def _run_items(fn, items) -> list[tuple]:
    """A chunk of ``imap``: ``fn`` on each item, an exception failing only its item."""
    out = []
    for item in items:
        try:
            out.append(("ok", fn(item)))
        except Exception as e:  # noqa: BLE001
            out.append(("error", f"{type(e).__name__}: {e}", traceback.format_exc(), _picklable(e)))
    return out


# ----------------------------------------------------------------------------------------------
# the parent side


class _Worker:
    def __init__(self, ctx, initializer, initargs, name: str):
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=_worker_main, args=(child, initializer, initargs), name=name, daemon=True)
        self.process.start()
        child.close()  # ours; the worker has its own copy, so its death reads as EOF here
        self.task: tuple[int, bytes, Future] | None = None  # the chunk it is running (or was sent)
        self.ready = False
        self.dead = False


class ChunkedMap:
    """``imap`` / ``map`` over ``self.submit``, shared by every backend (this pool, Ray's actors)."""

    def imap(self, fn: Callable, items: Iterable, chunksize: int = 1) -> Iterator[Outcome]:
        """``fn(item)`` for every item, in chunks of ``chunksize``: one ``Outcome`` per item, in item
        order. An item's exception fails that item; a dying worker fails the items of its chunk.
        Everything is queued at once; closing the iterator early drops the chunks not yet started."""
        items = list(items)
        chunksize = max(1, int(chunksize))
        chunks = [items[i:i + chunksize] for i in range(0, len(items), chunksize)]
        futures = [self.submit(_run_items, fn, chunk) for chunk in chunks]

        def results():
            try:
                for chunk, future in zip(chunks, futures):
                    outcome = future.result()
                    if not outcome.ok:
                        for _ in chunk:
                            yield Outcome(error=outcome.error, died=outcome.died, traceback=outcome.traceback,
                                          exception=outcome.exception)
                        continue
                    for r in outcome.value:
                        yield Outcome(value=r[1]) if r[0] == "ok" else \
                            Outcome(error=r[1], traceback=r[2], exception=r[3])
            finally:
                for future in futures:
                    future.cancel()

        return results()

    def map(self, fn: Callable, items: Iterable, chunksize: int = 1) -> list[Outcome]:
        """``list(imap(...))``."""
        return list(self.imap(fn, items, chunksize))


class WorkerPool(ChunkedMap):
    """``workers`` processes running chunks of work (module docstring: semantics, start method)."""

    def __init__(self, workers: int, initializer: Callable | None = None, initargs: Sequence = (),
                 name: str = "rlpf-worker", start_method: str | None = None):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise PoolError(f"workers={workers!r}: a pool needs a positive integer number of worker processes")
        self.size, self.name = workers, name
        self._initializer, self._initargs = initializer, tuple(initargs)
        self._ctx = multiprocessing.get_context(start_method or START_METHOD)
        if self._ctx.get_start_method() == "forkserver":
            self._ctx.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        self._lock = threading.Lock()
        self._pending: collections.deque = collections.deque()
        self._ids = itertools.count()
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._woken = False
        self._closing = False
        self._broken: str | None = None
        self._startup_deaths = 0
        self.restarts = 0
        """Workers started to replace dead ones."""
        self._started = 0
        self._workers = [self._start_worker(i) for i in range(workers)]
        self._thread = threading.Thread(target=self._manage, name=f"{name}-manager", daemon=True)
        self._thread.start()

    # ---- public ----------------------------------------------------------------------------------
    def submit(self, fn: Callable, *args) -> Future:
        """Queue one chunk, ``fn(*args)`` in a worker; the future's result is its ``Outcome``.
        ``fn`` and ``args`` are pickled now (a bad argument raises here, in the caller)."""
        blob = bytes(ForkingPickler.dumps((fn, args)))
        future: Future = Future()
        with self._lock:
            if self._closing:
                raise PoolError(f"{self.name} pool: closed, it runs nothing more")
            if self._broken:
                raise PoolError(f"{self.name} pool: {self._broken}")
            self._pending.append((next(self._ids), blob, future, False))
            self._wake()
        return future

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        return [w.process.pid for w in self._workers]

    def close(self) -> None:
        """Fail the chunks not done yet, stop idle workers, kill busy ones, wait for every worker."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._wake()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- manager thread --------------------------------------------------------------------------
    def _wake(self) -> None:  # with self._lock held
        if not self._woken:
            self._woken = True
            self._wake_w.send_bytes(b"")

    def _start_worker(self, index: int) -> _Worker:
        self._started += 1
        return _Worker(self._ctx, self._initializer, self._initargs, f"{self.name}-{index}")

    def _manage(self) -> None:
        try:
            while True:
                with self._lock:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                    self._woken = False
                    closing = self._closing
                if closing:
                    break
                for w in list(self._workers):
                    self._read(w)
                for w in list(self._workers):
                    if w.dead or not w.process.is_alive():
                        self._replace(w)
                self._dispatch()
                waits = [self._wake_r] + [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers]
                multiprocessing.connection.wait(waits)
        except BaseException as e:  # a bug here must not leave submitters waiting on a pool nobody runs
            with self._lock:
                self._broken = f"its manager thread failed: {type(e).__name__}: {e}"
            raise
        finally:
            self._shutdown()

    def _read(self, w: _Worker) -> None:
        """Take every message a worker has sent (results, ready, init errors); EOF marks it dead."""
        try:
            while not w.dead and w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "ready":
                    w.ready = True
                elif msg[0] == "init_error":
                    self._break(f"a worker's initializer failed: {msg[1]}\n\nworker traceback:\n{msg[2]}")
                    w.dead = True
                else:
                    future = w.task[2]
                    w.task = None
                    self._startup_deaths = 0
                    if msg[0] == "ok":
                        future.set_result(Outcome(value=msg[2]))
                    else:
                        future.set_result(Outcome(error=msg[2], traceback=msg[3], exception=msg[4]))
        except (EOFError, OSError):
            w.dead = True

    def _replace(self, w: _Worker) -> None:
        """A dead worker: fail the chunk it was running, start another worker in its place.

        A worker that died before it was ready (in its initializer) never started the chunk sent to
        it: that chunk goes back to the front of the queue."""
        w.process.join(timeout=5)
        if w.process.exitcode is None:  # its pipe broke but it lives on: it cannot be told anything more
            w.process.kill()
            w.process.join()
        how = describe_exit(w.process.exitcode)
        self._workers.remove(w)
        w.conn.close()
        w.process.close()
        lost = None
        if w.task is not None and w.ready:
            lost = w.task[2]
        elif w.task is not None:
            with self._lock:
                self._pending.appendleft((*w.task, True))
        w.task = None
        if not w.ready and not self._broken:
            self._startup_deaths += 1
            if self._startup_deaths >= STARTUP_DEATHS:
                self._break(f"{STARTUP_DEATHS} worker processes in a row died before running anything (last: {how})")
        if self._broken:
            self._break(self._broken)  # the chunk put back above, too
        else:
            self._workers.append(self._start_worker(self._started))
            self.restarts += 1
        if lost is not None:  # after the replacement started: whoever sees the death sees a full pool
            lost.set_result(Outcome(error=f"a worker process died ({how}) while running this chunk "
                                          f"(killed, or crashed in native code)", died=True))

    def _break(self, reason: str) -> None:
        """Workers cannot start: every queued chunk fails with ``reason``, and so does every later submit."""
        with self._lock:
            self._broken = reason
            pending, self._pending = list(self._pending), collections.deque()
        for _, _, future, running in pending:
            if running or future.set_running_or_notify_cancel():
                future.set_result(Outcome(error=f"{self.name} pool: {reason}"))

    def _dispatch(self) -> None:
        """One chunk to each idle worker, in submission order (chunks cancelled while queued are dropped)."""
        for w in self._workers:
            if w.dead or w.task is not None:
                continue
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    task_id, blob, future, running = self._pending.popleft()
                if running or future.set_running_or_notify_cancel():
                    break
            try:
                w.conn.send((task_id, blob))
                w.task = (task_id, blob, future)
            except (OSError, EOFError):  # it died just now, before receiving the chunk: requeue it
                with self._lock:
                    self._pending.appendleft((task_id, blob, future, True))
                w.dead = True
                return

    def _shutdown(self) -> None:
        with self._lock:
            pending, self._pending = list(self._pending), collections.deque()
        closed = Outcome(error=f"{self.name} pool: closed before this chunk finished")
        for _, _, future, running in pending:
            if running or future.set_running_or_notify_cancel():
                future.set_result(closed)
        for w in self._workers:
            if w.task is not None:  # busy: its chunk is no longer wanted
                w.task[2].set_result(closed)
                w.task = None
                w.process.kill()
            elif not w.dead:
                try:
                    w.conn.send(None)
                except (OSError, EOFError):
                    pass
        for w in self._workers:
            w.process.join(timeout=2)
            if w.process.exitcode is None:
                w.process.kill()
                w.process.join()
            w.conn.close()
            w.process.close()
        self._workers = []
        self._wake_r.close()
        self._wake_w.close()
