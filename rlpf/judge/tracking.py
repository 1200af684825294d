"""The tracker interface: replay clips in MuJoCo with a controller and report how well it followed.

A tracker turns reference clips into ``TrackResult``s. Physical feedback, as the RLPF paper defines
it, is whether a controller in a simulator can perform the motion: a clip fails when the simulated
body falls or its mean body-position error exceeds the world's threshold at any frame (PHC/UHC rule,
0.5 m for the humanoid; scaled per world, declared as ``World.success_threshold_m``). "Fell" has one
definition, ``fell_frames`` (root sunk ``fall_drop_m`` below the reference's, or flipped while the
reference is upright), used by every tracker and by the tracking env's early termination.

Concrete trackers implement ``track_one``; ``track`` runs them over clips in parallel worker
processes (each worker builds its own tracker from ``spec()``), and a failure inside one clip's
simulation is a failed track for that clip, never an exception for the batch.

Trackers: ``rlpf.policies.pd_tracker.PDTracker`` (PD + inverse-dynamics feedforward, no training)
and the SB3-trained ``rlpf.policies.learned_tracker.LearnedTracker``; ``load_tracker("pd" | "learned"
| NAME | RUN_DIR, world)`` makes one by name: trackers are registered factories
(``register_tracker("name", factory)``, or an entry point in the group ``rlpf.trackers``), and
``pd`` and ``learned`` are two of them. ``track_clips`` caches each clip's result in ``clip.cache``, so
reward plugins and reports share one tracking pass per clip and tracker; ``cross_tracker_report``
compares trackers on the same clips.
"""
from __future__ import annotations

from rlpf.core.entry_points import load_entry_point
from rlpf.core.errors import RLPFError

import importlib
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from rlpf.core.clips import Clip

DEFAULT_THRESHOLD_M = 0.5
"""Largest mean body-position error (m) at any frame for a successful track in a world that declares
no ``World.success_threshold_m`` (the PHC/UHC rule RLPF uses for the humanoid; the built-in worlds
declare theirs in ``rlpf.envs.worlds.BUILTIN_WORLDS``, scaled by body size). Trackers may refine it
(documented where set)."""


def success_threshold(world) -> float:
    """The success threshold (m) of ``world`` (a name, MJCF path, World or CompiledWorld):
    its declared ``success_threshold_m``, else ``DEFAULT_THRESHOLD_M`` (also for an unknown world)."""
    declared = _declared(world, "success_threshold_m")
    return DEFAULT_THRESHOLD_M if declared is None else float(declared)


def _declared(world, fact: str):
    """A fact from the world's declaration, or None where it declares none or the world is unknown."""
    from rlpf.envs.worlds import UnknownWorldError, get_world

    try:
        return getattr(get_world(world), fact)
    except UnknownWorldError:
        return None


# ----------------------------------------------------------------------------------------------
# the one "fell" rule, shared by every tracker and by rlpf/MotionTracking-v0's early termination

FALL_DROP_FRACTION = 0.25
"""Floating worlds that declare no ``World.fall_drop_m``: the drop is this fraction of the root's
height in the model's ``qpos0`` (the built-ins declare about a quarter of the standing root height:
ant 0.2 of 0.55 m, humanoid 0.35 of 1.3 m)."""
UPRIGHT_Z = 0.5
"""The reference counts as upright while its root's up axis has a world z component above this (60 deg tilt)."""


def fall_drop_m(world, model=None, root_qadr: int = 0) -> float:
    """The root drop (m) that means a fall in ``world``: its declared ``World.fall_drop_m``; else
    ``FALL_DROP_FRACTION`` of the height of the free root at ``qpos[root_qadr:root_qadr + 7]`` in
    ``model.qpos0``; 0 without a model."""
    declared = _declared(world, "fall_drop_m")
    if declared is not None:
        return float(declared)
    if model is None:
        return 0.0
    return FALL_DROP_FRACTION * float(model.qpos0[root_qadr + 2])


def fell_frames(sim_qpos: np.ndarray, ref_qpos: np.ndarray, drop_m: float) -> np.ndarray:
    """Where a floating robot has fallen: the one rule every tracker and the tracking env use.

    ``sim_qpos``, ``ref_qpos``: [..., nq] with the free root joint at ``qpos[0:7]`` (position, then the
    quaternion w, x, y, z). The body has fallen at a frame when

    * its root is more than ``drop_m`` below the reference's root (the reference may fall or lie down
      itself: that is tracked, not a fall; a reference that rises where the body cannot follow, as in
      levitation, reads as one), or
    * its root's up axis points below the horizontal while the reference's is upright (z component
      above ``UPRIGHT_Z``): flipped over. A reference that is itself lying or tilted (a humanoid on the
      floor, whose torso axis is near horizontal) never triggers this half.

    Returns a bool array of the leading shape; frames with NaN (a diverged simulation) are False.
    """
    sim, ref = np.asarray(sim_qpos, float), np.asarray(ref_qpos, float)
    with np.errstate(invalid="ignore"):
        sank = ref[..., 2] - sim[..., 2] > drop_m
        flipped = (_up_z(sim) < 0.0) & (_up_z(ref) > UPRIGHT_Z)
    return sank | flipped


def _up_z(qpos: np.ndarray) -> np.ndarray:
    """World z component of the root's local z axis: 1 - 2 (qx^2 + qy^2) of the (normalised) root quaternion."""
    q = qpos[..., 3:7]
    n2 = (q * q).sum(axis=-1)
    return 1.0 - 2.0 * (q[..., 1] ** 2 + q[..., 2] ** 2) / np.where(n2 > 0, n2, 1.0)


@dataclass
class TrackResult:
    """What happened when one clip was tracked."""

    source: str
    qpos: np.ndarray
    """[T, nq] simulated qpos at the clip's frames (NaN after a divergence)."""
    body_error_m: np.ndarray
    """[T] mean over bodies of the distance between simulated and reference body positions."""
    torques: np.ndarray
    """[T, nu] actuator-space torques applied (or [T, 0] when not applicable)."""
    fell: bool
    diverged: bool
    threshold_m: float
    object_error_m: np.ndarray | None = None
    """[T] mean distance between simulated and reference object positions (worlds with objects;
    ``MocapTracker``: the series of the object or articulation closest to its threshold)."""
    info: dict = field(default_factory=dict)
    objects_tracked: bool | None = None
    """Trackers that judge the objects too (``rlpf.policies.mocap_tracker``): whether every simulated
    object and articulation stayed within its threshold of the clip's; False fails the track. None:
    the tracker does not judge objects (success is the robot's alone)."""

    @property
    def success(self) -> bool:
        err = self.body_error_m
        return bool(not self.fell and not self.diverged and np.isfinite(err).all() and err.max() <= self.threshold_m
                    and self.objects_tracked is not False)

    @property
    def mean_error_m(self) -> float:
        err = self.body_error_m[np.isfinite(self.body_error_m)]
        return float(err.mean()) if err.size else float("inf")


class Tracker:
    """Base class: subclasses implement ``track_one(clip) -> TrackResult`` and ``spec()``."""

    name = "tracker"

    def spec(self) -> tuple:
        """(class, kwargs) that rebuild this tracker in a worker process."""
        raise NotImplementedError

    def track_one(self, clip: Clip) -> TrackResult:
        raise NotImplementedError

    def cache_key(self) -> tuple:
        """Identifies this tracker's results in ``clip.cache``: equal for trackers built from equal specs."""
        try:
            cls, kwargs = self.spec()
        except NotImplementedError:
            return (type(self).__qualname__, id(self))
        return (f"{cls.__module__}.{cls.__qualname__}", repr(sorted(kwargs.items())))

    def track(self, clips: Sequence[Clip], workers: int | None = None, progress=None, backend: str = "local",
              address: str | None = None) -> list[TrackResult]:
        """Track every clip (in ``workers`` processes; default: up to 2); results keep the clip order.

        ``backend``: where the workers run, ``local`` processes or ``ray`` actors (on the cluster at
        ``address``, see ``rlpf.core.backend``); each worker builds this tracker once, from ``spec()``.
        The local backend tracks one worker's worth in this process; the ray one always uses actors."""
        from rlpf.core.backend import check_backend

        check_backend(backend)
        clips = list(clips)
        workers = min(workers or min(2, os.cpu_count() or 1), len(clips)) if clips else 1
        if workers <= 1 and (backend == "local" or not clips):
            out = []
            for c in clips:
                out.append(self.track_one(c))
                if progress:
                    progress(1)
            return out
        from rlpf.core.backend import make_backend

        cls, kwargs = self.spec()
        out = []
        with make_backend(backend, workers, initializer=_init_worker, initargs=(cls, kwargs), address=address,
                          label="rlpf-tracking") as pool:
            for clip, outcome in zip(clips, pool.imap(_track_in_worker, clips,
                                                      chunksize=max(1, len(clips) // (4 * workers)))):
                # a worker that died (a crash in native code) fails the clips of its chunk, and only those
                out.append(self.failed_result(clip, outcome.error) if outcome.died else outcome.unwrap())
                if progress:
                    progress(1)
        return out

    def failed_result(self, clip: Clip, why: str) -> TrackResult:
        """A failed track of ``clip`` that simulated nothing (NaN motion, ``diverged``), ``why`` in its info."""
        T, nq = np.shape(clip.qpos)
        threshold = getattr(self, "threshold_m", None)
        return TrackResult(source=clip.source, qpos=np.full((T, nq), np.nan), body_error_m=np.full(T, np.nan),
                           torques=np.zeros((T, 0)), fell=False, diverged=True,
                           threshold_m=success_threshold(clip.world) if threshold is None else threshold,
                           info={"tracker": self.name, "why": why})


_WORKER_TRACKER: Tracker | None = None


def _init_worker(cls, kwargs) -> None:
    global _WORKER_TRACKER
    _WORKER_TRACKER = cls(**kwargs)


def _track_in_worker(clip: Clip) -> TrackResult:
    assert _WORKER_TRACKER is not None
    return _WORKER_TRACKER.track_one(clip)


# ----------------------------------------------------------------------------------------------
# making trackers by name, sharing their results, comparing them

class TrackerError(RLPFError, ValueError):
    """A tracker that cannot be made: unknown name, missing run directory, learned tracker not installed."""


LEARNED_RUN_DIR = os.path.join("runs", "tracker-{world}")
"""Where ``load_tracker("learned", world)`` looks for a trained tracker (``rlpf train-tracker --out`` there)."""

ENTRY_POINT_GROUP = "rlpf.trackers"
"""Entry-point group an installed package ships trackers in (``name = package.module:factory``)."""

TrackerFactory = Callable[..., Tracker]
"""``factory(world) -> Tracker``: ``world`` is a built-in world's name or a ``World``
(``rlpf.envs.worlds.compile_world`` takes either); a Tracker subclass taking the world first is one."""

_TRACKERS: dict[str, TrackerFactory] = {}
_FROM_ENTRY_POINTS: set[str] = set()
"""Names registered from an installed entry point: every process finds those by itself."""
_DOCS: dict[str, str] = {}


def register_tracker(name: str, factory: TrackerFactory, *, replace: bool = False, doc: str = "") -> TrackerFactory:
    """Make ``--tracker name`` (CLI, configs, ``load_tracker``) build trackers with ``factory(world)``.

    A taken name (``pd``, ``learned`` included) raises TrackerError unless ``replace=True``. Worker
    processes rebuild a tracker from its ``spec()``, not from this registry (``portable_tracker``:
    parallel tracking and PhysicalFeedback's scoring workers alike), so a tracker registered in a
    script works there as long as its class is importable.
    """
    if not isinstance(name, str) or not name or name != name.strip() or os.sep in name:
        raise TrackerError(f"register_tracker: bad tracker name {name!r}: a non-empty name without "
                           f"surrounding spaces or {os.sep!r} (those name run directories)")
    if isinstance(factory, str):
        if factory.count(":") != 1 or not all(factory.split(":")):
            raise TrackerError(f"register_tracker({name!r}): {factory!r} is not a 'module:attribute' import path")
    elif not callable(factory):
        raise TrackerError(f"register_tracker({name!r}): the factory {factory!r} is not callable")
    if name in _TRACKERS and not replace:
        raise TrackerError(f"register_tracker: tracker {name!r} is already registered; pass replace=True to replace it")
    _TRACKERS[name] = factory
    _DOCS[name] = doc or ("" if isinstance(factory, str) else (factory.__doc__ or "").strip().split("\n")[0])
    return factory


def _resolve(name: str, factory):
    """A registered factory, imported now if it was registered as ``"module:attribute"`` (so this
    module never imports the tracker implementations, which import it)."""
    if not isinstance(factory, str):
        return factory
    module, attr = factory.split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise TrackerError(f"tracker {name!r}: cannot import its factory {factory} ({type(e).__name__}: {e})") from None


def unregister_tracker(name: str) -> None:
    """Forget a registered tracker (a built-in comes back as it ships)."""
    _TRACKERS.pop(name, None)
    _DOCS.pop(name, None)
    _FROM_ENTRY_POINTS.discard(name)
    if name in _BUILTIN_TRACKERS:
        register_tracker(name, _BUILTIN_TRACKERS[name][0], doc=_BUILTIN_TRACKERS[name][1])


def registered_trackers() -> dict[str, str]:
    """Registered tracker names and one line about each; entry-point trackers appear once used."""
    return dict(_DOCS)


def _tracker_factory(name: str, entry_points=None) -> TrackerFactory | None:
    """The factory registered as ``name``, else the ``rlpf.trackers`` entry point of that name
    (registered on first use), else None. ``entry_points``: what to search (default: the installed
    ones). A broken entry point warns and raises TrackerError naming it; the rest keep working."""
    if name in _TRACKERS:
        return _TRACKERS[name]
    if entry_points is None and (os.sep in name or (os.altsep and os.altsep in name)):
        return None  # a run directory, never an entry point's name

    def as_factory(obj) -> TrackerFactory:
        if not callable(obj):
            raise TypeError(f"{obj!r} is not callable")
        return obj

    factory = load_entry_point(ENTRY_POINT_GROUP, name, "tracker", lambda msg: TrackerError(f"tracker {name!r}: {msg}"),
                               as_factory, entry_points)
    if factory is not None:
        register_tracker(name, factory, replace=True)
        _FROM_ENTRY_POINTS.add(name)
    return factory


def check_tracker_spec(spec) -> None:
    """Raise TrackerError for a tracker spec that cannot name a tracker (before any work is done)."""
    if isinstance(spec, (Tracker, PortableTracker)):
        return
    if isinstance(spec, str) and spec and (_tracker_factory(spec) is not None or os.path.exists(spec)):
        return
    names = ", ".join(f"{n!r} ({d})" if d else repr(n) for n, d in sorted(registered_trackers().items()))
    raise TrackerError(f"unknown tracker {spec!r}: choose a registered tracker - {names} - or the run "
                       f"directory of a trained tracker, or install a package with an '{ENTRY_POINT_GROUP}' "
                       "entry point of that name")


def load_tracker(spec, world) -> Tracker:
    """A tracker for ``world`` (name, MJCF path, World or CompiledWorld) from ``spec``.

    A registered name (``register_tracker``; an ``rlpf.trackers`` entry point): its factory, given
    ``rlpf.envs.worlds.portable_world(world)`` (a built-in's name, else the World, so the tracker's
    spec rebuilds it in worker processes that never saw this process's registry). Built in:
    ``"pd"``, the world's declared ``World.pd_tracker`` class (default ``PDTracker(world)`` with the
    world's default gains); ``"learned"``, the SB3-trained
    tracker in ``LEARNED_RUN_DIR``. A path: the tracker trained there. Both learned ones go through
    ``rlpf.policies.learned_tracker.LearnedTracker.load(path, world)``, imported only then. A
    Tracker instance is returned as it is. Raises TrackerError saying what to do instead.
    """
    if isinstance(spec, Tracker):
        return spec
    if isinstance(spec, PortableTracker):
        cls, kwargs = spec
        return cls(**kwargs)
    from rlpf.envs.worlds import portable_world

    check_tracker_spec(spec)
    world_arg = portable_world(world)
    factory = _tracker_factory(spec)
    if factory is not None:
        tracker = _resolve(spec, factory)(world_arg)
        if not isinstance(tracker, Tracker):
            raise TrackerError(f"tracker {spec!r}: its factory returned {type(tracker).__name__}, not an rlpf Tracker")
        return tracker
    return _resolve(spec, LOAD_RUN)(spec, spec, world_arg)


class PortableTracker(tuple):
    """A tracker as a worker process rebuilds it: ``(class, kwargs)`` from ``Tracker.spec()``
    (see ``portable_tracker``). A tuple, so it pickles by the class's import path."""

    def key(self) -> tuple:
        cls, kwargs = self
        return (cls.__module__, cls.__qualname__, repr(sorted(kwargs.items())))


def portable_tracker(spec, world):
    """``spec`` as a worker process can load it: a built-in name, an entry point's name or a run
    directory stays as it is (every process finds those); a name registered only in this process
    (``register_tracker`` in a script) or a Tracker instance becomes a ``PortableTracker`` built
    here, so workers that never saw this process's registry build the same tracker."""
    if isinstance(spec, PortableTracker):
        return spec
    if isinstance(spec, str):
        check_tracker_spec(spec)
        factory = _TRACKERS.get(spec)
        builtin = spec in _BUILTIN_TRACKERS and factory == _BUILTIN_TRACKERS[spec][0]
        if factory is None or builtin or spec in _FROM_ENTRY_POINTS:
            return spec
    tracker = load_tracker(spec, world)
    try:
        cls, kwargs = tracker.spec()
    except NotImplementedError:
        raise TrackerError(f"tracker {spec!r} ({type(tracker).__name__}) has no spec(): worker processes cannot "
                           "rebuild it; implement Tracker.spec() or use workers=0") from None
    return PortableTracker((cls, dict(kwargs)))


LOAD_RUN = "rlpf.policies.learned_tracker:load_run_tracker"
"""``fn(spec, run_dir, world)``: the tracker trained in a run directory (``--tracker RUN_DIR``)."""
# the implementations by import path: they import this module (Tracker, TrackResult, the fell rule)
# "pd" builds the world's declared no-training tracker (World.pd_tracker; PDTracker by default)
_BUILTIN_TRACKERS = {"pd": ("rlpf.policies.pd_tracker:world_pd_tracker", "PD + inverse dynamics (or the world's "
                            "declared physics tracker, e.g. Meta-World's mocap arm), no training"),
                     "learned": ("rlpf.policies.learned_tracker:default_tracker",
                                 f"the SB3-trained tracker in {LEARNED_RUN_DIR}"),
                     "bullet": ("rlpf.policies.bullet_tracker:BulletTracker",
                                "PD + inverse dynamics in PyBullet (a second physics engine; ant, humanoid)"),
                     "pd-residual": ("rlpf.policies.residual_tracker:ResidualTracker",
                                     "PD + inverse dynamics plus a root residual wrench that success charges "
                                     "(UHC/RFC; floating-root worlds)"),
                     "pd-randomized": ("rlpf.policies.randomized_tracker:RandomizedTracker",
                                       "PD + inverse dynamics on 4 randomized plants (contacts, friction, "
                                       "masses); success only when every one tracks")}
for _name, (_factory, _doc) in _BUILTIN_TRACKERS.items():
    register_tracker(_name, _factory, doc=_doc)


def track_clips(clips: Sequence[Clip], tracker: Tracker, workers: int | None = None, progress=None,
                backend: str = "local", address: str | None = None) -> list[TrackResult]:
    """``tracker``'s result for every clip, tracking (in parallel, on ``backend``: ``Tracker.track``)
    only clips it has not tracked yet.

    Results are cached in ``clip.cache[("tracking", *tracker.cache_key())]``: every reward plugin and
    report that asks again gets the same result without simulating again.
    """
    key = ("tracking",) + tuple(tracker.cache_key())
    todo = [c for c in clips if key not in c.cache]
    if todo:
        # the backend only when one is asked for: a tracker overriding track() with the plain
        # (clips, workers, progress) signature keeps working on the default local pool
        where = {"backend": backend, "address": address} if backend != "local" or address else {}
        for clip, result in zip(todo, tracker.track(todo, workers=workers, progress=progress, **where)):
            clip.cache[key] = result
    return [c.cache[key] for c in clips]


def tracker_summary(results: Sequence[TrackResult]) -> dict:
    """Success rate, failure causes and mean body error of one tracker's results (JSON-ready)."""
    n = len(results)
    finite = [r.mean_error_m for r in results if not r.diverged and np.isfinite(r.mean_error_m)]
    return {
        "n_clips": n,
        "success_rate": (sum(r.success for r in results) / n) if n else None,
        "n_fell": sum(bool(r.fell) for r in results),
        "n_diverged": sum(bool(r.diverged) for r in results),
        "mean_error_m": float(np.mean(finite)) if finite else None,
    }


def agreement(successes: dict[str, Sequence[bool]]) -> dict:
    """Pairwise agreement of trackers' success on the same clips: ``"a vs b" -> {rate, both_succeed,
    both_fail, only_a, only_b}`` where rate = (both succeed + both fail) / clips."""
    names = list(successes)
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            sa, sb = np.asarray(successes[a], bool), np.asarray(successes[b], bool)
            if len(sa) != len(sb):
                raise ValueError(f"agreement: {a!r} has {len(sa)} results, {b!r} {len(sb)}")
            n = len(sa)
            both, neither = int((sa & sb).sum()), int((~sa & ~sb).sum())
            out[f"{a} vs {b}"] = {"rate": (both + neither) / n if n else None, "both_succeed": both,
                                  "both_fail": neither, f"only_{a}": int((sa & ~sb).sum()),
                                  f"only_{b}": int((~sa & sb).sum())}
    return out


def cross_tracker_report(clips: Sequence[Clip], trackers: dict[str, Tracker], workers: int | None = None) -> dict:
    """Track ``clips`` with each tracker (cached) and compare: per-tracker success, pairwise agreement.

    Returns ``{"n_clips", "trackers": {name: tracker_summary}, "agreement": {"a vs b": {...}},
    "agreement_rate"}``; ``agreement_rate`` is the mean pairwise rate (None with one tracker). Two
    trackers that agree often make tracking success a property of the clip, not of the controller.
    """
    results = {name: track_clips(clips, tr, workers=workers) for name, tr in trackers.items()}
    pairs = agreement({name: [r.success for r in rs] for name, rs in results.items()})
    rates = [p["rate"] for p in pairs.values() if p["rate"] is not None]
    return {
        "n_clips": len(clips),
        "trackers": {name: tracker_summary(rs) for name, rs in results.items()},
        "agreement": pairs,
        "agreement_rate": float(np.mean(rates)) if rates else None,
    }
