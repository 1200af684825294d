"""The reward plugin registry.

A reward plugin is a callable ``fn(clips, **context) -> list[float | None]``: one value per clip,
None where the term does not apply. Context arrives as keyword arguments: ``world`` (a
CompiledWorld), ``prompts``, and whatever the caller has (tracker results, training step, ...);
a plugin takes what it needs and ignores the rest through ``**kwargs``.

A plugin is found, in order, by:
  1. its registered name (``@register("name")``),
  2. a dotted path ``"package.module:object"``,
  3. an entry point of that name in the group ``rlpf.rewards`` of an installed package,
     looked up only on a miss, so a broken third-party plugin never breaks ``import rlpf``.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from rlpf.core.entry_points import load_entry_point
from rlpf.core.errors import RLPFError

ENTRY_POINT_GROUP = "rlpf.rewards"

RewardFn = Callable[..., Sequence[Any]]


class RewardError(RLPFError, RuntimeError):
    """A reward plugin that cannot be found, raised, or returned bad values; the message names it."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"reward {name!r}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class RewardInfo:
    """A registered plugin and how to read it."""

    name: str
    fn: RewardFn
    threshold: float | None = None
    """A clip whose value exceeds this is physically implausible (None: the term does not decide)."""
    unit: str = ""
    doc: str = ""
    physics: bool = False
    """Part of the default physics score."""
    needs: tuple[str, ...] = ()
    """Scene parts the term judges (``SCENE_PARTS`` keys; ``"a|b"``: either will do): a world without
    one of them gets None from it, so training does not log it there (``applies``)."""


SCENE_PARTS = {"objects": "object_bodies", "articulations": "articulation_joints", "supports": "support_geoms",
               "floor": "floor_geom", "root": "root_dofs", "feet": "foot_geoms"}
"""What a term may need, and the CompiledWorld field that holds it (an index array, or the floor's
geom id: None without a floor)."""


def _has(cw, part: str) -> bool:
    value = getattr(cw, SCENE_PARTS[part], None)
    if value is None:
        return False
    return int(value) >= 0 if np.ndim(value) == 0 else len(value) > 0


def applies(info: RewardInfo, cw) -> bool:
    """Whether the term can say anything about clips of compiled world ``cw``."""
    return all(any(_has(cw, p) for p in need.split("|")) for need in info.needs)


_REGISTRY: dict[str, RewardInfo] = {}
_BUILTINS_LOADED = False


def register(name: str | None = None, *, threshold: float | None = None, unit: str = "",
             physics: bool = False, needs: tuple[str, ...] = ()) -> Callable[[RewardFn], RewardFn]:
    """Decorator: make ``fn`` available to configs and the CLI under ``name`` (default: its __name__)."""

    def deco(fn: RewardFn) -> RewardFn:
        key = name or fn.__name__
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        unknown = {p for need in needs for p in need.split("|")} - set(SCENE_PARTS)
        if unknown:
            raise RewardError(key, f"needs {sorted(unknown)}: a term may need {sorted(SCENE_PARTS)}")
        _REGISTRY[key] = RewardInfo(key, fn, threshold, unit, doc, physics, tuple(needs))
        return fn

    return deco


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module("rlpf.rewards.physics")


def registered() -> dict[str, RewardInfo]:
    """Registered plugins (built-ins included); entry-point plugins appear once they are used."""
    _load_builtins()
    return dict(_REGISTRY)


def physics_terms() -> dict[str, RewardInfo]:
    return {k: v for k, v in registered().items() if v.physics}


def get_reward(name: str) -> RewardInfo:
    """Find a plugin by registered name, ``pkg.mod:obj`` path, or ``rlpf.rewards`` entry point."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _from_dotted_path(name)
    info = _from_entry_point(name)
    if info is not None:
        return info
    raise RewardError(name, f"no such reward; registered: {sorted(_REGISTRY)}; "
                            f"or give a 'package.module:object' path, or install a package with an "
                            f"'{ENTRY_POINT_GROUP}' entry point of that name")


def _as_info(name: str, obj: Any) -> RewardInfo:
    if isinstance(obj, RewardInfo):
        return obj
    if not callable(obj):
        raise RewardError(name, f"{obj!r} is not callable")
    # the object may have registered itself on import
    for info in _REGISTRY.values():
        if info.fn is obj:
            return info
    return RewardInfo(name, obj, doc=(obj.__doc__ or "").strip().split("\n")[0])


def _from_dotted_path(name: str) -> RewardInfo:
    module, _, attr = name.partition(":")
    try:
        obj = importlib.import_module(module)
    except Exception as e:
        raise RewardError(name, f"cannot import module {module!r}: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RewardError(name, f"module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return _as_info(name, obj)


def _from_entry_point(name: str) -> RewardInfo | None:
    info = load_entry_point(ENTRY_POINT_GROUP, name, "reward plugin", lambda msg: RewardError(name, msg),
                            lambda obj: _as_info(name, obj))
    if info is None:
        return None
    _REGISTRY.setdefault(name, info)
    return info


@dataclass
class RewardTable:
    """Every term per clip (NaN where not applicable) and the weighted total the caller optimises."""

    terms: dict[str, list[float | None]]
    weights: dict[str, float]
    total: list[float]
    errors: dict[int, str] = field(default_factory=dict)
    """Clip index -> why that clip could not be scored (plugin errors isolated to that clip)."""


def call_reward(info: RewardInfo, clips: Sequence[Any], **context: Any) -> list[float | None]:
    """Call one plugin on a batch and check its output: one finite float or None per clip."""
    try:
        out = info.fn(clips, **context)
    except RewardError:
        raise
    except (Exception, SystemExit) as e:
        # SystemExit too: a plugin calling sys.exit() fails its clips, it does not end the run unreported
        raise RewardError(info.name, f"raised {type(e).__name__}: {e}") from e
    try:
        out = list(out)
    except TypeError:
        raise RewardError(info.name, f"must return a sequence of floats, got {type(out).__name__}") from None
    if len(out) != len(clips):
        raise RewardError(info.name, f"returned {len(out)} values for {len(clips)} clips")
    values: list[float | None] = []
    for i, v in enumerate(out):
        if v is None:
            values.append(None)
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise RewardError(info.name, f"value {i} is {v!r}, not a float or None") from None
        if not math.isfinite(f):
            raise RewardError(info.name, f"value {i} is {f} (NaN or infinite)")
        values.append(f)
    return values


def evaluate_rewards(clips: Sequence[Any], weights: dict[str, float], isolate: bool = True,
                     **context: Any) -> RewardTable:
    """Run every weighted plugin over the clips; total = sum of weight * value over applicable terms.

    With ``isolate``, a plugin that fails on the batch is retried clip by clip, so one bad clip is
    recorded in ``errors`` (and gets a NaN total) while the rest are scored.
    """
    infos = {name: get_reward(name) for name in weights}  # unknown names fail before any work
    n = len(clips)
    terms: dict[str, list[float | None]] = {}
    errors: dict[int, str] = {}
    for name, info in infos.items():
        try:
            terms[name] = call_reward(info, clips, **context)
            continue
        except RewardError as e:
            if not isolate:
                raise
            if n == 1:  # nothing to isolate: retrying would repeat the same call
                errors.setdefault(0, str(e))
                terms[name] = [None]
                continue
        values: list[float | None] = []
        for i, clip in enumerate(clips):
            ctx = {k: ([v[i]] if _per_clip(v, n) else v) for k, v in context.items()}
            try:
                values.append(call_reward(info, [clip], **ctx)[0])
            except RewardError as e:
                errors.setdefault(i, str(e))
                values.append(None)
        terms[name] = values
    total = []
    for i in range(n):
        if i in errors:
            total.append(float("nan"))
            continue
        total.append(sum(weights[k] * v[i] for k, v in terms.items() if v[i] is not None))
    return RewardTable(terms=terms, weights=dict(weights), total=total, errors=errors)


def _per_clip(value: Any, n: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == n


def per_clip(fn: Callable[..., float | None]) -> RewardFn:
    """Adapt ``fn(clip, world) -> float | None`` to the batch plugin signature.

    ``world`` in the context may be a name, an MJCF path or a CompiledWorld.
    """
    import functools

    @functools.wraps(fn)
    def batch(clips, *, world, **_):
        from rlpf.envs.worlds import CompiledWorld, compile_world

        cw = world if isinstance(world, CompiledWorld) else compile_world(world)
        return [fn(clip, cw) for clip in clips]

    return batch
