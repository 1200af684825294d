"""Clips: MuJoCo scene states over time, and their .npz file format (see docs/clip-format.md).

    qpos     float [T, nq] or [N, T, nq]   generalized positions in the world model's order
    fps      scalar > 0
    world    str, optional                 a built-in world name (the CLI's --world wins)
    prompt   str or [N] str, optional
    actions  float [T, nu] or [N, T, nu], optional
"""
from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import mujoco
import numpy as np

from rlpf.core.errors import RLPFError

CLIP_KEYS = ("qpos", "fps", "world", "prompt", "actions")
"""The only keys of a clip file rlpf reads; any other key is ignored and never decompressed."""
MAX_FRAMES = 10_000
"""Longest clip accepted (scoring holds ~60 KB per frame: 10k frames ~0.6 GB). Split longer motion
into windows of at most this many frames."""
MIN_FPS, MAX_FPS = 1.0, 1000.0
"""Frame rates accepted: below 1 fps the frames are not motion, and tracking would simulate hours."""
MAX_SECONDS = 600.0
"""Longest clip duration accepted (tracking simulates every second of it)."""
MAX_ARRAY_BYTES = 1 << 30
"""Largest uncompressed qpos / actions array of one file (a batch of many clips)."""
MAX_TEXT_BYTES = 1 << 20
"""Largest uncompressed world / prompt entry of one file."""


class ClipError(RLPFError, ValueError):
    """A clip that cannot be used; the message names the source and the problem."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass
class Clip:
    """One motion: qpos per frame at a frame rate, with what generated it."""

    qpos: np.ndarray
    fps: float
    world: str | None = None
    prompt: str | None = None
    actions: np.ndarray | None = None
    source: str = "<memory>"
    cache: dict = field(default_factory=dict, repr=False, compare=False)
    """Per-clip results shared by reward plugins (e.g. the inverse-dynamics pass)."""

    @property
    def n_frames(self) -> int:
        return int(self.qpos.shape[0])

    @property
    def dt(self) -> float:
        return 1.0 / self.fps

    @property
    def duration(self) -> float:
        return (self.n_frames - 1) / self.fps


def clip_files(paths: Iterable[str]) -> Iterator[str]:
    """Every .npz file named or inside the given directories (recursively, sorted); other names as given."""
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if f.endswith(".npz"):
                        yield os.path.join(root, f)
        else:
            yield p


def load_clips(path: str) -> list[Clip]:
    """All clips in one .npz file (a batch file gives N clips with sources ``path#i``).

    Checks the file's own structure; ``validate`` checks a clip against a world.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ClipError(path, "file not found") from None
    except OSError as e:
        raise ClipError(path, f"cannot read: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):  # a FIFO or device named *.npz would block or stream forever
        raise ClipError(path, "not a regular file")
    _check_sizes(path)
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ClipError(path, f"unreadable .npz file ({type(e).__name__}: {e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ClipError(path, "not an .npz archive (a bare .npy array?): save clips with np.savez or rlpf.core.clips.save_clips")
    try:
        with z:  # only the contract's keys: a junk key is never decompressed
            data = {k: z[k] for k in CLIP_KEYS if k in z.files}
            keys = sorted(z.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as e:
        raise ClipError(path, f"unreadable .npz file ({type(e).__name__}: {e})") from None
    if "qpos" not in data:
        raise ClipError(path, f"no 'qpos' array (keys: {keys}; a clip has {list(CLIP_KEYS)})")
    qpos = data["qpos"]
    if qpos.ndim not in (2, 3) or not np.issubdtype(qpos.dtype, np.number):
        raise ClipError(path, f"'qpos' must be a numeric [T, nq] or [N, T, nq] array, got shape {qpos.shape} {qpos.dtype}")
    if "fps" not in data:
        raise ClipError(path, "missing 'fps'")
    try:
        fps = float(np.asarray(data["fps"]).reshape(()))
    except (TypeError, ValueError):
        raise ClipError(path, f"'fps' must be one number, got {data['fps']!r}") from None
    if not np.isfinite(fps) or fps <= 0:
        raise ClipError(path, f"'fps' must be positive, got {fps}")
    _check_rate_and_length(path, fps, qpos.shape[-2])
    world = str(data["world"]) if "world" in data else None
    batch = qpos.ndim == 3
    n = qpos.shape[0] if batch else 1
    prompts = _per_clip(path, data.get("prompt"), n, batch, "prompt")
    actions = data.get("actions")
    if actions is not None and (actions.ndim != qpos.ndim or actions.shape[:-1] != qpos.shape[:-1]):
        raise ClipError(path, f"'actions' shape {actions.shape} does not match 'qpos' shape {qpos.shape}")
    clips = []
    for i in range(n):
        clips.append(Clip(
            qpos=np.asarray(qpos[i] if batch else qpos, dtype=np.float64),
            fps=fps,
            world=world,
            prompt=prompts[i],
            actions=None if actions is None else np.asarray(actions[i] if batch else actions, np.float64),
            source=f"{path}#{i}" if batch else path,
        ))
    return clips


def _check_sizes(path: str) -> None:
    """Refuse, before decompressing anything, arrays larger than the limits above.

    The shape is read from each .npy header inside the archive (the data is not touched), so a
    million-frame clip or a compressed junk array costs nothing to refuse.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for key in CLIP_KEYS:
                name = key + ".npy"
                if name not in names:
                    continue
                with zf.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)  # 3.0 differs only in text encoding
                    shape, _, dtype = read_header(f)
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                limit = MAX_TEXT_BYTES if key in ("world", "prompt") else MAX_ARRAY_BYTES
                if nbytes > limit:
                    raise ClipError(path, f"'{key}' is {nbytes / 2**20:.0f} MiB uncompressed (shape {shape}); "
                                          f"the limit is {limit / 2**20:.0f} MiB")
                if key == "qpos" and len(shape) in (2, 3) and shape[-2] > MAX_FRAMES:
                    raise ClipError(path, f"{shape[-2]} frames per clip; at most {MAX_FRAMES} are accepted "
                                          "(split the motion into shorter clips)")
    except ClipError:
        raise
    except zipfile.BadZipFile:
        return  # not a zip: np.load below says what it is
    except (ValueError, OSError, EOFError) as e:
        raise ClipError(path, f"unreadable .npz file ({type(e).__name__}: {e})") from None


def _check_rate_and_length(source: str, fps: float, frames: int) -> None:
    if not MIN_FPS <= fps <= MAX_FPS:
        raise ClipError(source, f"fps {fps:g} is outside the accepted {MIN_FPS:g}-{MAX_FPS:g}")
    if frames > MAX_FRAMES:
        raise ClipError(source, f"{frames} frames; at most {MAX_FRAMES} are accepted (split the motion into shorter clips)")
    if (frames - 1) / fps > MAX_SECONDS:
        raise ClipError(source, f"{(frames - 1) / fps:.0f} s long; at most {MAX_SECONDS:g} s are accepted")


def _per_clip(path, value, n, batch, key):
    if value is None:
        return [None] * n
    value = np.asarray(value)
    if value.ndim == 0:
        return [str(value)] * n
    if batch and value.shape == (n,):
        return [str(v) for v in value]
    raise ClipError(path, f"'{key}' must be a string or one string per clip, got shape {value.shape}")


def checked_world(clip: Clip, world: str | None = None):
    """The compiled world of ``clip`` (``world``, else the clip's own), the clip validated against it;
    ClipError naming the clip when it has no world or does not fit it."""
    from rlpf.envs.worlds import compile_world

    name = world or clip.world
    if not name:
        raise ClipError(clip.source, "no world: the file has no 'world' key and no --world was given")
    cw = compile_world(name)
    validate(clip, cw.model, cw.name)
    return cw


def validate(clip: Clip, model: mujoco.MjModel, world_name: str = "") -> Clip:
    """Check a clip against a world's model; normalise its quaternions in place. Raises ClipError."""
    q = clip.qpos
    if q.ndim != 2:
        raise ClipError(clip.source, f"qpos must be [T, nq], got shape {q.shape}")
    if q.shape[0] < 2:
        raise ClipError(clip.source, f"needs at least 2 frames, got {q.shape[0]}")
    if q.shape[1] != model.nq:
        raise ClipError(clip.source, f"qpos has width {q.shape[1]} but world {world_name!r} has nq={model.nq}")
    bad = ~np.isfinite(q)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ClipError(clip.source, f"qpos has {bad.sum()} non-finite values (first at frame {t}, coordinate {j})")
    if not (np.isfinite(clip.fps) and clip.fps > 0):
        raise ClipError(clip.source, f"fps must be positive, got {clip.fps}")
    _check_rate_and_length(clip.source, float(clip.fps), q.shape[0])
    if clip.actions is not None:
        a = clip.actions
        if a.ndim != 2 or a.shape[0] != q.shape[0] or a.shape[1] != model.nu:
            raise ClipError(clip.source, f"actions must be [T={q.shape[0]}, nu={model.nu}], got {a.shape}")
        if not np.isfinite(a).all():
            raise ClipError(clip.source, "actions contain non-finite values")
    for adr in quaternion_addresses(model):
        quat = q[:, adr:adr + 4]
        norm = np.linalg.norm(quat, axis=1, keepdims=True)
        if (norm < 1e-6).any():
            raise ClipError(clip.source, f"zero quaternion at qpos[{adr}:{adr + 4}]")
        q[:, adr:adr + 4] = quat / norm
    return clip


def quaternion_addresses(model: mujoco.MjModel) -> list[int]:
    """qpos addresses where a free or ball joint's unit quaternion starts."""
    out = []
    for j in range(model.njnt):
        if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            out.append(int(model.jnt_qposadr[j]) + 3)
        elif model.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
            out.append(int(model.jnt_qposadr[j]))
    return out


def save_clips(path: str, clips: list[Clip] | Clip, world: str | None = None) -> str:
    """Write clips to one .npz: a single clip as [T, nq], several of equal length as a [N, T, nq] batch."""
    clips = [clips] if isinstance(clips, Clip) else list(clips)
    if not clips:
        raise ValueError("save_clips: no clips to save")
    fps = {c.fps for c in clips}
    if len(fps) != 1 or len({c.qpos.shape for c in clips}) != 1:
        raise ValueError("save_clips: a batch file needs clips of one shape and one fps; save them separately")
    out: dict[str, np.ndarray] = {"fps": np.float64(clips[0].fps)}
    batch = len(clips) > 1
    out["qpos"] = np.stack([c.qpos for c in clips]) if batch else clips[0].qpos
    world = world or clips[0].world
    if world:
        out["world"] = np.str_(world)
    prompts = [c.prompt for c in clips]
    if any(p is not None for p in prompts):
        out["prompt"] = np.array([p or "" for p in prompts]) if batch else np.str_(prompts[0])
    if all(c.actions is not None for c in clips):
        out["actions"] = np.stack([c.actions for c in clips]) if batch else clips[0].actions
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **out)
    os.replace(tmp, path)  # never leave a half-written clip file
    return path


def load_by_world(paths: list[str], world: str | None) -> tuple[dict[str, list[Clip]], list[dict]]:
    """Load and validate every clip under ``paths`` against its world (``world`` overrides the files').

    Returns the clips grouped by world name and one ``{"source", "error"}`` per bad input: one broken
    file or clip never stops the rest.
    """
    from rlpf.envs.worlds import UnknownWorldError

    errors: list[dict] = []
    by_world: dict[str, list[Clip]] = {}
    for path in clip_files(paths):
        try:
            clips = load_clips(path)
        except ClipError as e:
            errors.append({"source": e.source, "error": e.problem})
            continue
        for clip in clips:
            try:
                checked_world(clip, world)
            except ClipError as e:
                errors.append({"source": e.source, "error": e.problem})
                continue
            except UnknownWorldError as e:
                errors.append({"source": clip.source, "error": str(e)})
                continue
            by_world.setdefault(world or clip.world, []).append(clip)
    return by_world, errors
