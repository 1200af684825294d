"""The before/after report of a fine-tuning run: report.json, report.md, sample clips and videos.

``before`` is the base model, ``after`` the fine-tuned one, both measured the same way on the same
prompts with the same sampling seed: tracking success under every evaluation tracker (the first is
``tracking_success``), the scorer's plausible rate and the mean of every physics term, command
accuracy, and FID / diversity / R-precision against clean held-out clips the model never saw.
"""
from __future__ import annotations

import os
import sys

from rlpf.core.clips import Clip, save_clips

HEADLINE = ("tracking_success", "plausible_rate", "command_accuracy", "fid", "diversity", "r_precision_top1")


def measure(wm, evaluator, heldout: list[Clip], trackers: dict, n_per_prompt: int, seed: int,
            temperature: float = 1.0, workers: int | None = None) -> tuple[dict, list[Clip]]:
    """Sample ``n_per_prompt`` clips per held-out prompt and measure them; returns (metrics, clips)."""
    from rlpf.worldmodel.evaluation import evaluate_samples

    prompts = sorted({c.prompt for c in heldout if c.prompt in wm.prompts}) or list(wm.prompts)
    clips = wm.generate(prompts, n=n_per_prompt, temperature=temperature, seed=seed)
    rep = evaluate_samples(clips, evaluator, heldout, seed, trackers, workers)
    metrics = {k: rep.get(k) for k in HEADLINE}
    if "task_success" in rep:   # worlds with a task (Meta-World): generated "do the task" clips that do it
        metrics["task_success"] = rep["task_success"]
    for name, summary in rep.get("tracking", {}).items():
        metrics[f"tracking_success_{name}"] = summary["success_rate"]
    metrics.update({"physics": rep["physics"], "flagged_by": rep["flagged_by"], "mm_dist": rep.get("mm_dist"),
                    "n_clips": len(clips), "per_prompt": rep["per_prompt"], "tracking": rep.get("tracking", {}),
                    "reference": {k: rep["reference"].get(k) for k in ("fid", "diversity", "r_precision_top1")}})
    return metrics, clips


def compare(before: dict, after: dict) -> dict:
    """after - before for every headline number and physics term present in both."""
    keys = [k for k in before if isinstance(before.get(k), (int, float)) and isinstance(after.get(k), (int, float))]
    out = {k: round(after[k] - before[k], 4) for k in keys if k != "n_clips"}
    for term, v in before.get("physics", {}).items():
        if term in after.get("physics", {}):
            out[f"physics.{term}"] = round(after["physics"][term] - v, 6)
    return out


def write_report(run_dir: str, report: dict) -> tuple[str, str]:
    """Write RUN/report.json and RUN/report.md; returns their paths."""
    from rlpf.core.run_dir import write_json

    json_path, md_path = os.path.join(run_dir, "report.json"), os.path.join(run_dir, "report.md")
    write_json(json_path, report)
    with open(md_path, "w") as f:
        f.write(format_markdown(report))
    return json_path, md_path


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def format_markdown(report: dict) -> str:
    before, after = report["before"], report["after"]
    method = report.get("method", "fine-tuned")
    rows = [k for k in before if k.startswith("tracking_success_")]
    rows = ["tracking_success", *rows, "plausible_rate", "command_accuracy",
            *(["task_success"] if "task_success" in before else []), "fid", "diversity", "r_precision_top1", "mm_dist"]
    lines = [f"# {method}: before / after", "",
             f"World `{report.get('world')}`, {before.get('n_clips')} clips each ({report.get('n_per_prompt')} per "
             f"prompt, sampling seed {report.get('seed')}); reward tracker `{report.get('reward_tracker')}`, "
             f"evaluation trackers {report.get('eval_trackers')}.", "",
             "| metric | base | " + method + " | change |", "|---|---|---|---|"]
    for k in rows:
        b, a = before.get(k), after.get(k)
        d = (a - b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
        lines.append(f"| {k} | {_fmt(b)} | {_fmt(a)} | {_fmt(d)} |")
    if report.get("worlds"):   # a multi-world model: the table above is the mean over its worlds
        cols = ["tracking_success", "plausible_rate", "command_accuracy", "task_success", "fid"]
        lines += ["", "The rows above are means over the worlds (each world once). Per world (base -> after):", "",
                  "| world | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for world, r in report["worlds"].items():
            lines.append(f"| {world} | " + " | ".join(
                f"{_fmt(r['before'].get(c))} -> {_fmt(r['after'].get(c))}" for c in cols) + " |")
    lines += ["", "Physics terms (mean over clips; lower is better):", "", "| term | base | " + method + " |", "|---|---|---|"]
    for term, v in before.get("physics", {}).items():
        lines.append(f"| {term} | {_fmt(v)} | {_fmt(after.get('physics', {}).get(term))} |")
    ref = before.get("reference", {})
    lines += ["", f"Held-out data for reference: FID between its halves {_fmt(ref.get('fid'))}, diversity "
              f"{_fmt(ref.get('diversity'))}, R-precision top-1 {_fmt(ref.get('r_precision_top1'))}.", ""]
    lines += ["Per prompt (tracking success / command accuracy, base -> after):", "", "| prompt | tracking | command |",
              "|---|---|---|"]
    key = f"tracking_success_{report.get('eval_trackers', ['pd'])[0]}"
    for p, b in before.get("per_prompt", {}).items():
        a = after.get("per_prompt", {}).get(p, {})
        lines.append(f"| {p} | {_fmt(b.get(key))} -> {_fmt(a.get(key))} | {_fmt(b.get('command_accuracy'))} -> "
                     f"{_fmt(a.get('command_accuracy'))} |")
    if report.get("training"):
        t = report["training"]
        lines += ["", "Training: " + ", ".join(f"{k} {_fmt(v)}" for k, v in t.items() if not isinstance(v, (dict, list)))]
    if report.get("videos"):
        lines += ["", "Videos (reference | tracked): " + ", ".join(f"`{v}`" for v in report["videos"])]
    for e in report.get("video_errors", []):
        lines += ["", f"Video `{e['video']}` (and the rest of its set) not made: {e['error']}"]
    return "\n".join(lines) + "\n"


def save_samples(run_dir: str, name: str, clips: list[Clip]) -> str:
    """All sampled clips of one model as one batch file RUN/samples/<name>.npz (``rlpf score`` reads it)."""
    path = os.path.join(run_dir, "samples", f"{name}.npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_clips(path, clips)
    return path


def render_videos(run_dir: str, name: str, clips: list[Clip], tracker, n_prompts: int = 3,
                  errors: list | None = None) -> list[str]:
    """Generated (left) vs tracked (right) mp4s for the first clip of ``n_prompts`` prompts.

    Videos come after the finished training, so a video that cannot be made (no OpenGL backend, an
    unwritable videos/ directory, imageio or ffmpeg missing: ``rlpf.viz.render.video_failures``) never
    loses the run: it is printed as a warning, appended to ``errors`` as ``{"video", "error"}`` (the
    report's ``video_errors``), and the remaining videos are skipped. Returns the videos written."""
    from rlpf.viz.render import describe_failure, render_tracking_video, video_failures
    from rlpf.judge.tracking import track_clips

    out, seen = [], []
    for clip in clips:
        if clip.prompt in seen or len(seen) >= n_prompts:
            continue
        seen.append(clip.prompt)
        result = track_clips([clip], tracker)[0]
        path = os.path.join(run_dir, "videos", f"{name}_{clip.prompt.replace(' ', '_')}.mp4")
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            render_tracking_video(clip, result, path, clip.world)
        except video_failures() as e:
            why = describe_failure(e)
            print(f"warning: {name} videos skipped, {os.path.relpath(path, run_dir)} could not be made ({why}); "
                  "the report is written without them", file=sys.stderr)
            if errors is not None:
                errors.append({"video": os.path.relpath(path, run_dir), "error": why})
            return out
        out.append(os.path.relpath(path, run_dir))
    return out


def headline_table(reports: dict[str, dict], trackers: list[str]) -> str:
    """A markdown table: one row per run (name -> report), base first from the first report's before."""
    first = next(iter(reports.values()))
    cols = [f"tracking_success_{t}" for t in trackers] + ["plausible_rate", "command_accuracy",
                                                           *(["task_success"] if "task_success" in first["before"] else []),
                                                           "fid", "diversity"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    rows = [("Base", first["before"])] + [(name, r["after"]) for name, r in reports.items()]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in cols) + " |")
    return "\n".join(lines)

