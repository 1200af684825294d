"""Floor odometry: the root's horizontal displacement between two frames, from the floor pattern.

Under the video contract (rlpf.viz.contract) the camera follows the root in x and y at a fixed height,
distance, elevation and azimuth, so every pixel below the horizon sees a fixed floor point *relative
to the root*: frame t shows the floor texture shifted by the root's position r_t. Frame t+1 is then
frame t resampled where the floor point of each pixel plus the displacement d = r_{t+1} - r_t
projects. ``FloorOdometry.displacement`` finds d by registering the two frames over the floor: a
coarse search over every d within ``max_step`` m (the checker's period makes larger steps ambiguous),
then Gauss-Newton refinement with robust (Tukey) weights, so the body, its shadow and reflection and
the light's highlight, which move with the camera, drop out.

Why not learned: the skate term's threshold (0.25 m/s) is 1.25 cm per frame at 20 fps, well under a
pixel of floor motion at the contract's resolution; registration of the known planar floor reaches
millimetres, a CNN trained for minutes on a CPU does not. The learned temporal model's velocity is
the fallback where registration fails (``residual``), and the odometry is measured by
experiments/lifting_accuracy.py.
"""
from __future__ import annotations

import numpy as np

from rlpf.core.errors import RLPFError


class OdometryError(RLPFError, ValueError):
    """Frames that do not fit the camera the odometry was built for."""


def _gray(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame, np.float32)
    return f @ np.array([0.299, 0.587, 0.114], np.float32) if f.ndim == 3 else f


def _highpass(img: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(img, 0.7)
    return smooth - gaussian_filter(img, sigma)


class FloorOdometry:
    """Registration of consecutive frames over the floor for one camera (contract, fovy, frame size)."""

    def __init__(self, size: int, distance: float, elevation: float, azimuth: float, lookat_z: float,
                 fovy: float = 45.0, floor_z: float = 0.0, max_step: float = 0.6, max_range: float = 6.0):
        self.size = int(size)
        self.max_step = float(max_step)
        el, az = np.radians(elevation), np.radians(azimuth)
        fwd = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        up = np.array([-np.sin(el) * np.cos(az), -np.sin(el) * np.sin(az), np.cos(el)])
        right = np.cross(fwd, up)
        self.fwd, self.up, self.right = fwd, up, right
        self.pos = np.array([0.0, 0.0, lookat_z]) - distance * fwd  # relative to the root's x, y
        self.pos[2] -= floor_z
        self.tan = np.tan(np.radians(fovy) / 2)
        self.grids = {}
        self.max_range = max_range

    def _grid(self, n: int):
        """Per pixel of an n x n frame: floor point (x, y) relative to the root, and a mask of usable pixels."""
        if n in self.grids:
            return self.grids[n]
        c = (np.arange(n) + 0.5) / n * 2 - 1
        x, y = np.meshgrid(c * self.tan, -c * self.tan)       # columns left->right, rows top->bottom
        ray = self.fwd[None, None] + x[..., None] * self.right + y[..., None] * self.up
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -self.pos[2] / ray[..., 2]
        pts = self.pos[:2] + t[..., None] * ray[..., :2]
        ok = (ray[..., 2] < -1e-3) & (t > 0) & (np.linalg.norm(pts, axis=-1) < self.max_range)
        ok &= np.linalg.norm(pts, axis=-1) > 0.0
        self.grids[n] = (pts.astype(np.float64), ok)
        return self.grids[n]

    def project(self, pts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) pixel coordinates in an n x n frame of floor points (x, y) relative to the root."""
        v = np.concatenate([pts, np.zeros(pts.shape[:-1] + (1,))], -1) - self.pos
        zc = v @ self.fwd
        xc, yc = v @ self.right, v @ self.up
        col = (xc / zc / self.tan + 1) * n / 2 - 0.5
        row = (1 - yc / zc / self.tan) * n / 2 - 0.5
        return row, col

    def _prepare(self, frame: np.ndarray) -> dict:
        """A frame's registration images: high-passed grey at full size (with gradients) and at 64 px."""
        from scipy.ndimage import zoom

        g = _gray(frame)
        if g.ndim != 2 or g.shape[0] != g.shape[1]:
            raise OdometryError(f"frames must be square [H, W(, 3)], got {np.shape(frame)}")
        n = g.shape[0]
        fine = _highpass(g, 4.0)
        coarse = _highpass(zoom(g, 64 / n, order=1), 2.5) if n != 64 else _highpass(g, 2.5)
        gy, gx = np.gradient(fine)
        return {"n": n, "fine": fine, "gy": gy, "gx": gx, "coarse": coarse}

    def _refine(self, a: dict, b: dict, d: np.ndarray, iters: int = 15) -> tuple[np.ndarray, float]:
        """Gauss-Newton from ``d`` with Tukey weights at full resolution: (d, residual)."""
        from scipy.ndimage import map_coordinates

        n = a["n"]
        pts, ok = self._grid(n)
        p, tgt = pts[ok], b["fine"][ok]
        scale = np.median(np.abs(tgt)) + 1e-3
        eps = 1e-3
        d = np.array(d, float)
        resid = np.inf
        for _ in range(iters):
            r, c = self.project(p + d, n)
            inside = (r > 0) & (r < n - 1) & (c > 0) & (c < n - 1)
            res = tgt - map_coordinates(a["fine"], [r, c], order=1)
            w_r, w_c = self.project(p + d + [eps, 0], n), self.project(p + d + [0, eps], n)
            grow = map_coordinates(a["gy"], [r, c], order=1)
            gcol = map_coordinates(a["gx"], [r, c], order=1)
            J = np.stack([(grow * (w_r[0] - r) + gcol * (w_r[1] - c)) / eps,
                          (grow * (w_c[0] - r) + gcol * (w_c[1] - c)) / eps], 1)
            k = 2.5 * 1.4826 * (np.median(np.abs(res[inside])) + 1e-3)
            u = res / k
            w = np.where(np.abs(u) < 1, (1 - u ** 2) ** 2, 0.0) * inside
            H = (J * w[:, None]).T @ J + 1e-6 * np.eye(2)
            delta = np.clip(np.linalg.solve(H, (J * w[:, None]).T @ res), -0.05, 0.05)
            d = d + delta
            # robust residual: the mean of the smaller 70 % (the body and its shadow are the rest)
            ar = np.sort(np.abs(res[inside]))
            resid = float(ar[: max(1, int(0.7 * len(ar)))].mean() / scale) if len(ar) else np.inf
            if np.abs(delta).max() < 1e-4:
                break
        return d, resid

    def _search(self, a: dict, b: dict, top: int = 3) -> list[np.ndarray]:
        """The ``top`` best displacements within max_step on the 64 px images (3 cm grid)."""
        from scipy.ndimage import map_coordinates

        pts, ok = self._grid(64)
        p, tgt = pts[ok], b["coarse"][ok]
        scale = np.median(np.abs(tgt)) + 1e-3
        g = np.arange(-self.max_step, self.max_step + 1e-9, 0.03)
        cand = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        cand = cand[np.linalg.norm(cand, axis=1) <= self.max_step]
        costs = np.empty(len(cand))
        for i0 in range(0, len(cand), 128):
            cs = cand[i0:i0 + 128]
            r, c = self.project(p[None] + cs[:, None], 64)
            vals = map_coordinates(a["coarse"], [r.ravel(), c.ravel()], order=1, mode="nearest").reshape(r.shape)
            costs[i0:i0 + 128] = np.minimum(np.abs(vals - tgt[None]) / scale, 3.0).mean(axis=1)
        picked: list[np.ndarray] = []
        for i in np.argsort(costs):
            if all(np.linalg.norm(cand[i] - q) > 0.1 for q in picked):
                picked.append(cand[i])
            if len(picked) == top:
                break
        return picked

    ACCEPT = 0.12
    """A local registration whose residual is under this is taken without the global search."""

    def displacement(self, frame0, frame1, guess=None, prepared: tuple | None = None) -> tuple[np.ndarray, float]:
        """(d [2] m, residual): the root's x, y displacement from frame0 to frame1 and the registration's
        robust residual (relative to the floor's contrast; high = unreliable)."""
        a, b = prepared or (self._prepare(frame0), self._prepare(frame1))
        if a["n"] != b["n"]:
            raise OdometryError(f"frames differ in size: {a['n']} and {b['n']}")
        best = self._refine(a, b, np.zeros(2) if guess is None else guess)
        if best[1] < self.ACCEPT and np.linalg.norm(best[0]) <= self.max_step:
            return best
        for start in self._search(a, b):
            d, r = self._refine(a, b, start)
            if r < best[1] and np.linalg.norm(d) <= self.max_step + 0.05:
                best = (d, r)
        return best

    def track(self, frames: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray]:
        """([T, 2] root x, y from 0 at frame 0, [T] residual per frame, 0 at frame 0) for uint8 [T, H, W, 3]."""
        frames = np.asarray(frames)
        xy = np.zeros((len(frames), 2))
        resid = np.zeros(len(frames))
        guess = None
        prev = self._prepare(frames[0]) if len(frames) else None
        for t in range(1, len(frames)):
            cur = self._prepare(frames[t])
            d, resid[t] = self.displacement(None, None, guess, prepared=(prev, cur))
            prev = cur
            xy[t] = xy[t - 1] + d
            guess = d
            if progress:
                progress(1)
        return xy, resid


def odometry_for(contract, model=None) -> FloorOdometry:
    """The FloorOdometry of a video contract (rlpf.viz.contract.VideoContract) for its world's camera."""
    from rlpf.envs.worlds import compile_world

    cw = compile_world(contract.world)
    if contract.lookat_z is None or contract.distance is None:
        raise OdometryError(f"world {cw.name!r}: floor odometry needs a contract camera that follows the root "
                            "in x, y at a fixed height and distance")
    return FloorOdometry(contract.size, contract.distance, contract.elevation, contract.azimuth, contract.lookat_z,
                         fovy=float((model or cw.model).vis.global_.fovy), floor_z=float(cw.floor_z))
