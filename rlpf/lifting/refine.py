"""Render-and-compare refinement of lifted poses (analysis by synthesis).

The pose network reads an ant's joints to ~4 degrees on the kind of motion it was trained on and to
11-15 degrees on motion it was not (README, "On clips the project did not make"): a lifted foot then
sits centimetres inside the floor and the judge flags a valid clip. But a lifted pose can be checked
against the very frame it came from: render it under the video contract and compare. Per frame,
``SilhouetteRefiner`` searches the root orientation and the joints near the network's answer for the
pose whose rendering matches the frame's body parts best:

* **parts**: the contract colours the robot's geoms so that parts read apart (ant: torso and hip
  segments tan, legs red / green / blue / yellow, the torso markers cyan / violet / magenta); a part
  is one geom colour. The frame's pixels are classified by chromaticity (hue and saturation:
  shading changes brightness, not hue) to the nearest
  part colour, from half that colour's saturation on (edge pixels blend with the floor), else to the
  background (the checker floor is unsaturated); the part colours are measured from
  the contract's own render of the rest pose, so light and MJCF colours need no hand-set numbers.
* **cost**: per part, the symmetric chamfer distance in pixels between the frame's mask and the
  mask of the candidate pose rendered under the contract and labelled the same way (the floor
  reflects the legs: what the labelling takes for a part, it takes on both sides), summed over parts;
  a part seen on one side only costs ``MISSING_PX``.
* **search**: coordinate descent from the network's pose, each coordinate (and each pair of joints
  along one limb) +-step with steps ``STEPS_DEG``; a move is kept only when it lowers the cost, and
  every coordinate stays within ``MAX_CHANGE_DEG`` of the network's pose
* **what the frame cannot show, the search may not add**: the floor hides what is below it and its
  reflection mirrors what is above, so depth below the floor is all but invisible; the last degrees
  before a joint's limit look alike at 128 px. No move may take the body deeper below the floor than
  the lifted pose was (or than ``FLOOR_TOLERANCE_M`` when it was above), nor bend a joint further
  past its range than the lifted pose did (first tried without: refined joints drifted past their
  limits and feet into the floor, and 4 of 6 valid clips were flagged for it). So the refinement
  never creates a violation the network did not read; it removes what the frame contradicts, and a
  sunk, floating or over-bent body the network read stays so. A leg hidden behind the torso costs the
  same anywhere behind it, so it stays where the network put it.
* **kept as lifted**: the root's x, y (floor odometry) and height (the torso sphere,
  rlpf.lifting.root_height) - both measured to millimetres, far better than joints - so the
  refinement cannot move a sunk or floating body back onto the floor: it changes how the limbs are
  bent and the torso is turned, which is what the frame shows.

The refined joints and orientation are smoothed over time like the network's (``SMOOTH_FRAMES`` of
rlpf.lifting.inference). Cost: one render per evaluation at the video's own size: at half of it a
pixel is ~4 cm and a 10 degree ankle error moves the fit by about a pixel (6 frames of a servoed ant,
joints perturbed by U(+-10) degrees: mean error 5.0 -> 3.8 degrees at 64 px, -> 2.3-2.5 at 128, three
of the six frames within 0.7). ``info["refine_cost_px"]`` holds each frame's cost before and after.
"""
from __future__ import annotations

import mujoco
import numpy as np

STEPS_DEG = (4.0, 1.5)
"""Coordinate-descent steps (degrees, largest first); each is repeated until no coordinate improves."""
MAX_PASSES = 3
"""Passes over the moves per step size at most."""
KEY_SECONDS = 0.1
"""Seconds between the key frames that are searched; the corrections of the frames between are
interpolated (the network's errors drift slowly; ~2-6x less work at 20-60 fps)."""
MAX_CHANGE_DEG = 30.0
"""The farthest a joint or the root's orientation may move from the network's pose (degrees)."""
MISSING_PX = 8.0
"""Chamfer cost (pixels) of a part the frame shows and the pose does not, or the other way round."""
CROP_PAD = 0.15
"""Margin (fraction of the frame) around the frame's body parts within which poses are compared."""
FLOOR_TOLERANCE_M = 0.005
"""m: how deep below the floor a move may take the body when the lifted pose was above it (MuJoCo's
soft contacts let a resting body sink a few millimetres: the penetration term's tolerance)."""
MIN_CHROMA = 0.18
"""Chromaticity (HSV saturation) below which a pixel is background: the checker floor is grey."""


def _chroma(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] uint8 or float 0-1 RGB -> [..., 2] chromaticity (saturation x (cos hue, sin hue))."""
    x = np.asarray(rgb, np.float64)
    if x.max(initial=0) > 1.0:
        x = x / 255.0
    mx, mn = x.max(axis=-1), x.min(axis=-1)
    sat = np.where(mx > 1e-6, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    # hue angle from the opponent axes (continuous, no piecewise HSV formula)
    hue = np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b)
    return np.stack([sat * np.cos(hue), sat * np.sin(hue)], axis=-1)


class SilhouetteRefiner:
    """Refine lifted poses of one world against the frames they were lifted from (module docstring).

    ``contract``: the world's VideoContract (rlpf.viz.contract) at the videos' size; ``size``: the
    render size of the comparison (default the contract's)."""

    def __init__(self, contract, size: int | None = None):
        from rlpf.envs.worlds import compile_world

        self.contract = contract
        self.size = int(size or contract.size)
        cw = compile_world(contract.world)
        if cw.root_body is None or cw.model.nq < 8:
            raise ValueError(f"world {cw.name!r}: refinement needs a free root and joints")
        self._cw = cw
        self._kin = mujoco.MjData(cw.model)          # kinematics of candidates (depth below the floor)
        self._r = contract.renderer(self.size)
        m = self._r.model
        self.model = m
        robot = [g for g in range(m.ngeom) if self._r._in_robot(int(m.geom_bodyid[g])) and m.geom_rgba[g, 3] > 0]
        colours = {}
        for g in robot:
            colours.setdefault(tuple(np.round(m.geom_rgba[g], 4)), []).append(g)
        self.parts = list(colours.values())                  # geoms of each part
        self._part_of_geom = np.zeros(m.ngeom + 1, np.int16)  # 0: background
        for k, geoms in enumerate(self.parts, start=1):
            self._part_of_geom[geoms] = k
        self._jnt = np.arange(1, m.njnt)                      # every joint after the free root
        self._qadr = m.jnt_qposadr[self._jnt]
        lo, hi = m.jnt_range[self._jnt].T
        limited = m.jnt_limited[self._jnt].astype(bool)
        self._lo, self._hi = np.where(limited, lo, -np.inf), np.where(limited, hi, np.inf)
        # joint pairs along one limb (a joint's body is the child of the other's): bending one and
        # counter-bending the other moves the limb's end while its middle stays, a valley that
        # single-coordinate steps cross only slowly
        body = m.jnt_bodyid[self._jnt]
        pairs = [(i, k) for i in range(len(body)) for k in range(len(body)) if m.body_parentid[body[k]] == body[i]]
        # the search's moves: (what, signs); what = ("rot", axis) | ("joint", j) | ("pair", j, k)
        self._moves = [(("rot", a), (s,)) for a in range(3) for s in (1.0, -1.0)]
        self._moves += [(("joint", j), (s,)) for j in range(len(body)) for s in (1.0, -1.0)]
        self._moves += [(("pair", i, k), (si, sk)) for i, k in pairs for si in (1.0, -1.0) for sk in (1.0, -1.0)]
        self._prototypes = self._measure_prototypes()
        centres = (np.arange(32) * 8 + 4).astype(np.float64)
        grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), axis=-1)
        self._lut = self._classify(grid)

    def close(self) -> None:
        self._r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- labels ---------------------------------------------------------------------------------
    def _measure_prototypes(self) -> np.ndarray:
        """[parts + 1, 2] mean chromaticity of the background and each part in the contract's own
        render of the rest pose (at the contract's size, as videos are written)."""
        with self.contract.renderer() as r:
            q = r.model.qpos0.copy()
            rgb = r.frames(q[None])[0]
            seg = self._segment(r, q)
        labels = self._part_of_geom[np.where(seg >= 0, seg, self.model.ngeom)]
        chroma = _chroma(rgb)
        protos = np.zeros((len(self.parts) + 1, 2))
        for k in range(len(self.parts) + 1):
            sel = labels == k
            if k and sel.sum() < 4:
                raise ValueError(f"part {k} of world {self.contract.world!r} is not visible in the rest pose")
            protos[k] = chroma[sel].mean(axis=0) if sel.any() else 0.0
        protos[0] = 0.0   # background: unsaturated (the floor), whatever the rest pose's view shows
        return protos

    def _classify(self, rgb: np.ndarray) -> np.ndarray:
        """[..., 3] RGB -> part index (0 background): the nearest part colour in chromaticity."""
        chroma = _chroma(rgb)
        d = np.linalg.norm(chroma[..., None, :] - self._prototypes, axis=-1)
        lab = d.argmin(axis=-1)
        # a pixel on a part's edge blends its colour with the floor's: it counts from half the part's
        # chromaticity on, so a mask keeps the part's own width
        strength = np.linalg.norm(chroma, axis=-1)
        need = np.maximum(0.5 * np.linalg.norm(self._prototypes, axis=-1)[lab], MIN_CHROMA)
        lab[strength < need] = 0
        return lab.astype(np.int16)

    def labels(self, frame: np.ndarray) -> np.ndarray:
        """[S, S] part index per pixel (0 background) of one uint8 frame, first resized (area) to the
        refiner's size: the frames of a video and the renders of candidate poses go through this same
        function, so what it gets wrong (the floor's reflection of the legs, shading, blur) it gets
        wrong on both sides. A table over RGB at 5 bits per channel (``_classify`` of each cell's
        centre) does the per-pixel work."""
        from rlpf.lifting.frames import resize

        small = resize(np.asarray(frame)[None], self.size)[0] if frame.shape[0] != self.size else frame
        q = np.asarray(small, np.uint8) >> 3
        return self._lut[q[..., 0], q[..., 1], q[..., 2]]

    def rendered_labels(self, qpos: np.ndarray) -> np.ndarray:
        """``labels`` of ``qpos`` rendered under the contract at the refiner's size."""
        return self.labels(self._r.frames(np.asarray(qpos, np.float64)[None])[0])

    # -- rendering ------------------------------------------------------------------------------
    def _segment(self, r, qpos: np.ndarray) -> np.ndarray:
        """[H, W] geom id per pixel (-1 background) of ``qpos`` under renderer ``r``'s camera."""
        m, d = r.model, r.data
        d.qpos[:] = qpos
        mujoco.mj_kinematics(m, d)
        if r.tracking:
            root = d.xpos[r.root_body]
            target = np.array([root[0], root[1], r.lookat_z]) if r.follow == "xy" else root.copy()
            r.camera.lookat[:] = target + r.lookat_offset
        rr = r._renderer
        rr.enable_segmentation_rendering()
        try:
            rr.update_scene(d, camera=r.camera)
            seg = rr.render()
        finally:
            rr.disable_segmentation_rendering()
        geom = seg[..., 0].astype(np.int64)
        geom[seg[..., 1] != int(mujoco.mjtObj.mjOBJ_GEOM)] = -1
        return geom

    # -- cost -----------------------------------------------------------------------------------
    def _observed(self, labels: np.ndarray):
        """(crop, [(mask, distance transform to the mask) per part]) of a frame's labels, within the
        crop: the parts' bounding box grown by ``CROP_PAD`` of the frame (no allowed move carries a
        part farther), where every cost of this frame is computed."""
        from scipy.ndimage import distance_transform_edt

        ys, xs = np.nonzero(labels)
        if not len(ys):
            crop = (slice(0, labels.shape[0]), slice(0, labels.shape[1]))
        else:
            pad = int(np.ceil(CROP_PAD * labels.shape[0]))
            crop = (slice(max(0, ys.min() - pad), ys.max() + pad + 1), slice(max(0, xs.min() - pad), xs.max() + pad + 1))
        lab = labels[crop]
        parts = []
        for k in range(1, len(self.parts) + 1):
            mask = lab == k
            parts.append((mask, distance_transform_edt(~mask) if mask.any() else None))
        return crop, parts

    def cost(self, qpos: np.ndarray, observed) -> float:
        """Summed symmetric chamfer distance (pixels) of each part: the pose rendered vs the frame."""
        from scipy.ndimage import distance_transform_edt

        crop, parts = observed
        lab = self.rendered_labels(qpos)[crop]
        total = 0.0
        for k, (mask, dt_obs) in enumerate(parts, start=1):
            mine = lab == k
            if not mine.any() and dt_obs is None:
                continue
            if not mine.any() or dt_obs is None:
                total += MISSING_PX
                continue
            dt_mine = distance_transform_edt(~mine)
            total += 0.5 * (dt_obs[mine].mean() + dt_mine[mask].mean())
        return float(total)

    # -- search ---------------------------------------------------------------------------------
    def refine_frame(self, qpos: np.ndarray, frame: np.ndarray, guess: np.ndarray | None = None
                     ) -> tuple[np.ndarray, float, float]:
        """(refined qpos, cost before, cost after) of one frame's lifted pose ``qpos``. ``guess``: another
        starting pose (the previous frame's correction applied to this one), used when it costs less;
        the search stays within ``MAX_CHANGE_DEG`` of ``qpos`` either way."""
        observed = self._observed(self.labels(frame))
        lifted = np.asarray(qpos, np.float64).copy()
        self._limits_of(lifted)
        best = lifted.copy()
        best_cost = before = self.cost(best, observed)
        if guess is not None and self._within(guess, lifted):
            c = self.cost(guess, observed)
            if c < best_cost:
                best, best_cost = np.asarray(guess, np.float64).copy(), c
        for step in np.radians(STEPS_DEG):
            for _ in range(MAX_PASSES):
                improved, done = False, None
                for move in self._moves:
                    if move[0] == done:           # the other direction of a move just taken undoes it
                        continue
                    cand = self._moved(best, move, step)
                    if not self._within(cand, lifted):
                        continue
                    c = self.cost(cand, observed)
                    if c < best_cost - 1e-9:
                        best, best_cost, improved, done = cand, c, True, move[0]
                if not improved:
                    break
        return best, before, best_cost

    def _moved(self, q: np.ndarray, move, step: float) -> np.ndarray:
        """``q`` after one move of ``self._moves`` by ``step`` rad."""
        what, signs = move
        out = q.copy()
        if what[0] == "rot":
            turn = np.zeros(3)
            turn[what[1]] = signs[0] * step
            out[3:7] = _turned(q[3:7], turn, body_frame=False)
        else:
            for j, sign in zip(what[1:], signs):
                out[self._qadr[j]] += sign * step
        return out

    def _excess(self, q: np.ndarray) -> np.ndarray:
        """Per joint: how far (rad) ``q`` bends it past its range (0 inside)."""
        v = q[self._qadr]
        return np.maximum(np.maximum(self._lo - v, v - self._hi), 0.0)

    def _depth(self, q: np.ndarray) -> float:
        """How deep (m) the lowest point of the robot is below the floor in pose ``q`` (0 above it)."""
        from rlpf.rewards.analysis import geom_lowest_points

        m, d, cw = self._cw.model, self._kin, self._cw
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        g = cw.robot_geoms
        points, _ = geom_lowest_points(m, g, d.geom_xpos[g][None], d.geom_xmat[g].reshape(1, len(g), 3, 3))
        return float(max(0.0, cw.floor_z - points[0, :, 2].min()))

    def _limits_of(self, lifted: np.ndarray) -> None:
        """What no move may exceed for this frame: the lifted pose's own joint-range excess and depth."""
        self._allowed_excess = self._excess(lifted) + 1e-9
        self._allowed_depth = max(self._depth(lifted), FLOOR_TOLERANCE_M) + 1e-9

    def _within(self, cand: np.ndarray, lifted: np.ndarray) -> bool:
        """Joints and root orientation within MAX_CHANGE_DEG of the lifted pose, no joint further past
        its range and the body no deeper below the floor than the lifted pose (module docstring)."""
        lim = np.radians(MAX_CHANGE_DEG)
        if (np.abs(cand[self._qadr] - lifted[self._qadr]) > lim).any():
            return False
        dot = abs(float(np.dot(cand[3:7], lifted[3:7])))
        if 2.0 * np.arccos(min(1.0, dot)) > lim:
            return False
        if (self._excess(cand) > self._allowed_excess).any():
            return False
        return self._depth(cand) <= self._allowed_depth

    def refine(self, qpos: np.ndarray, frames: np.ndarray, fps: float | None = None, smooth_frames: float = 1.0,
               progress=None) -> tuple[np.ndarray, dict]:
        """([T, nq] refined qpos, {"refine_cost_px": [T, 2] before / after, NaN between key frames}) of
        a lifted clip's qpos and the [T, H, W, 3] frames it was lifted from.

        Key frames every ``KEY_SECONDS`` (every frame when ``fps`` is None) are searched, each starting
        from its lifted pose and from the previous key frame's correction carried over, whichever
        matches better (the network's errors change slowly: the search is short); the frames between
        get the corrections interpolated linearly (joints; the orientation's body-frame rotation vector)."""
        qpos = np.asarray(qpos, np.float64)
        frames = np.asarray(frames)
        if qpos.ndim != 2 or qpos.shape[1] != self.model.nq:
            raise ValueError(f"qpos must be [T, nq={self.model.nq}], got {qpos.shape}")
        if len(qpos) != len(frames):
            raise ValueError(f"{len(qpos)} poses for {len(frames)} frames")
        T = len(qpos)
        every = 1 if fps is None else max(1, int(round(KEY_SECONDS * float(fps))))
        keys = sorted(set(range(0, T, every)) | {T - 1})
        costs = np.full((T, 2), np.nan)
        fix = np.zeros((T, 3 + len(self._qadr)))          # per frame: body-frame turn, joint deltas
        prev = None
        for t in keys:
            guess = None if prev is None else self._corrected(qpos[t], prev)
            best, costs[t, 0], costs[t, 1] = self.refine_frame(qpos[t], frames[t], guess)
            mujoco.mju_subQuat(fix[t, :3], best[3:7], qpos[t, 3:7])
            fix[t, 3:] = best[self._qadr] - qpos[t, self._qadr]
            prev = fix[t]
            if progress:
                progress(1)
        ks = np.asarray(keys)
        for c in range(fix.shape[1]):
            fix[:, c] = np.interp(np.arange(T), ks, fix[ks, c])
        out = np.stack([self._corrected(qpos[t], fix[t]) for t in range(T)])
        if smooth_frames > 0 and T > 2:
            from scipy.ndimage import gaussian_filter1d

            q = out[:, 3:7] * np.sign((out[:, 3:7] * out[:1, 3:7]).sum(axis=1, keepdims=True) + 1e-12)
            q = gaussian_filter1d(q, smooth_frames, axis=0, mode="nearest")
            out[:, 3:7] = q / np.linalg.norm(q, axis=1, keepdims=True)
            out[:, self._qadr] = gaussian_filter1d(out[:, self._qadr], smooth_frames, axis=0, mode="nearest")
        return out, {"refine_cost_px": costs, "refine_key_frames": ks}

    def _corrected(self, q: np.ndarray, fix: np.ndarray) -> np.ndarray:
        """Pose ``q`` with a correction (body-frame rotation vector, joint deltas) applied."""
        out = q.copy()
        out[self._qadr] += fix[3:]
        out[3:7] = _turned(q[3:7], fix[:3], body_frame=True)
        return out


def _turned(quat: np.ndarray, rotvec: np.ndarray, body_frame: bool) -> np.ndarray:
    """The unit quaternion ``quat`` turned by the rotation vector ``rotvec``, given in the world frame
    or in the body's own frame (``body_frame``: as ``mju_subQuat`` returns differences)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return quat.copy()
    dq, out = np.empty(4), np.empty(4)
    mujoco.mju_axisAngle2Quat(dq, rotvec / angle, angle)
    if body_frame:
        mujoco.mju_mulQuat(out, quat, dq)
    else:
        mujoco.mju_mulQuat(out, dq, quat)
    return out / np.linalg.norm(out)
