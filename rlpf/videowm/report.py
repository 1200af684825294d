"""The pixel world model's report: what its videos are worth, measured alike before and after RLPF.

Per model, ``eval_per_prompt`` videos per prompt are generated with one seed and lifted to clips:

- ``tracking_success``: the tracker follows the lifted clip (rlpf.judge.tracking);
- ``plausible_rate``: no physics term of the lifted clip above its threshold (rlpf.judge.scoring);
- ``command_accuracy``: the lifted motion does what the prompt says (rlpf.data.motion_data's labeller);
- ``video_fid``: Fréchet distance between generated videos and held-out rendered videos in the pose
  lifter's embedding (per video: the mean and spread over time of the lifter's per-frame features:
  a network trained on renders of the world only, not on the world model, as FID uses Inception),
  taken in the held-out renders' top ``FID_DIMS`` principal axes;
  ``reference_video_fid`` is two halves of the held-out renders against each other (the noise floor);
- ``diversity``: mean distance between random pairs of generated videos in that embedding.
"""
from __future__ import annotations

import os
import sys

import numpy as np

HEADLINE = ("tracking_success", "plausible_rate", "command_accuracy", "video_fid", "diversity", "lift_confidence")


def video_embeddings(lifter, videos) -> np.ndarray:
    """[N, 2E]: the mean and standard deviation over time of the pose lifter's temporal features."""
    import torch

    from rlpf.lifting.frames import resize

    size = int(lifter.meta["input_size"])
    out = []
    with torch.no_grad():
        for v in videos:
            x = torch.from_numpy(resize(np.asarray(v), size)).permute(0, 3, 1, 2).float()[None] / 255.0
            net = lifter.net
            h = net.temporal(net.encoder(x[0]).reshape(1, len(v), -1))[0].numpy()
            out.append(np.concatenate([h.mean(0), h.std(0)]))
    return np.stack(out)


FID_DIMS = 32
"""Principal components of the held-out renders' embeddings the FID and diversity are taken in: a few
hundred videos cannot fit a 384-dimensional covariance (the Fréchet distance of rank-deficient
covariances mostly measures the sample size), 32 dimensions can."""


def project(real: np.ndarray, gen: np.ndarray, dims: int = FID_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in the top ``dims`` principal axes of ``real`` (centred on its mean)."""
    mu = real.mean(0)
    _, _, vt = np.linalg.svd(real - mu, full_matrices=False)
    basis = vt[:min(dims, len(vt))].T
    return (real - mu) @ basis, (gen - mu) @ basis


def measure_videos(wm, prompts: list[str], n_per_prompt: int, seed: int, trackers: dict, heldout_videos,
                   workers: int | None = None) -> tuple[dict, np.ndarray, list]:
    """(metrics, videos, lifted clips) of ``n_per_prompt`` generated videos per prompt."""
    from rlpf.data.motion_data import command_matches
    from rlpf.judge.scoring import score_clips
    from rlpf.judge.tracking import track_clips, tracker_summary
    from rlpf.worldmodel.evaluator import diversity, fid

    conf: list = []
    videos, clips = wm.generate_videos(prompts, n=n_per_prompt, seed=seed, confidence=conf)
    scored = score_clips(clips, wm.world)
    ok = [s for s in scored if "error" not in s]
    terms = sorted({k for s in ok for k in s["terms"]})
    plausible = [bool(s.get("plausible", False)) for s in scored]
    matches = command_matches(clips)
    tracked = {name: track_clips(clips, tr, workers=workers) for name, tr in trackers.items()}
    real_emb, gen_emb = project(video_embeddings(wm.lifter, heldout_videos), video_embeddings(wm.lifter, videos))
    half = len(real_emb) // 2
    first = next(iter(trackers))
    metrics = {
        "n_videos": len(videos),
        "tracking_success": tracker_summary(tracked[first])["success_rate"],
        "plausible_rate": float(np.mean(plausible)),
        "command_accuracy": float(np.mean(matches)),
        "video_fid": round(fid(real_emb, gen_emb), 4),
        "reference_video_fid": round(fid(real_emb[:half], real_emb[half:]), 4) if half >= 2 else None,
        "diversity": round(diversity(gen_emb, seed=seed), 4),
        "reference_diversity": round(diversity(real_emb, seed=seed), 4),
        "lift_confidence": round(float(np.mean(conf)), 4),
        "physics": {k: float(np.mean([s["terms"][k] for s in ok if k in s["terms"]])) for k in terms},
        "flagged_by": {k: int(sum(k in s["violations"] for s in ok)) for k in terms},
        "tracking": {name: tracker_summary(rs) for name, rs in tracked.items()},
        "per_prompt": {},
    }
    for p in prompts:
        idx = [i for i, c in enumerate(clips) if c.prompt == p]
        metrics["per_prompt"][p] = {"tracking_success": float(np.mean([tracked[first][i].success for i in idx])),
                                    "plausible_rate": float(np.mean([plausible[i] for i in idx])),
                                    "command_accuracy": float(np.mean([matches[i] for i in idx]))}
    return metrics, videos, clips


def write_videos(run_dir: str, name: str, wm, videos, clips, n_prompts: int) -> list[str]:
    """``videos/<name>_<prompt>.mp4``: the generated video (left, upscaled) beside its lifted clip rendered
    under the video contract (right), for the first video of ``n_prompts`` prompts. A video that cannot be
    made is a warning, not a lost run."""
    from rlpf.viz.contract import contract_for
    from rlpf.viz.render import describe_failure, video_failures, write_mp4

    out, seen = [], []
    if n_prompts <= 0:
        return out
    contract = contract_for(wm.world)
    try:
        with contract.renderer() as r:
            for v, clip in zip(videos, clips):
                if clip.prompt in seen or len(seen) >= n_prompts:
                    continue
                seen.append(clip.prompt)
                lifted = r.frames(np.asarray(clip.qpos))
                k = max(1, lifted.shape[1] // v.shape[1])
                big = np.repeat(np.repeat(v, k, axis=1), k, axis=2)
                path = os.path.join(run_dir, "videos", f"{name}_{clip.prompt.replace(' ', '_')}.mp4")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                write_mp4(path, np.concatenate([big, lifted[:, :big.shape[1], :big.shape[1]]], axis=2), wm.fps)
                out.append(os.path.relpath(path, run_dir))
    except video_failures() as e:
        print(f"warning: {name} videos skipped ({describe_failure(e)}); the report is written without them",
              file=sys.stderr)
    return out


def write_pixel_report(run_dir: str, report: dict) -> tuple[str, str]:
    """RUN/report.json and RUN/report.md."""
    from rlpf.core.run_dir import write_json

    json_path, md_path = os.path.join(run_dir, "report.json"), os.path.join(run_dir, "report.md")
    write_json(json_path, report)
    b, a = report["before"], report["after"]
    rows = ["| metric | base | RLPF | change |", "|---|---|---|---|"]
    for k in HEADLINE + ("reference_video_fid",):
        if isinstance(b.get(k), (int, float)) and isinstance(a.get(k), (int, float)):
            rows.append(f"| {k} | {b[k]:.3f} | {a[k]:.3f} | {a[k] - b[k]:+.3f} |")
    lines = [f"# Pixel world model under RLPF: {report['world']}", "",
             f"{b['n_videos']} generated videos per model, lifted to clips and tracked. RLPF reward: "
             + " + ".join(f"{w:g} x {k}" for k, w in report.get("weights", {}).items()) + ".", "", *rows, "",
             "Timings (s): " + ", ".join(f"{k} {v}" for k, v in report.get("timings", {}).items()), "",
             "Videos (generated | lifted and rendered): " + ", ".join(b.get("videos", []) + a.get("videos", []))]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return json_path, md_path
