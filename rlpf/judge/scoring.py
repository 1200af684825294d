"""Score clip files for physical plausibility: the engine behind ``rlpf score``.

Data flow: files -> load_clips -> validate against the world -> [tracking pass, with trackers]
-> reward plugins (evaluate_rewards) -> per-clip score (weighted total) and plausible flag -> report
dict (the contract: docs/report-format.md). A bad file or a plugin failing on one clip becomes an
entry in ``errors``; the rest are scored.

With ``trackers`` (``rlpf score --tracker pd``), every clip is also replayed by each tracker (in
parallel worker processes, one pass per clip and tracker shared by the plugins): the first tracker
fills the terms ``tracking_success``, ``tracking_error_m`` and, in worlds with objects,
``object_divergence_m`` (weight 0: reported, not part of the physics score); a failed track makes the
clip implausible; the summary gets the tracking-success rate and every tracker's results and their
agreement.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from rlpf.core.clips import Clip, ClipError, load_by_world
from rlpf.envs.worlds import UnknownWorldError, compile_world
from rlpf.rewards.registry import RewardError, evaluate_rewards, get_reward, physics_terms, registered
from rlpf.judge.tracking import TrackerError, agreement, check_tracker_spec, load_tracker, track_clips, tracker_summary

TRACKING_TERMS = ("tracking_success", "tracking_error_m", "object_divergence_m")
"""Terms a tracker adds to every clip (weight 0 unless weighted; object_divergence_m where there are objects)."""


@dataclass
class ScoreConfig:
    """What ``rlpf score`` computes."""

    world: str | None = None
    """Built-in world name or MJCF path; overrides the world stored in the clips."""
    weights: dict[str, float] = field(default_factory=dict)
    """Changes to the default weights, reward name (registered, 'pkg.mod:obj' or entry point) -> weight.
    By default every built-in physics term weighs -1/threshold, so each counts in units of its
    plausibility threshold; an entry changes that one weight (the other terms keep theirs) or adds a
    plugin to the score. Weight 0 reports a term without scoring it. Plausibility does not depend on
    the weights: every term that has a threshold decides it."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Overrides of the plausibility thresholds (term -> largest plausible value, finite and >= 0), for
    terms that have one (`rlpf worlds` lists them)."""
    trackers: list[str] = field(default_factory=list)
    """Trackers that replay every clip in MuJoCo: pd, learned or a trained tracker's run directory. The
    first fills tracking_success / tracking_error_m (/ object_divergence_m) and a failed track makes a
    clip implausible; all are compared in the summary. Empty: no tracking."""
    tracker_workers: int | None = None
    """Processes for the tracking pass (default min(2, CPUs))."""
    backend: str = "local"
    """Where the tracking pass runs: local (processes of this machine) or ray (one Ray actor per
    worker, each building the tracker once; rlpf.core.backend). Same clips, same report."""
    address: str | None = None
    """Ray cluster of the ray backend (host:port, auto, ray://host:port); default RAY_ADDRESS, else a
    local Ray is started."""

    def __post_init__(self):
        from rlpf.core.config import check, finite

        if isinstance(self.trackers, str):
            self.trackers = [self.trackers]
        self.trackers = list(dict.fromkeys(str(t) for t in (self.trackers or [])))  # unique, in order
        for name, w in self.weights.items():
            check(self, finite(w), f"weights.{name}", w, "a finite number")
        for name, t in self.thresholds.items():
            check(self, finite(t) and t >= 0, f"thresholds.{name}", t, "a finite number >= 0")
            _check_threshold_term(name)
        check(self, self.tracker_workers is None or self.tracker_workers >= 1, "tracker_workers", self.tracker_workers,
              ">= 1 (or null for the default)")
        from rlpf.core.backend import BACKENDS

        check(self, self.backend in BACKENDS, "backend", self.backend, f"one of {', '.join(BACKENDS)}")
        check(self, self.address is None or self.backend == "ray", "address", self.address,
              "null unless backend is ray (the local backend runs on this machine)")

    def resolved_weights(self) -> dict[str, float]:
        """Every built-in physics term at -1/threshold, then the ``weights`` entries (changed or added);
        tracking terms at 0 (reported) when tracking, unless weighted."""
        weights = {name: -1.0 / info.threshold for name, info in physics_terms().items()}
        weights.update({k: float(v) for k, v in self.weights.items()})
        if self.trackers:
            for name in TRACKING_TERMS:
                weights.setdefault(name, 0.0)
        return weights

    def resolved_thresholds(self, names: Iterable[str]) -> dict[str, float]:
        """The plausibility threshold of every term in ``names`` that has one (the config's override first)."""
        out = {}
        for name in names:
            if name in self.thresholds:
                out[name] = float(self.thresholds[name])
            else:
                t = get_reward(name).threshold
                if t is not None:
                    out[name] = t
        return out


def _check_threshold_term(name: str) -> None:
    """A threshold override must name a term that has a threshold (a typo would silently do nothing)."""
    from rlpf.core.config import ConfigError

    with_threshold = sorted(k for k, info in registered().items() if info.threshold is not None)
    if name in with_threshold:
        return
    try:  # a plugin ('pkg.mod:obj' or entry point) that declares its own threshold
        info = get_reward(name) if name not in registered() else registered()[name]
    except RewardError as e:
        info = None
        why = e.problem.split(";")[0]
    else:
        why = "has no plausibility threshold"
    if info is not None and info.threshold is not None:
        return
    raise ConfigError(f"{why}; terms with a threshold: {', '.join(with_threshold)}", f"thresholds.{name}", ScoreConfig)


def score_clips(clips: list[Clip], world, cfg: ScoreConfig | None = None, **context) -> list[dict]:
    """Score already-loaded, validated clips of one world; one report entry per clip (or error)."""
    cfg = cfg or ScoreConfig()
    weights = cfg.resolved_weights()
    thresholds = cfg.resolved_thresholds(weights)
    cw = compile_world(world)
    if cfg.trackers and "tracker" not in context:
        context["tracker"] = load_tracker(cfg.trackers[0], cw)
    if cfg.tracker_workers and "tracker_workers" not in context:
        context["tracker_workers"] = cfg.tracker_workers
    table = evaluate_rewards(clips, weights, world=cw, prompts=[c.prompt for c in clips], **context)
    out = []
    for i, clip in enumerate(clips):
        if i in table.errors:
            out.append({"source": clip.source, "error": table.errors[i]})
            continue
        terms = {k: v[i] for k, v in table.terms.items() if v[i] is not None}
        # every term with a threshold judges plausibility whatever its weight (0 included): the weights
        # always hold every physics term, so a weight override cannot hide one; no threshold, no say
        violations = sorted(k for k, v in terms.items() if (k in thresholds and v > thresholds[k])
                            or (k == "tracking_success" and v < 1.0))  # a failed track is implausible
        out.append({
            "source": clip.source,
            "prompt": clip.prompt,
            "world": cw.name,
            "score": round(float(table.total[i]), 6),
            "plausible": not violations,
            "violations": violations,
            "terms": {k: round(v, 6) for k, v in terms.items()},
        })
    return out


@dataclass
class ClipScore:
    """One scored clip: exactly one entry of the report's ``clips`` (docs/report-format.md)."""

    source: str
    prompt: str | None
    world: str
    score: float
    """Weighted total of the terms: 0 = nothing found, more negative = less plausible."""
    plausible: bool
    """No term with a threshold above it (and, with trackers, the clip was tracked)."""
    violations: list[str]
    terms: dict[str, float]
    tracking: dict | None = None
    """Per tracker: success, fell, diverged, max_error_m (only when scored with trackers)."""

    def to_json(self) -> dict:
        out = {"source": self.source, "prompt": self.prompt, "world": self.world, "score": self.score,
               "plausible": self.plausible, "violations": self.violations, "terms": self.terms}
        if self.tracking is not None:
            out["tracking"] = self.tracking
        return out


@dataclass
class ScoreError:
    """An input that could not be scored, and why (an entry of the report's ``errors``)."""

    source: str
    error: str

    def to_json(self) -> dict:
        return {"source": self.source, "error": self.error}


@dataclass
class ScoreReport:
    """What ``rlpf.score`` returns; ``to_json()`` is exactly the report ``rlpf score --out`` writes."""

    world: str | None
    clips: list[ClipScore]
    errors: list[ScoreError]
    summary: dict
    """n_clips, n_errors, plausible_rate, mean_score, term_means, flagged_by, weights, thresholds (and
    tracking_success_rate, trackers, tracker_agreement with trackers)."""

    @property
    def plausible_rate(self) -> float | None:
        return self.summary["plausible_rate"]

    def to_json(self) -> dict:
        return {"world": self.world, "clips": [c.to_json() for c in self.clips],
                "errors": [e.to_json() for e in self.errors], "summary": self.summary}


def score(clips, world=None, trackers: Iterable = (), weights: dict | None = None,
          thresholds: dict | None = None, workers: int | None = None, progress=None, backend: str = "local",
          address: str | None = None) -> ScoreReport:
    """Score clips for physical plausibility: the Python API behind ``rlpf score``.

    ``clips``: a ``Clip``, a list of them, or paths of clip files / directories (as on the command
    line). ``world``: a world name, MJCF path or ``World``; default: each clip's own. ``trackers``:
    pd, learned, a trained tracker's run directory or a Tracker (the first fills tracking_success
    and friends). ``weights`` / ``thresholds``: overrides, as ``weights.NAME=W`` on the command line
    (one weight changes, the others keep their defaults). In-memory clips are validated exactly as
    files are (and copied first: your arrays are never changed); a bad clip is an entry in
    ``errors``, the others are scored. ``backend`` / ``address``: where the tracking pass runs, local
    processes or Ray actors (``ScoreConfig.backend``); the report does not depend on it.
    """
    from rlpf.core.clips import validate

    cfg = ScoreConfig(world=world if isinstance(world, str) or world is None else None,
                      weights=dict(weights or {}), thresholds=dict(thresholds or {}),
                      trackers=[t for t in trackers if isinstance(t, str)], tracker_workers=workers,
                      backend=backend, address=address)
    objects = [t for t in trackers if not isinstance(t, str)]
    if isinstance(clips, (Clip, str, os.PathLike)):
        clips = [clips]
    clips = list(clips)
    if all(isinstance(c, (str, os.PathLike)) for c in clips):
        _check_plugins_and_trackers(cfg)
        by_world, errors = load_by_world([os.fspath(c) for c in clips], cfg.world)
    else:
        if not all(isinstance(c, Clip) for c in clips):
            raise TypeError("rlpf.score: give Clip objects or paths, not a mix")
        _check_plugins_and_trackers(cfg)
        by_world, errors = {}, []
        for clip in clips:
            target = world if world is not None else clip.world
            try:
                if target is None:
                    raise ClipError(clip.source, "no world: the clip has none and no world= was given")
                cw = compile_world(target)
                own = Clip(qpos=np.array(clip.qpos, dtype=np.float64), fps=clip.fps, world=cw.name, prompt=clip.prompt,
                           actions=None if clip.actions is None else np.array(clip.actions, np.float64),
                           source=clip.source)
                validate(own, cw.model, cw.name)
            except (ClipError, UnknownWorldError) as e:
                errors.append({"source": clip.source, "error": getattr(e, "problem", str(e))})
                continue
            by_world.setdefault(target, []).append(own)
    report = _score_groups(by_world, errors, cfg, progress, tracker_objects=objects)
    return ScoreReport(world=report["world"], clips=[ClipScore(**c) for c in report["clips"]],
                       errors=[ScoreError(**e) for e in report["errors"]], summary=report["summary"])


def score_paths(paths: list[str], cfg: ScoreConfig | None = None, progress=None) -> dict:
    """Load, validate and score every clip under ``paths``; returns the report dict."""
    cfg = cfg or ScoreConfig()
    _check_plugins_and_trackers(cfg)
    by_world, errors = load_by_world(paths, cfg.world)
    return _score_groups(by_world, errors, cfg, progress)


def _check_plugins_and_trackers(cfg: ScoreConfig) -> None:
    for name in cfg.resolved_weights():  # an unknown plugin is a config error, not a per-clip one
        get_reward(name)
    for spec in cfg.trackers:  # so is an unknown tracker
        check_tracker_spec(spec)


def _score_groups(by_world: dict, errors: list[dict], cfg: ScoreConfig, progress=None,
                  tracker_objects: list | None = None) -> dict:
    """Score validated clips grouped by world; the report dict (docs/report-format.md)."""
    weights = cfg.resolved_weights()
    specs = list(cfg.trackers) + list(tracker_objects or [])
    names = [s if isinstance(s, str) else getattr(s, "name", type(s).__name__) for s in specs]
    if specs:
        cfg = dataclasses.replace(cfg, trackers=names)  # tracking terms weighted like named trackers
        weights = cfg.resolved_weights()
    results: list[dict] = []
    tracked: dict[str, list] = {name: [] for name in names}   # tracker -> results on every scored clip
    for name, clips in by_world.items():
        trackers = {label: load_tracker(spec, name) for label, spec in zip(names, specs)}
        for tracker in trackers.values():  # one parallel pass per world and tracker; plugins read its cache
            track_clips(clips, tracker, workers=cfg.tracker_workers, backend=cfg.backend, address=cfg.address)
        context = {"tracker": trackers[names[0]]} if trackers else {}
        for start in range(0, len(clips), 16):
            batch = clips[start:start + 16]
            for clip, entry in zip(batch, score_clips(batch, name, cfg, **context)):
                if "error" in entry:
                    errors.append(entry)
                    continue
                if trackers:
                    outcome = {label: track_clips([clip], tr)[0] for label, tr in trackers.items()}
                    entry["tracking"] = {label: _track_entry(r) for label, r in outcome.items()}
                    for label, r in outcome.items():
                        tracked[label].append(r)
                results.append(entry)
            if progress:
                progress(len(batch))
    worlds = sorted({r["world"] for r in results} | ({cfg.world} if cfg.world else set()))
    summary = summarize(results, errors, weights, cfg.resolved_thresholds(weights))
    if names:
        summary["tracking_success_rate"] = tracker_summary(tracked[names[0]])["success_rate"]
        summary["trackers"] = {label: tracker_summary(rs) for label, rs in tracked.items()}
        summary["tracker_agreement"] = agreement({label: [r.success for r in rs] for label, rs in tracked.items()})
    return {
        "world": worlds[0] if len(worlds) == 1 else ("mixed" if worlds else cfg.world),
        "clips": results,
        "errors": errors,
        "summary": summary,
    }


def _track_entry(r) -> dict:
    err = r.body_error_m[np.isfinite(r.body_error_m)]
    return {"success": bool(r.success), "fell": bool(r.fell), "diverged": bool(r.diverged),
            "max_error_m": round(float(err.max()), 6) if err.size else None}


def summarize(results: list[dict], errors: list[dict], weights: dict, thresholds: dict) -> dict:
    n = len(results)
    terms = sorted({k for r in results for k in r["terms"]})
    return {
        "n_clips": n,
        "n_errors": len(errors),
        "plausible_rate": (sum(r["plausible"] for r in results) / n) if n else None,
        "mean_score": float(np.mean([r["score"] for r in results])) if n else None,
        "term_means": {k: float(np.mean([r["terms"][k] for r in results if k in r["terms"]])) for k in terms},
        "flagged_by": {k: sum(k in r["violations"] for r in results) for k in terms},
        "weights": weights,
        "thresholds": thresholds,
    }


def write_report(report: dict, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=2)
    os.replace(tmp, path)


SHORT = {"root_impulse_bws": "impulse", "penetration_m": "pen_m", "float_m": "float_m", "skate_mps": "skate", "root_residual_bw": "root_bw",
         "joint_limit_rad": "limit", "torque_excess": "torque", "object_unexplained_mps": "object",
         "tracking_success": "tracked", "tracking_error_m": "track_m", "object_divergence_m": "obj_div"}


def format_table(report: dict) -> str:
    """A readable table: one row per clip, a column per term, violations marked with '!'."""
    clips = report["clips"]
    terms = sorted({k for r in clips for k in r["terms"]})
    head = ["clip", "world", "score", "ok"] + [SHORT.get(t, t[:10]) for t in terms]
    rows = []
    for r in clips:
        cells = [_short_source(r["source"]), r["world"], f"{r['score']:.2f}", "yes" if r["plausible"] else "NO"]
        for t in terms:
            v = r["terms"].get(t)
            cells.append("-" if v is None else f"{v:.3f}{'!' if t in r['violations'] else ''}")
        rows.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    s = report["summary"]
    if s["n_clips"]:
        lines.append(f"\n{s['n_clips']} clips scored, {s['plausible_rate']:.0%} plausible"
                     f" ('!' = above the term's threshold: {', '.join(f'{SHORT.get(k, k)}>{v:g}' for k, v in s['thresholds'].items())})")
    for name, t in s.get("trackers", {}).items():
        if t["n_clips"]:
            lines.append(f"tracker {name}: {t['success_rate']:.0%} tracked ({t['n_fell']} fell, {t['n_diverged']} diverged"
                         + (f", mean body error {t['mean_error_m']:.3f} m)" if t["mean_error_m"] is not None else ")"))
    for pair, a in s.get("tracker_agreement", {}).items():
        if a["rate"] is not None:
            lines.append(f"trackers {pair}: agree on {a['rate']:.0%} ({a['both_succeed']} both tracked, {a['both_fail']} both failed)")
    for e in report["errors"]:
        lines.append(f"ERROR {e['source']}: {e['error']}")
    return "\n".join(lines)


def _short_source(source: str, width: int = 40) -> str:
    return source if len(source) <= width else "..." + source[-(width - 3):]


__all__ = ["ScoreConfig", "ScoreReport", "ClipScore", "ScoreError", "score", "score_clips", "score_paths", "write_report", "format_table", "RewardError", "TrackerError"]
