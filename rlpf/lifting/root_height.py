"""Root height from the root's sphere in the frame: the contract's camera, solved exactly.

Under the video contract the camera follows the root in x and y at a fixed height, so the root body
always sits on the frame's central column and its height alone sets where it appears. When the root
carries a sphere (the ant's torso: radius 0.25 m, centred on the root), the *upper edge of its
silhouette* is a ray tangent to a sphere whose centre is known up to its height: for an edge pixel
on column c,

    angle(ray(row, c), C(z) - P) = asin(r / |C(z) - P|),     C(z) = (0, 0, z) relative to the root's x, y

has one solution z (P: the camera's position, ``FloorOdometry.pos``; the ray as the odometry's
pinhole model, which registers the floor to millimetres). Each column of the visible upper arc
gives one z; their median is the estimate.

Why not the network's height: the pose network sees 64-px frames (3.2 cm of the ant's height per
pixel at the torso's distance) and was trained on minutes of CPU; the floating and sinking clips,
whose verdicts hinge on 1-2 cm (the penetration and float thresholds), were read 1.7-2.6 cm off
(README). The upper arc is the part of the torso legs rarely cover (they leave it at the equator
and go outwards and down); a leg in front of the arc moves that column's edge down, which the
median over the arc ignores.

Quantization: MuJoCo's fast rendering samples each pixel once at its centre, so an edge pixel's
boundary lies in the half-pixel above it on average (``EDGE_OFFSET``); where the arc slopes,
neighbouring columns quantize at different phases and the median averages them (measured on held-out
renders: ``experiments/lifting_accuracy.py``).

``RootSphere.estimate`` returns NaN where the sphere is not clearly seen (fewer than ``MIN_COLUMNS``
edge columns, or their heights spread more than ``MAX_SPREAD_M``): the lifter keeps the network's
height there (rlpf.lifting.inference).
"""
from __future__ import annotations

import numpy as np

MIN_COLUMNS = 7
"""Columns of the upper arc that must show an edge for a height to be given (the arc spans ~20)."""
MAX_SPREAD_M = 0.03
"""Largest median absolute deviation (m) of the per-column heights: above it the arc is not a sphere's
(occluded, blurred, or another object) and the network's height is kept."""
EDGE_OFFSET = 0.5
"""Pixels above the first sphere pixel where the boundary lies on average (centre sampling)."""
SAT_FACTOR = 2.5
"""A sphere pixel's saturation may be this many times below its material's: H.264's 4:2:0 chroma
averages an edge row with the background row beside it, halving its saturation (the edge would read
late by ~a quarter pixel, 0.4 cm, with a stricter bound)."""
LUMA_CONTRAST = 0.15
"""Luma difference (0-1) between the sphere and the background above it for the luma check of an edge."""
HUE_TOLERANCE = 14.0
"""Degrees of hue a shaded pixel of the sphere may differ from its material's (measured 28-41 deg on the
ant's tan 30 deg under the contract's light, H.264 included)."""


def _hsv(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] uint8 or 0-1 RGB -> hue (degrees), saturation, value (0-1)."""
    a = np.asarray(rgb, np.float32)
    if a.max(initial=0.0) > 1.0:
        a = a / 255.0
    mx, mn = a.max(-1), a.min(-1)
    d = mx - mn
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) * 60.0
        s = np.where(mx > 0, d / mx, 0.0)
    return np.stack([np.nan_to_num(h), s, mx], -1)


def _luma_edge(luma: np.ndarray, s: int) -> int:
    """The sphere's first row on a column whose colour mask starts at ``s``, checked in luma: H.264
    codes colour at half resolution (4:2:0), so next to a saturated neighbour (a leg behind the sphere)
    the first row's colour is mixed and the mask starts a row late; luma keeps full resolution. A row
    above (up to 2) is the sphere's when the luma step is *above* it: its luma is nearer the sphere's
    (2 rows inside) than the row above it, and that row differs from it by ``LUMA_CONTRAST`` or more.
    (Comparing with a background row further up would take a light floor square for the sphere.)"""
    n = len(luma)
    fg = luma[min(s + 2, n - 1)]
    r = s
    while r - 2 >= max(s - 3, 0):
        p, above = luma[r - 1], luma[r - 2]
        if not (abs(p - above) >= LUMA_CONTRAST and abs(p - fg) < abs(p - above)):
            break
        r -= 1
    return r


class RootSphere:
    """Height of a root sphere of ``radius`` (m) and material ``rgb`` (0-1) seen by ``odometry``'s camera
    (a ``FloorOdometry``: the contract's camera relative to the root's x, y, heights above ``floor_z``);
    ``centre_offset_z``: the sphere's centre above the root's origin."""

    def __init__(self, odometry, radius: float, rgb, centre_offset_z: float = 0.0, floor_z: float = 0.0):
        self.od = odometry
        self.floor_z = float(floor_z)
        self.radius = float(radius)
        self.offset = float(centre_offset_z)
        h, s, v = _hsv(np.asarray(rgb, np.float32)[None])[0]
        self.hue, self.sat = float(h), float(s)

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """Pixels of the sphere's material: its hue, a saturation from 1 / SAT_FACTOR to 1.6 times its own, lit."""
        h, s, v = np.moveaxis(_hsv(frame), -1, 0)
        dh = np.abs((h - self.hue + 180.0) % 360.0 - 180.0)
        return (dh <= HUE_TOLERANCE) & (s >= self.sat / SAT_FACTOR) & (s <= min(1.0, self.sat * 1.6)) & (v >= 0.3)

    def _rays(self, rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
        od = self.od
        x = ((cols + 0.5) / n * 2 - 1) * od.tan
        y = -((rows + 0.5) / n * 2 - 1) * od.tan
        ray = od.fwd + x[..., None] * od.right + y[..., None] * od.up
        return ray / np.linalg.norm(ray, axis=-1, keepdims=True)

    def edge_row(self, z: float, n: int) -> float:
        """Row (continuous) of the top of the sphere's silhouette on the central column at root height z."""
        lo, hi = -float(n), self._centre_row(z, n)   # above the edge: outside; the centre: inside
        col = np.array([(n - 1) / 2.0])
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if self._tangent_gap(np.array([mid]), col, n, np.array([z]))[0] > 0:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def _centre_row(self, z: float, n: int) -> float:
        v = np.array([0.0, 0.0, z + self.offset - self.floor_z]) - self.od.pos
        return float((1 - (v @ self.od.up) / (v @ self.od.fwd) / self.od.tan) * n / 2 - 0.5)

    def _tangent_gap(self, rows, cols, n, z) -> np.ndarray:
        """angle(ray, centre) - angular radius: > 0 outside the silhouette, < 0 inside."""
        ray = self._rays(rows, cols, n)
        c = np.zeros((len(z), 3))
        c[:, 2] = z + self.offset - self.floor_z
        v = c - self.od.pos
        dist = np.linalg.norm(v, axis=-1)
        cosang = np.clip((ray * v).sum(-1) / dist, -1.0, 1.0)
        return np.arccos(cosang) - np.arcsin(np.clip(self.radius / dist, 0.0, 1.0))

    def _solve(self, rows: np.ndarray, cols: np.ndarray, n: int, lo: float = -2.0) -> np.ndarray:
        """Per edge pixel, the root height whose sphere's upper silhouette passes through it. Bisection
        between ``lo`` (the sphere far below the ray: outside, gap > 0) and the height where the ray
        passes closest to the root's vertical line (the ray through the sphere: gap < 0)."""
        ray = self._rays(rows, cols, n)
        p = self.od.pos
        dxy = ray[:, :2]
        t = -(dxy @ p[:2]) / np.maximum((dxy * dxy).sum(-1), 1e-12)
        b = p[2] + t * ray[:, 2] - self.offset + self.floor_z
        a = np.full(len(rows), lo)
        ok = (t > 0) & (b > lo) & (self._tangent_gap(rows, cols, n, b) < 0)
        for _ in range(40):
            mid = 0.5 * (a + b)
            outside = self._tangent_gap(rows, cols, n, mid) > 0
            a = np.where(outside, mid, a)
            b = np.where(outside, b, mid)
        return np.where(ok, 0.5 * (a + b), np.nan)

    def estimate(self, frame: np.ndarray, near: float | None = None) -> tuple[float, float, int]:
        """(height or NaN, spread m, columns used) of one [n, n, 3] frame. ``near``: a rough height (the
        network's) that picks the sphere's arc when the mask holds more than one blob on the column."""
        n = frame.shape[0]
        mask = self.mask(frame)
        luma = np.asarray(frame, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        luma /= 255.0 if luma.max(initial=0.0) > 1.0 else 1.0
        centre_col = (n - 1) / 2.0
        # the arc's columns: within 0.6 of the sphere's apparent radius of the centre column
        z0 = 0.75 if near is None or not np.isfinite(near) else float(near)
        r_px = self._apparent_radius(z0, n)
        half = max(1, int(0.6 * r_px))
        cols = np.arange(int(round(centre_col - half)), int(round(centre_col + half)) + 1)
        cols = cols[(cols >= 0) & (cols < n)]
        top_guess = self.edge_row(z0, n)
        rows, use = [], []
        # the rough height only picks the run: it may be a sphere's diameter off (a small network on a
        # floated body), so a run starting up to two radii from its guess still counts
        window = 2.0 * r_px + (0.0 if near is not None and np.isfinite(near) else n)
        for c in cols:
            col = mask[:, c]
            # the sphere's pixels on this column: the run that starts nearest the guessed top edge
            starts = np.flatnonzero(col & ~np.r_[False, col[:-1]])
            if not len(starts):
                continue
            s = starts[np.argmin(np.abs(starts - top_guess))]
            # a run of at least a third of the radius: an edge pixel or a speck is not the sphere
            run = np.argmax(~col[s:]) if (~col[s:]).any() else n - s
            if run < max(2, r_px / 3) or abs(s - top_guess) > window or s == 0:
                continue
            rows.append(_luma_edge(luma[:, c], s) - EDGE_OFFSET)
            use.append(c)
        if len(use) < MIN_COLUMNS:
            return float("nan"), float("nan"), len(use)
        z = self._solve(np.asarray(rows, float), np.asarray(use, float), n)
        z = z[np.isfinite(z)]
        if len(z) < MIN_COLUMNS:
            return float("nan"), float("nan"), len(z)
        med = float(np.median(z))
        spread = float(np.median(np.abs(z - med)))
        if spread > MAX_SPREAD_M:
            return float("nan"), spread, len(z)
        return med, spread, len(z)

    def _apparent_radius(self, z: float, n: int) -> float:
        v = np.array([0.0, 0.0, z + self.offset - self.floor_z]) - self.od.pos
        ang = np.arcsin(min(1.0, self.radius / np.linalg.norm(v)))
        return float(np.tan(ang) / self.od.tan * n / 2)

    def track(self, frames: np.ndarray, near: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """([T] heights, NaN where not seen; [T] spreads) of uint8 [T, n, n, 3] frames."""
        out = np.full(len(frames), np.nan)
        spread = np.full(len(frames), np.nan)
        for t, f in enumerate(frames):
            out[t], spread[t], _ = self.estimate(f, None if near is None else near[t])
        return out, spread


def root_sphere_for(contract, odometry=None) -> RootSphere | None:
    """The RootSphere of a contract's world: its root body's sphere geom (radius, colour under the
    contract), or None when the root carries no sphere (then only the network gives height)."""
    import mujoco

    from rlpf.envs.worlds import compile_world
    from rlpf.lifting.odometry import odometry_for

    cw = compile_world(contract.world)
    m = cw.model
    if cw.root_body is None:
        return None
    rgba = dict(contract.geom_rgba)
    for g in range(m.ngeom):
        if m.geom_bodyid[g] != cw.root_body or m.geom_type[g] != mujoco.mjtGeom.mjGEOM_SPHERE:
            continue
        if np.linalg.norm(m.geom_pos[g][:2]) > 1e-9:
            continue   # off the root's vertical line: not on the central column
        name = mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g)
        colour = rgba.get(name)
        if colour is None:
            mat = m.geom_matid[g]
            colour = m.mat_rgba[mat] if mat >= 0 else m.geom_rgba[g]
        return RootSphere(odometry or odometry_for(contract), float(m.geom_size[g, 0]), np.asarray(colour)[:3],
                          centre_offset_z=float(m.geom_pos[g, 2]), floor_z=float(cw.floor_z))
    return None
