"""Render clips and tracking results to video (headless MuJoCo offscreen rendering + ffmpeg).

    r = ClipRenderer("ant", width=256, height=256)     # one offscreen renderer per world model
    frames = r.frames(clip.qpos)                          # uint8 [T, H, W, 3]
    write_mp4("walk.mp4", frames, fps=clip.fps)
    render_tracking_video(clip, result, "walk_tracked.mp4")  # reference | tracked, side by side

Headless machines need an offscreen OpenGL backend: ``MUJOCO_GL=egl`` (GPU, or Mesa's llvmpipe on a
CPU) or ``MUJOCO_GL=osmesa`` (software). MuJoCo reads ``MUJOCO_GL`` when it is first imported; if it
was unset then and is set (or the machine has no display) by the time the first renderer is made,
``ClipRenderer`` switches to the named backend itself.

Speed (llvmpipe, 2 shared cores): MuJoCo's default visual quality (4x multisampling, 4096 px shadow
maps) renders ant 19 / humanoid 13-16 fps at 128-256 px on a quiet machine; ``fast=True`` (the
default: no multisampling, 512 px shadow maps, znear 0.05) renders ant ~110-160 / humanoid ~55-70 fps
(about a third of that while other jobs load the machine).
Labels are drawn with Pillow (its bundled default font, ``ImageFont.load_default(size=...)``).
"""
from __future__ import annotations

from rlpf.core.errors import RLPFError

import copy
import functools
import math
import os
import platform
import re
from typing import Sequence

import numpy as np

from rlpf.core.clips import Clip

FAST_OFFSAMPLES = 0
FAST_SHADOWSIZE = 512
FAST_ZNEAR = 0.05
"""Near clipping plane (fraction of the model extent): without multisampling MuJoCo's default 0.01
leaves depth artifacts (dark patches near the horizon on llvmpipe); 0.05 removes them."""

GREEN = (40, 190, 70)
RED = (220, 50, 40)
WHITE = (235, 235, 235)
GREY = (150, 150, 150)
BACKGROUND = (24, 24, 28)


class RenderError(RLPFError, RuntimeError):
    """Rendering is not possible here (no OpenGL backend) or the inputs do not fit."""


def video_failures() -> tuple:
    """The exceptions that mean "no video can be made here", which callers that make videos after
    finished work (reports of ``rlpf train`` and ``rlpf control``, ``rlpf eval-control --video``) turn
    into a warning and an entry in their report instead of losing the work:

    RenderError (rlpf's own checks and GL errors), OSError (an unwritable or missing video directory,
    a full disk, ffmpeg's pipe), ImportError (imageio or a GL library missing), RuntimeError
    (imageio-ffmpeg without an ffmpeg binary, an invalid MUJOCO_GL), ``mujoco.FatalError`` (no OpenGL
    context: gymnasium's renderer with glfw and no display), and AttributeError, which is how PyOpenGL
    reports a GL library that failed to load (``'NoneType' object has no attribute 'glGetError'``
    under MUJOCO_GL=osmesa without libOSMesa). Anything else is a bug and propagates.
    """
    import mujoco

    return (RenderError, OSError, ImportError, RuntimeError, AttributeError, mujoco.FatalError)


def describe_failure(e: BaseException) -> str:
    """One line for a video failure: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


# ---------------------------------------------------------------------------------------------------
# OpenGL backend

_GL_HELP = ("set the environment variable MUJOCO_GL before starting Python: MUJOCO_GL=egl (GPU, or Mesa's "
            "llvmpipe on a CPU; needs libEGL, Debian: libegl1) or MUJOCO_GL=osmesa (software; needs libOSMesa, "
            "Debian: libosmesa6); MUJOCO_GL=glfw needs a display")
_backend_checked = False


def _ensure_gl_backend() -> None:
    """Use the backend MUJOCO_GL names now, even if mujoco was imported before it was set.

    mujoco picks its GL context class at import time from MUJOCO_GL (glfw when unset, which fails
    without a display). If it was unset then, and now names egl/osmesa (or the machine is a headless
    Linux box, where egl is the useful default), swap the class before the first context is made.
    """
    global _backend_checked
    if _backend_checked:
        return
    _backend_checked = True
    try:
        from mujoco.rendering.classic import gl_context
    except ImportError:  # older mujoco layouts: nothing to adjust
        return
    picked = getattr(gl_context, "_MUJOCO_GL", None)
    if picked is None or picked != "":  # MUJOCO_GL was set at import: respect it
        return
    wanted = os.environ.get("MUJOCO_GL", "").lower().strip()
    if not wanted and platform.system() == "Linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        wanted = "egl"
    if wanted not in ("egl", "osmesa"):
        return
    try:
        if wanted == "egl":
            from mujoco.egl import GLContext
        else:
            from mujoco.osmesa import GLContext
    except Exception as e:  # noqa: BLE001 - a missing library shows up as many exception types
        raise RenderError(f"cannot load the MUJOCO_GL={wanted} OpenGL backend ({type(e).__name__}: {e}); {_GL_HELP}") from None
    gl_context.GLContext = GLContext


def _make_renderer(model, width: int, height: int):
    import mujoco

    _ensure_gl_backend()
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - mujoco.FatalError, ImportError, OSError, GLFW errors
        backend = os.environ.get("MUJOCO_GL", "<unset>")
        raise RenderError(f"cannot create an offscreen OpenGL context (MUJOCO_GL={backend}; "
                          f"{type(e).__name__}: {e}); {_GL_HELP}") from None


# ---------------------------------------------------------------------------------------------------
# Renderer

class ClipRenderer:
    """Renders qpos trajectories of one world to RGB frames.

    camera: "track" (default) follows the root body of a floating-base world (ant, humanoid) with a
    free camera at a fixed distance / elevation / azimuth, and uses the world's declared ``view`` for
    a fixed-base world (Meta-World: the table's workspace) or else the model's default view (pusher); "default" is the model's default free view; a model camera's name or
    id; or a ``mujoco.MjvCamera``.
    fast: no multisampling and small shadow maps (~4-8x faster on software GL, slightly jaggier).
    follow: what the tracking camera follows: "xyz" (default: the root's position) or "xy" (the root's
    x and y at the fixed height ``lookat_z``, so root height stays visible against the floor: the
    video contract, rlpf.viz.contract). ``lookat_offset`` ([3], world frame) is added to the tracked point.
    geom_rgba: ``{geom name: (r, g, b, a)}`` colours set on this renderer's private copy of the model.
    markers: visual-only geoms added to that private copy (objects with ``add_to(spec)``, e.g.
    rlpf.viz.contract.Marker): the model is recompiled from the world's MJCF with them, so they render,
    segment and reflect like the world's own geoms; qpos and bodies stay the world's.
    """

    def __init__(self, world, width: int = 256, height: int = 256, camera="track", *,
                 distance: float | None = None, elevation: float = -20.0, azimuth: float = 90.0,
                 fast: bool = True, follow: str = "xyz", lookat_z: float | None = None,
                 geom_rgba: dict | None = None, markers=()):
        import mujoco

        from rlpf.envs.worlds import CompiledWorld, compile_world

        cw = world if isinstance(world, CompiledWorld) else compile_world(world)
        self.world = cw
        # a private copy: visual settings must not leak into the shared model
        model = _marked_model(cw, markers) if markers else copy.copy(cw.model)
        if fast:
            model.vis.quality.offsamples = FAST_OFFSAMPLES
            model.vis.quality.shadowsize = FAST_SHADOWSIZE
            model.vis.map.znear = max(float(model.vis.map.znear), FAST_ZNEAR)
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), int(width))
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), int(height))
        if follow not in ("xyz", "xy"):
            raise RenderError(f"follow must be 'xyz' or 'xy', got {follow!r}")
        if follow == "xy" and lookat_z is None:
            raise RenderError("follow='xy' needs lookat_z (the camera's fixed look-at height, m)")
        for name, rgba in (geom_rgba or {}).items():
            gid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)
            if gid < 0:
                raise RenderError(f"world {cw.name!r} has no geom {name!r} to colour")
            model.geom_rgba[gid] = rgba
        self.follow, self.lookat_z = follow, lookat_z
        self.lookat_offset = np.zeros(3)
        self.model = model
        self.data = mujoco.MjData(model)
        self.width, self.height = int(width), int(height)
        self._renderer = _make_renderer(model, self.width, self.height)
        self.root_body = cw.root_body
        self.tracking = False
        if isinstance(camera, mujoco.MjvCamera):
            self.camera = camera
        elif camera in ("track", "default"):
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FREE
            mujoco.mjv_defaultFreeCamera(model, cam)
            if camera == "track" and self.root_body is not None:
                self.tracking = True
                cam.distance = distance if distance is not None else self._default_distance()
                cam.elevation = elevation
                cam.azimuth = azimuth
            elif camera == "track" and cw.world.view:   # a fixed-base scene's declared view (World.view)
                *lookat, cam.distance, cam.elevation, cam.azimuth = cw.world.view
                cam.lookat[:] = lookat
            self.camera = cam
        else:
            cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) if isinstance(camera, str) else int(camera)
            if not 0 <= cam_id < model.ncam:
                names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
                raise RenderError(f"world {cw.name!r} has no camera {camera!r}: use 'track', 'default' or one of {names}")
            self.camera = cam_id

    def _default_distance(self) -> float:
        """About 2.5x the robot's radius in its initial pose (ant ~3.0 m, humanoid ~3.2 m)."""
        import mujoco

        m, d = self.model, self.data
        d.qpos[:] = m.qpos0
        mujoco.mj_kinematics(m, d)
        root = d.xpos[self.root_body]
        in_robot = np.array([self._in_robot(m.geom_bodyid[g]) for g in range(m.ngeom)])
        if not in_robot.any():
            return 3.0
        reach = np.linalg.norm(d.geom_xpos[in_robot] - root, axis=1) + m.geom_rbound[in_robot]
        return float(np.clip(2.5 * reach.max(), 1.0, 20.0))

    def _in_robot(self, body: int) -> bool:
        while body > 0:
            if body == self.root_body:
                return True
            body = self.model.body_parentid[body]
        return False

    def root_positions(self, qpos: np.ndarray) -> np.ndarray:
        """[T, 3] world position of the root body per frame (NaN where qpos is not finite)."""
        import mujoco

        qpos = np.asarray(qpos, np.float64)
        out = np.full((len(qpos), 3), np.nan)
        if self.root_body is None:
            return out
        m, d = self.model, self.data
        for t, q in enumerate(qpos):
            if np.isfinite(q).all():
                d.qpos[:] = q
                mujoco.mj_kinematics(m, d)
                out[t] = d.xpos[self.root_body]
        return out

    def frames(self, qpos: np.ndarray, lookat: np.ndarray | None = None) -> np.ndarray:
        """uint8 [T, H, W, 3]: each frame's pose after ``mj_forward`` (no stepping).

        lookat: optional [T, 3] points for the tracking camera to centre on instead of this
        trajectory's own root (e.g. the reference's root, so a tracked motion's drift stays visible).
        Frames whose qpos is not finite (a diverged simulation) repeat the last good frame, tinted red.
        """
        import mujoco

        qpos = np.asarray(qpos, np.float64)
        if qpos.ndim != 2 or qpos.shape[1] != self.model.nq:
            raise RenderError(f"qpos must be [T, nq={self.model.nq}] for world {self.world.name!r}, got {qpos.shape}")
        if lookat is not None:
            lookat = np.asarray(lookat, np.float64)
            if lookat.shape != (len(qpos), 3):
                raise RenderError(f"lookat must be [T={len(qpos)}, 3], got {lookat.shape}")
        m, d, r = self.model, self.data, self._renderer
        out = np.empty((len(qpos), self.height, self.width, 3), np.uint8)
        last = None
        last_lookat = None
        for t, q in enumerate(qpos):
            if not np.isfinite(q).all():
                out[t] = _tint_red(last) if last is not None else np.array(RED, np.uint8) // 3
                continue
            d.qpos[:] = q
            mujoco.mj_forward(m, d)
            if self.tracking:
                target = lookat[t] if lookat is not None else d.xpos[self.root_body]
                if self.follow == "xy":
                    target = np.array([target[0], target[1], self.lookat_z])
                target = target + self.lookat_offset
                if np.isfinite(target).all():
                    last_lookat = target
                if last_lookat is not None:
                    self.camera.lookat[:] = last_lookat
            r.update_scene(d, camera=self.camera)
            r.render(out=out[t])
            last = out[t]
        return out

    def floor_texture(self) -> int | None:
        """Id of the 2-D texture on the world's floor (its material's RGB texture), or None."""
        import mujoco

        floor = (mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, self.world.world.floor)
                 if self.world.floor_geom is not None else -1)   # by name: markers shift geom ids
        if floor < 0 or self.model.geom_matid[floor] < 0:
            return None
        tex = int(self.model.mat_texid[self.model.geom_matid[floor], int(mujoco.mjtTextureRole.mjTEXROLE_RGB)])
        return tex if tex >= 0 and self.model.tex_type[tex] == int(mujoco.mjtTexture.mjTEXTURE_2D) else None

    def set_floor_colours(self, dark, light) -> None:
        """Repaint a two-colour (checker) floor texture: its dark texels ``dark``, the others ``light``
        (RGB 0-255), uploaded to this renderer's GL context. The floor material's tint still applies."""
        import mujoco

        tex = self.floor_texture()
        if tex is None:
            raise RenderError(f"world {self.world.name!r} has no 2-D floor texture to repaint")
        m = self.model
        if not hasattr(self, "_floor_mask"):
            a, nc = m.tex_adr[tex], m.tex_nchannel[tex]
            texels = m.tex_data[a:a + m.tex_width[tex] * m.tex_height[tex] * nc].reshape(-1, nc)
            self._floor_mask = texels[:, :3].mean(axis=1) > 127
        a, nc = m.tex_adr[tex], m.tex_nchannel[tex]
        texels = m.tex_data[a:a + len(self._floor_mask) * nc].reshape(-1, nc)  # a view into tex_data
        texels[:, :3] = np.where(self._floor_mask[:, None], np.asarray(light, np.uint8), np.asarray(dark, np.uint8))
        ctx = self._renderer._gl_context
        if ctx is not None:
            ctx.make_current()
        mujoco.mjr_uploadTexture(m, self._renderer._mjr_context, tex)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _marked_model(cw, markers):
    """The world's model recompiled with visual ``markers`` added (rlpf.viz.contract.Marker)."""
    from rlpf.envs.worlds import load_model

    def edit(spec):
        for mk in markers:
            mk.add_to(spec)

    model = load_model(cw.world, edit)
    if model.nq != cw.model.nq or model.nbody != cw.model.nbody:
        raise RenderError(f"markers of world {cw.name!r} must add geoms only (nq {cw.model.nq} -> {model.nq}, "
                          f"bodies {cw.model.nbody} -> {model.nbody})")
    return model


def _tint_red(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float32) * 0.45
    f[..., 0] += 110
    return np.clip(f, 0, 255).astype(np.uint8)


_RENDERERS: dict[tuple, ClipRenderer] = {}


def get_renderer(world, width: int = 256, height: int = 256) -> ClipRenderer:
    """A cached ``ClipRenderer`` (default camera and fast settings) per world and size in this process."""
    from rlpf.envs.worlds import CompiledWorld, compile_world

    cw = world if isinstance(world, CompiledWorld) else compile_world(world)
    key = (cw.world, int(width), int(height))
    if key not in _RENDERERS:
        _RENDERERS[key] = ClipRenderer(cw, width, height)
    return _RENDERERS[key]


# ---------------------------------------------------------------------------------------------------
# Text: Pillow's default font (a scalable FreeType font bundled with Pillow, so no system fonts needed)

FONT_PX = 10
"""Font size in pixels at scale 1 (cap height ~7 px, line 13 px: readable in a 64-256 px panel)."""


@functools.lru_cache(maxsize=None)
def _font(scale: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_PX * scale)
    except (ImportError, OSError) as e:  # a Pillow built without FreeType (load_default(size=) needs it)
        raise RenderError(f"cannot load Pillow's default font at {FONT_PX * scale} px ({type(e).__name__}: {e}); "
                          "install a Pillow wheel with FreeType support (pip install pillow)") from None


def text_height(scale: int = 1) -> int:
    """Height in pixels of one line of text (ascent + descent) drawn with ``draw_text``."""
    ascent, descent = _font(scale).getmetrics()
    return int(ascent + descent)


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn with ``draw_text``."""
    return int(math.ceil(_font(scale).getlength(text))), text_height(scale)


def draw_text(img: np.ndarray, text: str, x: int, y: int, color=WHITE, scale: int = 1) -> np.ndarray:
    """Draw ``text`` into ``img`` ([H, W, 3] uint8, in place) with its top-left corner at (x, y); clipped
    at the image's edges. Anti-aliased against whatever is already there."""
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    tw, th = text_size(text, scale)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + tw + scale, w), min(y + th, h)
    if not text or x1 <= x0 or y1 <= y0:
        return img
    region = Image.fromarray(np.ascontiguousarray(img[y0:y1, x0:x1]))  # only the pixels the text can touch
    ImageDraw.Draw(region).text((x - x0, y - y0), text, font=_font(scale), fill=tuple(int(c) for c in color))
    img[y0:y1, x0:x1] = np.asarray(region)
    return img


def _fit(text: str, width_px: int, scale: int) -> str:
    """``text``, or its longest prefix + '..' that fits ``width_px`` with a margin of the label padding."""
    room = width_px - 2 * 3 * scale
    if _font(scale).getlength(text) <= room:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix that fits with the ellipsis
        mid = (lo + hi + 1) // 2
        if _font(scale).getlength(text[:mid] + "..") <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + ".." if lo else ""


# ---------------------------------------------------------------------------------------------------
# Composition

def _texts(value, T: int) -> list:
    """A string (or None) repeated, or one string per frame."""
    if value is None or isinstance(value, str):
        return [value] * T
    value = list(value)
    if len(value) != T:
        raise RenderError(f"footer needs one string per frame ({T}), got {len(value)}")
    return value


def _colours(value, T: int) -> np.ndarray:
    """[T, 3] uint8 from one RGB colour or one colour per frame."""
    arr = np.asarray(value)
    if arr.shape == (3,):
        return np.broadcast_to(arr.astype(np.uint8), (T, 3))
    if arr.shape != (T, 3):
        raise RenderError(f"a border is one RGB colour or [T={T}, 3] colours, got shape {arr.shape}")
    return arr.astype(np.uint8)


def side_by_side(left_frames: np.ndarray, right_frames: np.ndarray, labels: Sequence[str] = ("reference", "tracked"),
                 footer=None, *, borders: Sequence = (None, None), footer_bar=None,
                 label_colours: Sequence = (WHITE, WHITE), scale: int | None = None) -> np.ndarray:
    """Two equally long frame stacks next to each other, each under a text label.

    labels: one string per panel (drawn in ``label_colours``). footer: a string, or one string per frame (e.g. a per-frame
    error readout), drawn in a strip under both panels. borders: per panel None, an RGB colour, or
    [T, 3] colours per frame (e.g. green while tracking succeeds, red once it has failed).
    footer_bar: optional [T] values drawn as a bar in the footer, 1.0 = full width, red above 1.
    Returns uint8 [T, H + header + footer, W_left + W_right + gap, 3].
    """
    left, right = np.asarray(left_frames), np.asarray(right_frames)
    if left.ndim != 4 or right.ndim != 4 or left.shape[-1] != 3 or right.shape[-1] != 3:
        raise RenderError(f"frames must be [T, H, W, 3], got {left.shape} and {right.shape}")
    if len(left) != len(right) or left.shape[1] != right.shape[1]:
        raise RenderError(f"panels need the same frame count and height, got {left.shape} and {right.shape}")
    T, H, WL, WR = len(left), left.shape[1], left.shape[2], right.shape[2]
    if scale is None:
        scale = max(1, min(WL, WR) // 256)
    gap = 2 * scale
    pad = 3 * scale
    line = text_height(scale) + 2 * pad
    footers = _texts(footer, T)
    bar = None if footer_bar is None else np.asarray(footer_bar, float)
    if bar is not None and bar.shape != (T,):
        raise RenderError(f"footer_bar needs one value per frame ({T}), got shape {bar.shape}")
    foot_h = (line if footer is not None else 0) + ((3 * scale + pad) if bar is not None else 0)
    W = WL + gap + WR
    out = np.empty((T, line + H + foot_h, W, 3), np.uint8)
    out[:] = np.asarray(BACKGROUND, np.uint8)
    out[:, line:line + H, :WL] = left
    out[:, line:line + H, WL + gap:] = right
    header = out[0, :line].copy()
    for (x0, w), label, colour in zip(((0, WL), (WL + gap, WR)), labels, label_colours):
        if label:
            draw_text(header[:, x0:x0 + w], _fit(str(label), w, scale), pad, pad, colour, scale)
    out[:, :line] = header
    bw = max(2, 2 * scale)
    for (x0, w), border in zip(((0, WL), (WL + gap, WR)), borders):
        if border is None:
            continue
        colours = _colours(border, T).reshape(T, 1, 1, 3)
        y0, y1 = line, line + H
        out[:, y0:y0 + bw, x0:x0 + w] = colours
        out[:, y1 - bw:y1, x0:x0 + w] = colours
        out[:, y0:y1, x0:x0 + bw] = colours
        out[:, y0:y1, x0 + w - bw:x0 + w] = colours
    y = line + H
    if footer is not None:
        cache: dict[str, np.ndarray] = {}
        for t, text in enumerate(footers):
            if text is None:
                continue
            if text not in cache:
                strip = out[t, y:y + line].copy()
                draw_text(strip, _fit(text, W, scale), pad, pad, WHITE, scale)
                cache[text] = strip
            out[t, y:y + line] = cache[text]
        y += line
    if bar is not None:
        bh = 3 * scale
        for t, v in enumerate(bar):
            full = np.isfinite(v) and v <= 1.0
            n = W - 2 * pad if not np.isfinite(v) else int(round(min(max(v, 0.0), 1.0) * (W - 2 * pad)))
            out[t, y:y + bh, pad:W - pad] = (60, 60, 66)
            out[t, y:y + bh, pad:pad + n] = GREEN if full else RED
    return out


# ---------------------------------------------------------------------------------------------------
# Files

def write_mp4(path: str, frames: np.ndarray, fps: float, quality: float = 7.0) -> str:
    """Write uint8 [T, H, W, 3] frames as an H.264 mp4 (imageio's bundled ffmpeg), atomically.

    Odd widths/heights are padded by one pixel (yuv420p needs even sizes). Returns ``path``.
    """
    import imageio.v2 as imageio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise RenderError(f"frames must be a non-empty [T, H, W, 3] array, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    if not (np.isfinite(fps) and fps > 0):
        raise RenderError(f"fps must be positive, got {fps}")
    ph, pw = frames.shape[1] % 2, frames.shape[2] % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.mp4")
    try:
        writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=float(fps), codec="libx264",
                                    pixelformat="yuv420p", quality=quality, macro_block_size=1,
                                    ffmpeg_log_level="error")
        try:
            for f in frames:
                writer.append_data(f)
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def video_name(source: str, suffix: str = ".mp4", sep: str = "_") -> str:
    """A file name for a clip's video: ``dir/a.npz`` -> ``a.mp4``, ``dir/batch.npz#3`` -> ``batch_3.mp4``
    (``batch-3.mp4`` with ``sep="-"``, the name ``rlpf render`` gives)."""
    base, _, index = source.partition("#")
    stem = os.path.splitext(os.path.basename(base))[0] or "clip"
    if index:
        stem += f"{sep}{index}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) + suffix


def _stride(fps: float, max_fps: float | None) -> int:
    return 1 if not max_fps or fps <= max_fps else int(math.ceil(fps / max_fps - 1e-9))


def _world_of(clip: Clip, world):
    name = world or clip.world
    if not name:
        raise RenderError(f"{clip.source}: no world: the clip has none and none was given")
    return name


def render_clip_video(clip: Clip, path: str, world=None, *, width: int = 256, height: int = 256,
                      max_fps: float | None = 30.0, label: str | None = None,
                      renderer: ClipRenderer | None = None) -> str:
    """Render one clip to an mp4 with a label (its prompt by default). Frames above ``max_fps`` are
    subsampled (every k-th frame, played at fps/k, so the video keeps real time). Returns ``path``."""
    r = renderer or get_renderer(_world_of(clip, world), width, height)
    k = _stride(clip.fps, max_fps)
    frames = r.frames(clip.qpos[::k])
    text = label if label is not None else (clip.prompt or video_name(clip.source, ""))
    if text:
        scale = max(1, r.width // 256)
        pad = 3 * scale
        strip = np.empty((len(frames), text_height(scale) + 2 * pad, r.width, 3), np.uint8)
        strip[:] = np.asarray(BACKGROUND, np.uint8)
        draw_text(strip[0], _fit(text, r.width, scale), pad, pad, WHITE, scale)
        strip[1:] = strip[0]
        frames = np.concatenate([strip, frames], axis=1)
    return write_mp4(path, frames, clip.fps / k)


def tracking_status(result) -> str:
    """'OK', or 'FAILED (fell)' / '(diverged)' / '(err > 0.5 m)' for a TrackResult."""
    if result.success:
        return "OK"
    why = [w for w, flag in (("fell", result.fell), ("diverged", result.diverged)) if flag]
    err = np.asarray(result.body_error_m, float)
    if not why and (~np.isfinite(err)).any():
        why.append("non-finite error")
    elif not why and err.size and np.nanmax(err) > result.threshold_m:
        why.append(f"err > {result.threshold_m:g} m")
    return "FAILED" + (f" ({', '.join(why)})" if why else "")


def tracking_summary(result) -> str:
    """'OK, mean 0.04 m, max 0.12 m' or 'FAILED (fell), mean ...' for a TrackResult."""
    err = np.asarray(result.body_error_m, float)
    err = err[np.isfinite(err)]
    mx = f"{err.max():.2f}" if err.size else "nan"
    return f"{tracking_status(result)}, mean {result.mean_error_m:.2f} m, max {mx} m"


def render_tracking_video(clip: Clip, result, path: str, world=None, *, width: int = 256, height: int = 256,
                          max_fps: float | None = 30.0, follow: str = "reference",
                          renderer: ClipRenderer | None = None) -> str:
    """Reference (left) and tracked (right) side by side, as an mp4. Returns ``path``.

    The right panel's label says OK / FAILED (and why) in green / red; its border is green
    until the frame where the error first exceeds the threshold (or the simulation diverged) and red
    from then on; the footer reads the time and that frame's error, with a bar where full width is
    the success threshold, and the clip's mean / max error. follow="reference": both panels' cameras follow the reference's root, so
    drift shows as displacement; "each": each panel follows its own root.
    """
    if follow not in ("reference", "each"):
        raise ValueError(f"follow must be 'reference' or 'each', got {follow!r}")
    q_ref = np.asarray(clip.qpos)
    q_sim = np.asarray(result.qpos)
    if q_sim.shape != q_ref.shape:
        raise RenderError(f"{clip.source}: tracked qpos {q_sim.shape} does not match the reference {q_ref.shape}")
    err = np.asarray(result.body_error_m, float)
    if err.shape != (len(q_ref),):
        raise RenderError(f"{clip.source}: body_error_m has shape {err.shape}, expected ({len(q_ref)},)")
    r = renderer or get_renderer(_world_of(clip, world), width, height)
    k = _stride(clip.fps, max_fps)
    idx = np.arange(0, len(q_ref), k)
    lookat = None
    if follow == "reference" and r.tracking:
        lookat = r.root_positions(q_ref[idx])
    left = r.frames(q_ref[idx], lookat=lookat)
    right = r.frames(q_sim[idx], lookat=lookat)

    bad = ~np.isfinite(err) | (err > result.threshold_m) | ~np.isfinite(q_sim).all(axis=1)
    failed_from = int(np.argmax(bad)) if bad.any() else len(err)
    if result.fell and not bad.any():
        failed_from = len(err) - 1
    border = np.array([GREEN if i < failed_from else RED for i in idx], np.uint8)
    finite = err[np.isfinite(err)]
    overall = (f"mean {result.mean_error_m:.2f} m, max {finite.max() if finite.size else np.nan:.2f} m, "
               f"limit {result.threshold_m:g} m")
    footers = [f"t {i / clip.fps:5.2f} s  err " + (f"{err[i]:.3f} m" if np.isfinite(err[i]) else "-- (diverged)")
               + f"   ({overall})" for i in idx]
    ref_label = "reference" + (f": {clip.prompt}" if clip.prompt else "")
    frames = side_by_side(left, right, (ref_label, f"tracked: {tracking_status(result)}"), footers,
                          borders=(None, border), footer_bar=err[idx] / result.threshold_m,
                          label_colours=(WHITE, GREEN if result.success else RED))
    return write_mp4(path, frames, clip.fps / k)
