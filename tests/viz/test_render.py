"""rlpf.viz.render (offscreen frames, side-by-side composition, mp4) and ``rlpf track`` with videos."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rlpf.core.clips import Clip, save_clips
from rlpf.judge.tracking import TrackResult

import imageio.v2 as imageio  # a core dependency: missing, every test here must fail, not skip

from rlpf.viz import render

W, H = 64, 48


@pytest.fixture(scope="module")
def ant(no_rendering):
    try:
        return render.ClipRenderer("ant", W, H)
    except render.RenderError as e:  # no OpenGL backend on this machine: skipped, or failed in CI
        no_rendering(e)


@pytest.fixture(scope="module")
def ant_clip():
    from rlpf.policies.scripted import AntGait
    from rlpf.data.simulate import simulate

    return simulate("ant", AntGait(), 24, seed=0, prompt="walk forward")


def _robot_centroid(frame: np.ndarray) -> np.ndarray | None:
    """(x, y) pixel centroid of the ant's tan body (red well above blue; floor and sky are grey/green)."""
    f = frame.astype(int)
    mask = (f[..., 0] - f[..., 2] > 50) & (f[..., 0] > 90)
    if mask.sum() < 10:
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_frames_shape_dtype_and_pose_changes(ant):
    q = np.tile(ant.model.qpos0, (3, 1))
    q[1, 7] += 0.6   # a hip joint
    q[2, 9] += 0.6   # another leg
    frames = ant.frames(q)
    assert frames.shape == (3, H, W, 3) and frames.dtype == np.uint8
    assert frames.std() > 5  # not a blank image
    assert np.abs(frames[1].astype(int) - frames[0]).sum() > 0
    assert np.abs(frames[2].astype(int) - frames[1]).sum() > 0
    with pytest.raises(render.RenderError, match="nq=15"):
        ant.frames(np.zeros((2, 10)))


def test_camera_follows_translated_root(ant):
    q = np.tile(ant.model.qpos0, (3, 1))
    q[:, 0] = [0.0, 6.0, -4.0]
    q[:, 1] = [0.0, 3.0, 8.0]
    frames = ant.frames(q)
    centre = np.array([W / 2, H / 2])
    for f in frames:
        c = _robot_centroid(f)
        assert c is not None, "robot not visible"
        assert np.all(np.abs(c - centre) < [0.2 * W, 0.25 * H]), (c, centre)
    # the same pose far away from a camera that does not follow: the robot is not centred (or not seen)
    static = render.ClipRenderer("ant", W, H, camera="default")
    c = _robot_centroid(static.frames(q[1:2])[0])
    assert c is None or np.any(np.abs(c - centre) > [0.2 * W, 0.25 * H])
    static.close()


def test_nonfinite_frames_repeat_last_good_frame_tinted(ant):
    q = np.tile(ant.model.qpos0, (3, 1))
    q[2] = np.nan
    frames = ant.frames(q)
    assert frames.shape == (3, H, W, 3)
    assert frames[2, ..., 0].mean() > frames[2, ..., 1].mean()  # reddish


def test_side_by_side_shape_labels_and_borders():
    T = 4
    left = np.full((T, H, W, 3), 100, np.uint8)
    right = np.full((T, H, W + 10, 3), 100, np.uint8)
    plain = render.side_by_side(left, right, labels=("", ""))
    assert plain.shape[0] == T and plain.shape[2] == W + (W + 10) + 2
    out = render.side_by_side(left, right, ("reference", "tracked: OK"), [f"err {i}" for i in range(T)],
                              borders=(None, render.GREEN), footer_bar=np.linspace(0, 2, T))
    assert out.dtype == np.uint8 and out.shape[0] == T and out.shape[2] == plain.shape[2]
    assert out.shape[1] > plain.shape[1]  # footer strip
    header = plain.shape[1] - H
    # label text drawn in its colour (anti-aliased: the stroke centres reach it, the edges blend)
    near_white = (np.abs(out[0, :header].astype(int) - render.WHITE) <= 40).all(axis=-1)
    assert near_white[:, :W].any() and near_white[:, W + 2:].any()
    assert np.array_equal(plain[0, :header], np.broadcast_to(np.uint8(render.BACKGROUND), plain[0, :header].shape))
    assert (out[0, header + 1, W + 2 + 5] == render.GREEN).all()  # right panel border
    assert not np.array_equal(out[0, header + H:], out[1, header + H:])  # per-frame footer
    with pytest.raises(render.RenderError):
        render.side_by_side(left, right[:2])


def test_draw_text_clips_at_the_edge():
    img = np.zeros((10, 20, 3), np.uint8)
    render.draw_text(img, "hello world, 0.5 m", 2, 2)
    assert img.any() and img.shape == (10, 20, 3)
    edge = np.zeros((10, 20, 3), np.uint8)
    render.draw_text(edge, "far off", 50, 50)  # wholly outside: nothing drawn, no error
    assert not edge.any()
    render.draw_text(edge, "x", -3, -3)  # partly outside: clipped, drawn only near the corner
    assert edge.any() and not edge[:, 8:].any()


def test_labels_are_drawn_with_pillow_in_the_label_strip():
    """The label strip of a labelled frame differs from an unlabelled one where the text is, in the
    label's colour, and nowhere else; longer labels are cut to the panel with '..'."""
    T = 2
    frames = np.full((T, H, W, 3), 100, np.uint8)
    unlabelled = render.side_by_side(frames, frames, labels=("", ""))
    labelled = render.side_by_side(frames, frames, labels=("ref", "tracked: FAILED (fell)"),
                                   label_colours=(render.WHITE, render.RED))
    assert labelled.shape == unlabelled.shape
    header = unlabelled.shape[1] - H
    changed = (labelled != unlabelled).any(axis=-1)
    assert changed[:, :header].any() and not changed[:, header:].any()  # only the label strip changes
    assert changed[0, :header, :W].sum() > 20 and changed[0, :header, W + 2:].sum() > 20  # both labels
    ys, xs = np.nonzero(changed[0, :header, W + 2:])
    right = labelled[0, ys, W + 2 + xs].astype(int)
    reddest = right[np.argmax(right[:, 0] - right[:, 1])]
    assert reddest[0] > 150 and reddest[1] < 90  # drawn in RED, not white
    assert render._fit("tracked: FAILED (fell)", W, 1).endswith("..")
    assert render.text_size("tracked", 1)[0] < render.text_size("tracked", 2)[0]  # scale grows the font


def test_write_mp4_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 47, 63, 3), dtype=np.uint8)  # odd sizes get padded
    path = render.write_mp4(str(tmp_path / "sub" / "v.mp4"), frames, fps=20)
    assert os.path.getsize(path) > 0
    reader = imageio.get_reader(path)
    try:
        got = [f for f in reader]
        fps = reader.get_meta_data()["fps"]
    finally:
        reader.close()
    assert len(got) == 12 and got[0].shape == (48, 64, 3)
    assert fps == pytest.approx(20)
    assert os.listdir(tmp_path / "sub") == ["v.mp4"]  # no temp file left


def test_render_tracking_video(tmp_path, ant, ant_clip):
    sim = ant_clip.qpos.copy()
    sim[:, 0] += np.linspace(0, 0.8, len(sim))
    sim[18:] = np.nan  # diverged
    err = np.linspace(0, 0.8, len(sim))
    err[18:] = np.nan
    result = TrackResult(source=ant_clip.source, qpos=sim, body_error_m=err, torques=np.zeros((len(sim), 0)),
                         fell=False, diverged=True, threshold_m=0.5)
    assert render.tracking_status(result) == "FAILED (diverged)"
    assert render.tracking_summary(result).startswith("FAILED (diverged), mean 0.")
    path = render.render_tracking_video(ant_clip, result, str(tmp_path / "t.mp4"), renderer=ant)
    reader = imageio.get_reader(path)
    try:
        frames = [f for f in reader]
    finally:
        reader.close()
    assert len(frames) == len(ant_clip.qpos)  # 20 fps clip: no subsampling
    assert frames[0].shape[1] == 2 * W + 2
    path = render.render_clip_video(ant_clip, str(tmp_path / "c.mp4"), renderer=ant)
    assert os.path.getsize(path) > 0


def test_video_name():
    assert render.video_name("dir/a.npz") == "a.mp4"
    assert render.video_name("dir/batch file.npz#3") == "batch_file_3.mp4"


def test_missing_gl_backend_is_named():
    """Without a display, MUJOCO_GL=glfw cannot work: the error says what to set instead."""
    if os.environ.get("DISPLAY") or sys.platform != "linux":
        pytest.skip("a display is available")
    code = ("from rlpf.viz.render import ClipRenderer, RenderError\n"
            "try:\n    ClipRenderer('ant', 32, 32)\nexcept RenderError as e:\n    print('ERR', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["MUJOCO_GL"] = "glfw"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    if "ERR" not in p.stdout:
        pytest.skip(f"glfw rendered or failed differently: {p.stdout[-200:]} {p.stderr[-300:]}")
    assert "MUJOCO_GL=egl" in p.stdout and "osmesa" in p.stdout


# ---------------------------------------------------------------------------------------------------
# rlpf track


class _ShiftTracker:
    """Stand-in tracker: the 'simulated' motion is the reference drifting sideways (fails past 0.5 m)."""

    def __init__(self, drift: float):
        self.drift = drift

    def track(self, clips, workers=None, progress=None):
        out = []
        for c in clips:
            q = c.qpos.copy()
            err = np.linspace(0, self.drift, len(q))
            q[:, 1] += err
            out.append(TrackResult(source=c.source, qpos=q, body_error_m=err, torques=np.zeros((len(q), 0)),
                                   fell=False, diverged=False, threshold_m=0.5))
            if progress:
                progress(1)
        return out


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, ant_clip):
    d = tmp_path_factory.mktemp("track_clips")
    save_clips(str(d / "a.npz"), ant_clip)
    second = Clip(qpos=ant_clip.qpos.copy(), fps=ant_clip.fps, world="ant", prompt="walk forward")
    save_clips(str(d / "batch.npz"), [ant_clip, second])
    np.savez(d / "wide.npz", qpos=np.zeros((10, 7)), fps=20.0, world=np.str_("ant"))
    return d


def test_track_cli_with_stand_in_tracker(tmp_path, clip_dir, monkeypatch, ant):
    import rlpf.judge.tracking
    from rlpf.cli import main

    calls = []

    def fake_load_tracker(spec, world):
        calls.append((spec, world))
        return _ShiftTracker(0.3 if spec == "good" else 0.9)

    monkeypatch.setattr(rlpf.judge.tracking, "load_tracker", fake_load_tracker, raising=False)
    out, videos = tmp_path / "r.json", tmp_path / "videos"
    rc = main(["track", str(clip_dir), "--world", "ant", "--tracker", "bad", "--video", str(videos),
               "--max-videos", "2", "--size", "48", "--out", str(out), "--quiet"])
    assert rc == 1  # wide.npz has the wrong nq
    assert calls == [("bad", "ant")]
    report = json.loads(out.read_text())
    assert set(report) == {"world", "tracker", "clips", "errors", "summary"}
    assert report["world"] == "ant" and report["tracker"] == "bad"
    assert [e["source"] for e in report["errors"]] == [str(clip_dir / "wide.npz")]
    assert len(report["clips"]) == 3
    for c in report["clips"]:
        assert c["success"] is False and c["max_error_m"] == pytest.approx(0.9)
    assert report["summary"]["success_rate"] == 0.0
    assert sorted(os.listdir(videos)) == ["a.mp4", "batch_0.mp4"]
    assert [c["video"] for c in report["clips"]] == [str(videos / "a.mp4"), str(videos / "batch_0.mp4"), None]

    rc = main(["track", str(clip_dir / "a.npz"), "--tracker", "good", "--out", str(out), "--quiet"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["clips"][0]["success"] is True and report["summary"]["n_videos"] == 0


def test_track_cli_end_to_end_pd(tmp_path, clip_dir, ant):
    """The real PD tracker: table, report and one video."""
    from rlpf.cli import main

    out, videos = tmp_path / "r.json", tmp_path / "videos"
    rc = main(["track", str(clip_dir / "a.npz"), "--world", "ant", "--tracker", "pd", "--workers", "1",
               "--video", str(videos), "--max-videos", "1", "--size", "64", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    (entry,) = report["clips"]
    assert isinstance(entry["success"], bool) and entry["video"] == str(videos / "a.mp4")
    assert os.path.getsize(videos / "a.mp4") > 0
