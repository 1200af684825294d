"""``rlpf track``: load clips, track them with a tracker, report (JSON + table) and render videos.

    {"world": "ant", "tracker": "pd",
     "clips":  [{"source", "prompt", "world", "success", "mean_error_m", "max_error_m", "fell", "diverged",
                 "threshold_m", "n_frames", "video",
                 + with a tracker that judges objects (Meta-World's MocapTracker): "objects_tracked",
                 "objects": {name: {"kind", "max_error_m", "threshold_m", "tracked"}}}],
     "errors": [{"source", "error"}],
     "summary": {"n_clips", "n_errors", "success_rate", "mean_error_m", "n_fell", "n_diverged", "n_videos"}}
"""
from __future__ import annotations

import os

import numpy as np

from rlpf.core.clips import Clip


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None  # JSON has no inf/nan


def result_entry(clip: Clip, result, world: str) -> dict:
    err = np.asarray(result.body_error_m, float)
    finite = err[np.isfinite(err)]
    entry = {
        "source": clip.source,
        "prompt": clip.prompt,
        "world": world,
        "success": bool(result.success),
        "mean_error_m": _num(result.mean_error_m),
        "max_error_m": _num(float(finite.max())) if finite.size == err.size and err.size else None,
        "fell": bool(result.fell),
        "diverged": bool(result.diverged),
        "threshold_m": float(result.threshold_m),
        "n_frames": int(clip.n_frames),
        "video": None,
    }
    if result.objects_tracked is not None:   # trackers that judge objects too (MocapTracker)
        entry["objects_tracked"] = bool(result.objects_tracked)
        entry["objects"] = {name: {k: (_num(v) if isinstance(v, float) else v) for k, v in o.items()}
                            for name, o in result.info.get("objects", {}).items()}
    return entry


def summarize(entries: list[dict], errors: list[dict]) -> dict:
    n = len(entries)
    errs = [e["mean_error_m"] for e in entries if e["mean_error_m"] is not None]
    return {
        "n_clips": n,
        "n_errors": len(errors),
        "success_rate": (sum(e["success"] for e in entries) / n) if n else None,
        "mean_error_m": float(np.mean(errs)) if errs else None,
        "n_fell": sum(e["fell"] for e in entries),
        "n_diverged": sum(e["diverged"] for e in entries),
        "n_videos": sum(e["video"] is not None for e in entries),
    }


def format_table(report: dict) -> str:
    rows = [("source", "prompt", "success", "mean_err_m", "max_err_m", "fell/diverged")]
    for e in report["clips"]:
        state = "/".join([k for k in ("fell", "diverged") if e[k]]
                         + (["objects"] if e.get("objects_tracked") is False else [])) or "-"
        f = lambda v: "inf" if v is None else f"{v:.3f}"  # noqa: E731
        rows.append((e["source"], (e["prompt"] or "")[:28], "yes" if e["success"] else "NO",
                     f(e["mean_error_m"]), f(e["max_error_m"]), state))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    s = report["summary"]
    if s["n_clips"]:
        lines.append(f"{s['n_clips']} clips tracked with {report['tracker']}: success {s['success_rate']:.0%}, "
                     f"mean error {s['mean_error_m'] if s['mean_error_m'] is not None else float('inf'):.3f} m, "
                     f"{s['n_fell']} fell, {s['n_diverged']} diverged")
    for e in report["errors"]:
        lines.append(f"error: {e['source']}: {e['error']}")
    return "\n".join(lines)


def unique_video_path(folder: str, source: str, taken: set[str]) -> str:
    """``folder/<clip name>.mp4``, with ``-2``, ``-3``... when two sources share a name."""
    from rlpf.viz.render import video_name

    name = video_name(source)
    stem, ext = os.path.splitext(name)
    k = 1
    while name in taken:
        k += 1
        name = f"{stem}-{k}{ext}"
    taken.add(name)
    return os.path.join(folder, name)
