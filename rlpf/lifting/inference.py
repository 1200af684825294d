"""Lift a video to a clip: the trained pose network, floor odometry for the root's x, y, and a
confidence per frame.

    lifter = PoseLifter.load("runs/pose-ant")
    clip, info = lifter.lift_video("walk.mp4")     # Clip(qpos [T, nq], fps, world), info["confidence"] [T]
    save_lifted("walk.npz", clip, info)            # the clip format, plus 'confidence'

Per frame the network gives root height, orientation and joints (and a root velocity); the root's
x, y start at 0 and add up the floor odometry's displacement (rlpf.lifting.odometry), or the network's
velocity where the registration fails (residual above ``ODOMETRY_MAX_RESIDUAL``); where the root
carries a sphere that the frame shows clearly (the ant's torso), its height is solved from the
sphere's upper edge instead of the network's (rlpf.lifting.root_height; ``info["height_from_sphere"]``
says on which frames); height, orientation and joints are smoothed over ``SMOOTH_FRAMES``. With
``refine=True`` each frame's orientation and joints are then fitted to the frame itself by rendering
candidate poses (rlpf.lifting.refine; ``info["refine_cost_px"]``: the fit before and after). Confidence in
(0, 1]: 1 / (1 + sigma_z / 2 cm + sigma_joints / 5 deg), from the network's predicted variances,
halved on frames whose x, y came from the fallback.
"""
from __future__ import annotations

import json
import os

import numpy as np

from rlpf.core.clips import Clip
from rlpf.lifting.frames import VideoError, read_video, resize
from rlpf.lifting.training import PoseRunError

ODOMETRY_MAX_RESIDUAL = 0.35
"""A floor registration with a larger robust residual is not used for the root's x, y."""
SMOOTH_FRAMES = 1.0
"""Gaussian smoothing (sigma, frames) of the network's height, orientation and joints over time: the
frame-to-frame jitter left by the network would read as unexplained root forces (a 1-frame sigma
keeps 92 % of a 1.3 Hz gait at 20 fps); the root's x, y (odometry) are not smoothed, so a teleport stays one."""


class PoseLifter:
    """A finished pose run, ready to lift videos of its world."""

    def __init__(self, run_dir: str, net, meta: dict, sphere_height: bool = True, refine: bool = False):
        self.run_dir, self.net, self.meta = run_dir, net, meta
        self.sphere_height = bool(sphere_height)
        self.refine = bool(refine)
        self.world = meta["world"]
        self.nq = int(meta["nq"])
        self.mean, self.std = np.asarray(meta["mean"]), np.asarray(meta["std"])
        self._odometry = {}

    @classmethod
    def load(cls, run_dir: str, sphere_height: bool = True, refine: bool = False) -> PoseLifter:
        """The run's network (safetensors) and facts (pose.json); PoseRunError if it is not a finished pose run.
        ``sphere_height=False``: the network's root height on every frame (for comparison). ``refine``:
        fit each lifted pose to its frame by rendering it (rlpf.lifting.refine; ~0.4-0.9 s per frame on 2 cores)."""
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from rlpf.lifting.model import PoseNet

        if not os.path.isdir(run_dir):
            raise PoseRunError(f"--pose {run_dir}: no such directory (train one: rlpf train-pose --world ant --out {run_dir})")
        meta_path, weights = os.path.join(run_dir, "pose.json"), os.path.join(run_dir, "pose.safetensors")
        if not (os.path.exists(meta_path) and os.path.exists(weights)):
            raise PoseRunError(f"--pose {run_dir}: not a finished pose run (no pose.json / pose.safetensors; "
                               "rerun rlpf train-pose with the same --out to finish it)")
        try:
            with open(meta_path) as f:
                meta = json.load(f)
            net = PoseNet(int(meta["input_size"]), int(meta["n_targets"]), tuple(meta["channels"]), int(meta["embed"]),
                          int(meta["temporal_layers"]))
            net.load_state_dict(load_file(weights))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
            raise PoseRunError(f"--pose {run_dir}: unreadable pose run ({type(e).__name__}: {e})") from None
        net.eval()
        torch.set_num_threads(min(2, os.cpu_count() or 1))
        return cls(run_dir, net, meta, sphere_height, refine)

    def _odometry_for(self, size: int):
        from rlpf.lifting.odometry import odometry_for
        from rlpf.viz.contract import contract_for

        if size not in self._odometry:
            self._odometry[size] = odometry_for(contract_for(self.world, size))
        return self._odometry[size]

    def _sphere_for(self, size: int):
        from rlpf.lifting.root_height import root_sphere_for
        from rlpf.viz.contract import contract_for

        key = ("sphere", size)
        if key not in self._odometry:
            self._odometry[key] = root_sphere_for(contract_for(self.world, size), self._odometry_for(size))
        return self._odometry[key]

    def _refiner_for(self, size: int):
        from rlpf.lifting.refine import SilhouetteRefiner
        from rlpf.viz.contract import contract_for

        key = ("refine", size)
        if key not in self._odometry:
            self._odometry[key] = SilhouetteRefiner(contract_for(self.world, size))
        return self._odometry[key]

    def predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(targets [T, D], sigma [T, D]) in physical units for uint8 [T, H, W, 3] frames."""
        import torch

        x = torch.from_numpy(resize(frames, int(self.meta["input_size"]))).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            out = self.net(x[None])
        mean = out["mean"][0].numpy() * self.std + self.mean
        sigma = np.exp(0.5 * out["logvar"][0].numpy()) * self.std
        return mean, sigma

    def lift_frames(self, frames: np.ndarray, fps: float, source: str = "video") -> tuple[Clip, dict]:
        """(lifted clip, {"confidence" [T], "odometry_residual" [T], "fallback" [T] bool}) of one video's frames."""
        from rlpf.lifting.targets import decode, layout

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2:
            raise VideoError(f"{source}: frames must be [T >= 2, H, W, 3], got {frames.shape}")
        if frames.shape[1] != frames.shape[2]:
            raise VideoError(f"{source}: frames are {frames.shape[2]}x{frames.shape[1]}; the video contract's are square")
        y, sigma = self.predict(frames)
        L = layout(self.nq)
        # root height from the root's sphere under the contract's camera where it is clearly seen
        # (rlpf.lifting.root_height: millimetres, against the network's centimetres); the network elsewhere
        sphere = self._sphere_for(frames.shape[1]) if self.sphere_height else None
        seen = np.zeros(len(frames), bool)
        if sphere is not None:
            z_geo, spread = sphere.track(frames, near=y[:, L["z"]][:, 0])
            seen = np.isfinite(z_geo)
            y[seen, L["z"].start] = z_geo[seen]
            sigma[seen, L["z"].start] = np.maximum(spread[seen], 1e-3)
        if SMOOTH_FRAMES > 0 and len(y) > 2:
            from scipy.ndimage import gaussian_filter1d

            pose = slice(0, L["joints"].stop)     # z, rot6, joints
            y[:, pose] = gaussian_filter1d(y[:, pose], SMOOTH_FRAMES, axis=0, mode="nearest")
        xy_odo, resid = self._odometry_for(frames.shape[1]).track(frames)
        step = np.diff(xy_odo, axis=0)
        fallback = resid[1:] > ODOMETRY_MAX_RESIDUAL
        step[fallback] = y[:-1, L["vel"]][fallback]
        xy = np.vstack([np.zeros((1, 2)), np.cumsum(step, axis=0)])
        qpos = decode(y, self.nq, xy)
        extra = {}
        if self.refine:
            qpos, extra = self._refiner_for(frames.shape[1]).refine(qpos, frames, fps=fps, smooth_frames=SMOOTH_FRAMES)
        sz = sigma[:, L["z"]].mean(axis=1)
        sj = np.degrees(sigma[:, L["joints"]].mean(axis=1))
        conf = 1.0 / (1.0 + sz / 0.02 + sj / 5.0)
        fb = np.r_[False, fallback]
        conf[fb] *= 0.5
        clip = Clip(qpos=qpos, fps=float(fps), world=self.world, source=source)
        return clip, {"confidence": conf, "odometry_residual": resid, "fallback": fb, "height_from_sphere": seen,
                      **extra}

    def lift_video(self, path: str) -> tuple[Clip, dict]:
        frames, fps = read_video(path)
        return self.lift_frames(frames, fps, source=path)


def save_lifted(path: str, clip: Clip, info: dict | None = None) -> str:
    """Write a lifted clip in the clip format (qpos, fps, world) plus its per-frame 'confidence' and
    'height_from_sphere' (the frames whose root height came from rlpf.lifting.root_height), atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.npz")
    extra = {"confidence": np.asarray(info["confidence"], np.float32)} if info else {}
    if info and "height_from_sphere" in info:
        extra["height_from_sphere"] = np.asarray(info["height_from_sphere"], bool)
    try:
        np.savez_compressed(tmp, qpos=np.asarray(clip.qpos, np.float64), fps=np.float64(clip.fps),
                            world=np.array(clip.world), **extra)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def lifted_name(video: str) -> str:
    """``videos/walk.mp4`` -> ``walk.npz``."""
    return os.path.splitext(os.path.basename(video))[0] + ".npz"


def lift_files(paths: list[str], pose, out_dir: str, progress=None, protect=()) -> dict:
    """Lift every video under ``paths`` into ``out_dir``: {"clips": [{"source", "clip", "frames", "fps",
    "confidence", "lifted" (the Clip)}], "errors": [{"source", "error"}]}: the engine of ``rlpf lift``
    and ``rlpf score --pose``. ``pose``: a run directory or a PoseLifter. ``protect``: other input files
    that must not be written over (the clip files scored with the videos)."""
    from rlpf.lifting.frames import video_files

    lifter = pose if isinstance(pose, PoseLifter) else PoseLifter.load(pose)
    inputs = {os.path.realpath(p) for p in [*video_files(paths), *protect]}   # never written over
    done, errors, taken = [], [], {}
    for video in video_files(paths):
        target = os.path.join(out_dir, lifted_name(video))
        real = os.path.realpath(target)
        try:
            if real in inputs:
                raise VideoError(f"{target} is one of the inputs; choose another --out")
            if real in taken:
                raise VideoError(f"{target} is already the clip of {taken[real]} (same file name)")
            clip, info = lifter.lift_video(video)
            save_lifted(target, clip, info)
        except VideoError as e:
            errors.append({"source": video, "error": str(e).removeprefix(f"{video}: ")})
        else:
            taken[real] = video
            done.append({"source": video, "clip": target, "frames": int(clip.n_frames), "fps": clip.fps,
                         "world": clip.world, "confidence": round(float(info["confidence"].mean()), 4),
                         "lifted": clip})
        if progress:
            progress(1)
    return {"clips": done, "errors": errors}
