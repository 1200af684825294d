"""Score clip files for physical plausibility: the engine behind ``rlpf score``.

Data flow: files -> load_clips -> validate against the world -> reward plugins (evaluate_rewards)
-> per-clip score (weighted total) and plausible flag -> report dict (DESIGN.md contract).
A bad file or a plugin failing on one clip becomes an entry in ``errors``; the rest are scored.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from rlpf.clips import Clip, ClipError, clip_files, load_clips, validate
from rlpf.envs.worlds import UnknownWorldError, compile_world
from rlpf.rewards.registry import RewardError, evaluate_rewards, get_reward, physics_terms


@dataclass
class ScoreConfig:
    """What ``rlpf score`` computes."""

    world: str | None = None
    """Built-in world name or MJCF path; overrides the world stored in the clips."""
    weights: dict[str, float] = field(default_factory=dict)
    """Reward name (registered, 'pkg.mod:obj' or entry point) -> weight. Empty: every built-in physics
    term at -1/threshold, so each counts in units of its plausibility threshold. Give a term weight 0
    to report it without scoring it."""
    thresholds: dict[str, float] = field(default_factory=dict)
    """Overrides of the plausibility thresholds (term -> largest plausible value)."""

    def resolved_weights(self) -> dict[str, float]:
        if self.weights:
            return {k: float(v) for k, v in self.weights.items()}
        return {name: -1.0 / info.threshold for name, info in physics_terms().items()}

    def resolved_thresholds(self, names: Iterable[str]) -> dict[str, float]:
        out = {}
        for name in names:
            if name in self.thresholds:
                out[name] = float(self.thresholds[name])
            else:
                t = get_reward(name).threshold
                if t is not None:
                    out[name] = t
        return out


def score_clips(clips: list[Clip], world, cfg: ScoreConfig | None = None, **context) -> list[dict]:
    """Score already-loaded, validated clips of one world; one report entry per clip (or error)."""
    cfg = cfg or ScoreConfig()
    weights = cfg.resolved_weights()
    thresholds = cfg.resolved_thresholds(weights)
    cw = compile_world(world)
    table = evaluate_rewards(clips, weights, world=cw, prompts=[c.prompt for c in clips], **context)
    out = []
    for i, clip in enumerate(clips):
        if i in table.errors:
            out.append({"source": clip.source, "error": table.errors[i]})
            continue
        terms = {k: v[i] for k, v in table.terms.items() if v[i] is not None}
        violations = sorted(k for k, v in terms.items() if k in thresholds and v > thresholds[k])
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


def score_paths(paths: list[str], cfg: ScoreConfig | None = None, progress=None) -> dict:
    """Load, validate and score every clip under ``paths``; returns the report dict."""
    cfg = cfg or ScoreConfig()
    weights = cfg.resolved_weights()
    for name in weights:  # an unknown plugin is a config error, not a per-clip one
        get_reward(name)
    errors: list[dict] = []
    by_world: dict[str, list[Clip]] = {}
    for path in clip_files(paths):
        try:
            clips = load_clips(path)
        except ClipError as e:
            errors.append({"source": e.source, "error": e.problem})
            continue
        for clip in clips:
            name = cfg.world or clip.world
            try:
                if not name:
                    raise ClipError(clip.source, "no world: the file has no 'world' key and no --world was given")
                cw = compile_world(name)
                validate(clip, cw.model, cw.name)
            except ClipError as e:
                errors.append({"source": e.source, "error": e.problem})
                continue
            except UnknownWorldError as e:
                errors.append({"source": clip.source, "error": str(e)})
                continue
            by_world.setdefault(name, []).append(clip)
    results: list[dict] = []
    for name, clips in by_world.items():
        for start in range(0, len(clips), 16):
            batch = clips[start:start + 16]
            for entry in score_clips(batch, name, cfg):
                (errors if "error" in entry else results).append(entry)
            if progress:
                progress(len(batch))
    worlds = sorted({r["world"] for r in results} | ({cfg.world} if cfg.world else set()))
    return {
        "world": worlds[0] if len(worlds) == 1 else ("mixed" if worlds else cfg.world),
        "clips": results,
        "errors": errors,
        "summary": summarize(results, errors, weights, cfg.resolved_thresholds(weights)),
    }


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
         "joint_limit_rad": "limit", "torque_excess": "torque", "object_unexplained_mps": "object"}


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
    for e in report["errors"]:
        lines.append(f"ERROR {e['source']}: {e['error']}")
    return "\n".join(lines)


def _short_source(source: str, width: int = 40) -> str:
    return source if len(source) <= width else "..." + source[-(width - 3):]


__all__ = ["ScoreConfig", "score_clips", "score_paths", "write_report", "format_table", "RewardError"]
