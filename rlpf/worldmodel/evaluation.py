"""Evaluating a world model: physics and generation quality, each measured without the other.

For every prompt, ``n_per_prompt`` clips are generated and measured four ways:

- command accuracy: the motion's own measured label (rlpf.data.motion_data.label_motion) equals the prompt;
  task success (worlds whose data declares task prompts, Meta-World): the same over the clips asked to
  do the task ("open the drawer"), i.e. the fraction that measurably reach the task's success;
- physics: the scorer's plausible rate and the mean of every physics term;
- FID, diversity, R-precision, MM-dist in the learned motion-text feature space (rlpf.worldmodel.evaluator),
  against clean held-out clips the model never trained on;
- generation speed (clips per minute).

The same numbers on the held-out real clips are reported under ``reference`` (FID there is between
two halves of the held-out set), so a reader sees how far from the data the model is.
"""
from __future__ import annotations

import time

import numpy as np

from rlpf.core.clips import Clip


def evaluate_world_model(wm, evaluator, heldout: list[Clip], n_per_prompt: int = 32, temperature: float = 1.0,
                         seed: int = 0, prompts: list[str] | None = None, trackers: dict | None = None,
                         tracker_workers: int | None = None) -> dict:
    """Generate ``n_per_prompt`` clips per prompt and measure them (``evaluate_samples``)."""
    prompts = prompts or sorted({c.prompt for c in heldout if c.prompt in wm.prompts}) or list(wm.prompts)
    t0 = time.perf_counter()
    clips = wm.generate(prompts, n=n_per_prompt, temperature=temperature, seed=seed)
    gen_s = time.perf_counter() - t0
    report = evaluate_samples(clips, evaluator, heldout, seed, trackers, tracker_workers)
    report["generation_clips_per_min"] = round(60 * len(clips) / gen_s, 1)
    report["temperature"] = temperature
    return report


def evaluate_samples(clips: list[Clip], evaluator, heldout: list[Clip], seed: int = 0, trackers: dict | None = None,
                     tracker_workers: int | None = None) -> dict:
    """Measure generated clips against held-out data; with ``trackers`` ({name: Tracker}), also their
    tracking success under each (``tracking_success`` is the first tracker's; results cached in the clips)."""
    from rlpf.data.motion_data import command_matches, task_success

    report = measure_clips(clips, evaluator, heldout, seed)
    matches = command_matches(clips)
    success = task_success(clips, matches)
    if success is not None:   # worlds with a task (Meta-World): the done prompts' clips that do it
        report["task_success"] = success
    physics = report.pop("_plausible")
    tracked = {}
    if trackers:
        from rlpf.judge.tracking import track_clips, tracker_summary

        tracked = {name: track_clips(clips, tr, workers=tracker_workers) for name, tr in trackers.items()}
        report["tracking"] = {name: tracker_summary(rs) for name, rs in tracked.items()}
        report["tracking_success"] = report["tracking"][next(iter(trackers))]["success_rate"]
    report["per_prompt"] = {}
    for p in sorted({c.prompt for c in clips}):
        idx = [i for i, c in enumerate(clips) if c.prompt == p]
        entry = {"command_accuracy": float(np.mean([matches[i] for i in idx])),
                 "plausible_rate": float(np.mean([physics[i] for i in idx]))}
        for name, rs in tracked.items():
            entry[f"tracking_success_{name}"] = float(np.mean([rs[i].success for i in idx]))
        report["per_prompt"][p] = entry
    half = len(heldout) // 2
    reference = measure_clips(heldout[half:], evaluator, heldout[:half], seed) if half >= 2 else {}
    reference.pop("_plausible", None)
    report["reference"] = reference
    return report


def measure_clips(clips: list[Clip], evaluator, real: list[Clip], seed: int = 0) -> dict:
    """Command accuracy, physics and quality metrics of ``clips`` against ``real`` clips."""
    from rlpf.data.motion_data import command_accuracy
    from rlpf.worldmodel.evaluator import quality_metrics
    from rlpf.judge.scoring import score_clips

    scored = score_clips(clips, clips[0].world)
    ok = [s for s in scored if "error" not in s]
    terms = sorted({k for s in ok for k in s["terms"]})
    out = {
        "n_clips": len(clips),
        "command_accuracy": float(command_accuracy(clips)),
        "plausible_rate": float(np.mean([s["plausible"] for s in ok])) if ok else None,
        "physics": {k: float(np.mean([s["terms"][k] for s in ok if k in s["terms"]])) for k in terms},
        "flagged_by": {k: int(sum(k in s["violations"] for s in ok)) for k in terms},
        "score_errors": len(scored) - len(ok),
        "_plausible": [bool(s.get("plausible", False)) for s in scored],
    }
    out.update({k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in quality_metrics(evaluator, clips, real, seed=seed).items()})
    return out


def format_evaluation(report: dict) -> str:
    ref = report.get("reference", {})
    rows = [("command accuracy", "command_accuracy"), ("plausible rate", "plausible_rate"), ("FID", "fid"),
            ("diversity", "diversity"), ("R-precision top-1", "r_precision_top1"),
            ("R-precision top-3", "r_precision_top3"), ("MM-dist", "mm_dist")]
    lines = [f"{'metric':22s} {'generated':>10s} {'held-out data':>14s}"]
    for label, key in rows:
        lines.append(f"{label:22s} {_fmt(report.get(key)):>10s} {_fmt(ref.get(key)):>14s}")
    lines.append(f"{'clips / minute':22s} {_fmt(report.get('generation_clips_per_min')):>10s}")
    lines.append("")
    lines.append(f"{'prompt':28s} {'command acc':>11s} {'plausible':>10s}")
    for p, v in report.get("per_prompt", {}).items():
        lines.append(f"{p:28s} {v['command_accuracy']:11.2f} {v['plausible_rate']:10.2f}")
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)
