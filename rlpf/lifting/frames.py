"""Video frames in and out of the pose network: reading a video file, resizing to the network's input.

Videos are read with imageio's ffmpeg plugin (the ``video`` dependency rlpf already has). A file that
is missing, not a video, empty or not RGB is a VideoError naming it.
"""
from __future__ import annotations

import os

import numpy as np

from rlpf.core.errors import RLPFError

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
MAX_VIDEO_FRAMES = 10_000
"""As many frames as a clip may have (rlpf.core.clips.MAX_FRAMES)."""


class VideoError(RLPFError, ValueError):
    """A video that cannot be read or lifted; the message names the file."""


def video_files(paths) -> list[str]:
    """Every video file named or inside the given directories (recursively, sorted)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                out += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(VIDEO_SUFFIXES)]
        else:
            out.append(p)
    return out


def is_video(path: str) -> bool:
    return os.fspath(path).lower().endswith(VIDEO_SUFFIXES)


def read_video(path: str) -> tuple[np.ndarray, float]:
    """(uint8 [T, H, W, 3] frames, fps) of a video file."""
    import imageio.v2 as imageio

    if not os.path.exists(path):
        raise VideoError(f"{path}: file not found")
    if not os.path.isfile(path):
        raise VideoError(f"{path}: not a regular file")
    try:
        reader = imageio.get_reader(path, format="FFMPEG")
    except Exception as e:  # noqa: BLE001 - ffmpeg reports a bad file as many exception types
        raise VideoError(f"{path}: unreadable video ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    try:
        fps = float(reader.get_meta_data().get("fps") or 0)
        frames = []
        for f in reader:   # not list(reader): its length may be inf
            frames.append(np.asarray(f))
            if len(frames) > MAX_VIDEO_FRAMES:
                raise VideoError(f"{path}: more than {MAX_VIDEO_FRAMES} frames; split the video")
    except VideoError:
        raise
    except Exception as e:  # noqa: BLE001
        raise VideoError(f"{path}: unreadable video ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    finally:
        reader.close()
    if len(frames) < 2:
        raise VideoError(f"{path}: {len(frames)} frames; a clip needs at least 2")
    arr = np.stack(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise VideoError(f"{path}: frames must be RGB, got shape {arr.shape[1:]}")
    if not (np.isfinite(fps) and 1 <= fps <= 1000):
        raise VideoError(f"{path}: frame rate {fps} is outside 1-1000 fps")
    return arr, fps


def resize(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> uint8 [T, size, size, 3] (box filter: averaging keeps sub-pixel detail)."""
    from PIL import Image

    frames = np.asarray(frames)
    if frames.shape[1:3] == (size, size):
        return frames
    if frames.shape[1] != frames.shape[2]:
        raise VideoError(f"frames must be square (the video contract), got {frames.shape[2]}x{frames.shape[1]}")
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BOX)) for f in frames])


def mp4_roundtrip(frames: np.ndarray, fps: float, tmp_dir: str) -> np.ndarray:
    """The frames as a reader of the mp4 ``rlpf render`` writes gets them back (H.264 compression included)."""
    from rlpf.viz.render import write_mp4

    path = os.path.join(tmp_dir, f".roundtrip-{os.getpid()}.mp4")
    try:
        write_mp4(path, frames, fps)
        out, _ = read_video(path)
    finally:
        if os.path.exists(path):
            os.remove(path)
    return out
