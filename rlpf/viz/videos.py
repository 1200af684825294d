"""Render clip files to videos under the video contract: the engine behind ``rlpf render``.

Each clip becomes ``OUT/<name>.mp4`` (``walk.npz`` -> ``walk.mp4``, clip i of a batch file ``batch.npz``
-> ``batch-<i>.mp4``) at the clip's own fps, from its world's contract camera (rlpf.viz.contract).
A file or clip that cannot be read, validated or rendered is one ``{"source", "error"}`` entry; the
rest are still rendered. Nothing is written over an input, and two clips never share an output name.
"""
from __future__ import annotations

import os
from collections.abc import Callable

from rlpf.core.clips import ClipError, checked_world, clip_files, load_clips
from rlpf.viz.contract import contract_for
from rlpf.viz.render import RenderError, video_failures, video_name


def output_name(source: str) -> str:
    """The video file name of a clip source: ``a/walk.npz`` -> ``walk.mp4``, ``a/batch.npz#3`` -> ``batch-3.mp4``."""
    return video_name(source, ".mp4", sep="-")


def render_files(paths: list[str], out_dir: str, world: str | None = None, size: int | None = None,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Render every clip under ``paths`` into ``out_dir``; returns ``{"videos": [{"source", "video",
    "fps", "frames", "world"}], "errors": [{"source", "error"}]}``.

    ``world`` overrides the clips' own; ``size`` the contract's resolution. ``out_dir`` is created.
    """
    from rlpf.envs.worlds import UnknownWorldError, compile_world

    if world is not None:
        compile_world(world)  # an unknown --world is the user's error, before any work
    os.makedirs(out_dir, exist_ok=True)
    inputs = {os.path.realpath(p) for p in clip_files(paths)}
    renderers: dict = {}
    videos, errors, taken = [], [], {}
    try:
        for path in clip_files(paths):
            try:
                clips = load_clips(path)
            except ClipError as e:
                errors.append({"source": e.source, "error": e.problem})
                if progress:
                    progress(1)
                continue
            for clip in clips:
                target = os.path.join(out_dir, output_name(clip.source))
                real = os.path.realpath(target)
                try:
                    cw = checked_world(clip, world)
                    if real in inputs:
                        raise RenderError(f"{target} is one of the inputs; choose another --out")
                    if real in taken:
                        raise RenderError(f"{target} is already the video of {taken[real]} (same file name); "
                                          "rename one of the clips or render them into separate --out")
                    if cw.name not in renderers:
                        contract = contract_for(cw, size)
                        renderers[cw.name] = (contract, contract.renderer(world=cw))
                    contract, r = renderers[cw.name]
                    from rlpf.viz.render import write_mp4

                    write_mp4(target, r.frames(clip.qpos), float(clip.fps))
                except ClipError as e:
                    errors.append({"source": e.source, "error": e.problem})
                except UnknownWorldError as e:
                    errors.append({"source": clip.source, "error": str(e)})
                except video_failures() as e:
                    errors.append({"source": clip.source, "error": f"cannot render: {e}"})
                else:
                    taken[real] = clip.source
                    videos.append({"source": clip.source, "video": target, "fps": float(clip.fps),
                                   "frames": int(clip.n_frames), "world": cw.name, "size": contract.size})
            if progress:
                progress(1)
    finally:
        for _, r in renderers.values():
            r.close()
    return {"videos": videos, "errors": errors}
