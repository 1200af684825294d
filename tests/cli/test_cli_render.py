"""``rlpf render``: names, frame rate and frame count of the written videos, and its error paths."""
from __future__ import annotations

import os

import numpy as np
import pytest

from rlpf.cli import main
from rlpf.core.clips import Clip, save_clips


def _video(path):
    import imageio.v2 as imageio

    r = imageio.get_reader(path, format="FFMPEG")
    try:
        frames = [f for f in r]
        return r.get_meta_data()["fps"], np.stack(frames)
    finally:
        r.close()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from rlpf.policies.scripted import AntGait

    from rlpf.data.simulate import simulate

    d = tmp_path_factory.mktemp("clips")
    a = simulate("ant", AntGait(), 12, seed=0)
    b = simulate("ant", AntGait(), 12, seed=1)
    save_clips(str(d / "walk.npz"), Clip(qpos=a.qpos[:9], fps=25.0, world="ant"))
    save_clips(str(d / "batch.npz"), [a, b])
    return d


def test_names_fps_frames_and_size(clips, tmp_path, capsys, no_rendering):
    rc = main(["render", str(clips), "--out", str(tmp_path / "v"), "--size", "48", "--quiet"])
    err = capsys.readouterr().err
    if "OpenGL" in err:
        no_rendering(err)
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path / "v")) == ["batch-0.mp4", "batch-1.mp4", "walk.mp4"]
    fps, frames = _video(str(tmp_path / "v" / "walk.mp4"))
    assert fps == 25.0 and frames.shape == (9, 48, 48, 3)        # the clip's own fps and length
    fps, frames = _video(str(tmp_path / "v" / "batch-1.mp4"))
    assert fps == 20.0 and frames.shape == (12, 48, 48, 3)
    assert frames.std() > 5                                       # a picture, not a blank frame


def test_default_size_is_the_contract(clips, tmp_path, no_rendering):
    from rlpf.viz.contract import contract_for

    assert main(["render", str(clips / "walk.npz"), "--out", str(tmp_path), "--quiet"]) == 0
    _, frames = _video(str(tmp_path / "walk.mp4"))
    assert frames.shape[1:3] == (contract_for("ant").size,) * 2 == (128, 128)


def test_a_bad_clip_is_reported_and_the_rest_rendered(clips, tmp_path, capsys):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "broken.npz").write_bytes(b"not a zip")
    np.savez(bad / "wide.npz", qpos=np.zeros((5, 3)), fps=20.0, world="ant")
    os.link(clips / "walk.npz", bad / "walk.npz")
    rc = main(["render", str(bad), "--out", str(tmp_path / "v"), "--size", "32", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "broken.npz" in err and "unreadable" in err
    assert "wide.npz" in err and "nq=15" in err
    assert os.listdir(tmp_path / "v") == ["walk.mp4"]


def test_unknown_world_and_unwritable_out(clips, tmp_path, capsys):
    assert main(["render", str(clips), "--world", "no-such-world", "--out", str(tmp_path / "v")]) == 2
    assert "no-such-world" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["render", str(clips), "--out", str(blocker)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["render", str(clips), "--out", str(tmp_path / "v"), "--size", "4"]) == 2
    assert "16-1024" in capsys.readouterr().err


def test_two_clips_with_one_name_do_not_overwrite(clips, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    os.link(clips / "walk.npz", a / "walk.npz")
    os.link(clips / "walk.npz", b / "walk.npz")
    rc = main(["render", str(a), str(b), "--out", str(tmp_path / "v"), "--size", "32", "--quiet"])
    assert rc == 1 and "already the video of" in capsys.readouterr().err
    assert os.listdir(tmp_path / "v") == ["walk.mp4"]
