"""The BVH parser, forward kinematics and writer (rlpf.data.bvh): a hand-written file parsed and
imported onto the humanoid, the export read back exactly, and malformed files refused with file and line."""
import os

import numpy as np
import pytest

from rlpf.core.clips import MAX_FRAMES
from rlpf.data.bvh import BVHError, bvh_text, forward_kinematics, load_bvh

SMALL = os.path.join(os.path.dirname(__file__), "small_walk.bvh")


def test_hand_written_bvh_parses_with_its_channels_and_kinematics():
    b = load_bvh(SMALL)
    assert len(b.joints) == 19 and b.names[:4] == ["Hips", "LeftUpLeg", "LeftLeg", "LeftFoot"]
    assert b.frames.shape == (6, 6 + 18 * 3) and b.fps == pytest.approx(30.0, rel=1e-5)
    assert b.joints[0].channels[:3] == ("Xposition", "Yposition", "Zposition")
    assert b.joints[b.names.index("LeftFoot")].end_site.tolist() == [0.0, -5.0, 13.0]
    pos, rot = forward_kinematics(b)
    # frame 0: legs straight under the hips (93 - 5 - 42 - 40 cm), arms turned 70 degrees down about z
    assert pos[0, b.names.index("LeftFoot")] == pytest.approx([9.0, 6.0, 0.0])
    c, s = np.cos(np.radians(70)), np.sin(np.radians(70))
    hand = np.array([-16.0, 136.0, 0.0]) + 53.0 * np.array([-c, -s, 0.0])
    assert pos[0, b.names.index("RightHand")] == pytest.approx(hand, abs=1e-9)
    assert np.allclose(rot @ np.swapaxes(rot, -1, -2), np.eye(3), atol=1e-12)
    # frame 3: the knee bends by 12 degrees about x: the ankle goes back (-z), not forward
    knee, ankle = pos[3, b.names.index("LeftLeg")], pos[3, b.names.index("LeftFoot")]
    assert ankle[2] < knee[2]


def test_written_bvh_reads_back(tmp_path):
    b = load_bvh(SMALL)
    out = tmp_path / "again.bvh"
    out.write_text(bvh_text(b))
    b2 = load_bvh(str(out))
    assert b2.names == b.names and np.allclose(b2.frames, b.frames) and b2.frame_time == pytest.approx(b.frame_time)
    assert np.allclose(forward_kinematics(b2)[0], forward_kinematics(b)[0])


def _broken(tmp_path, text, name="bad.bvh"):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(BVHError) as e:
        load_bvh(str(p))
    assert str(p) in str(e.value)
    return e.value


def test_malformed_bvh_names_file_and_line(tmp_path):
    text = open(SMALL).read()
    lines = text.splitlines()
    motion = lines.index("MOTION")
    # truncated in the motion: fewer frame lines than the header says
    err = _broken(tmp_path, "\n".join(lines[:-2]) + "\n")
    assert "4 of the 6 frames" in err.problem and err.line == len(lines) - 2
    # truncated in the hierarchy
    err = _broken(tmp_path, "\n".join(lines[:40]) + "\n")
    assert "ends early" in err.problem
    # a CHANNELS count that disagrees with the names listed
    bad = text.replace("CHANNELS 3 Zrotation Xrotation Yrotation\n    JOINT LeftLeg",
                       "CHANNELS 2 Zrotation Xrotation Yrotation\n    JOINT LeftLeg", 1)
    err = _broken(tmp_path, bad)
    assert "wrong channel count" in err.problem and err.line == 9
    err = _broken(tmp_path, text.replace("CHANNELS 6 Xposition", "CHANNELS 7 Xposition", 1))
    assert "channel count must be 0-6" in err.problem and err.line == 5
    # a frame line with a value missing
    frame = motion + 5  # 1-based line of the second frame
    bad = lines[:]
    bad[frame - 1] = bad[frame - 1].rsplit(" ", 1)[0]
    err = _broken(tmp_path, "\n".join(bad) + "\n")
    assert "59 values but the hierarchy has 60 channels" in err.problem and err.line == frame
    # NaN and a non-number
    bad = lines[:]
    bad[frame - 1] = bad[frame - 1].replace("92.5", "nan", 1)
    err = _broken(tmp_path, "\n".join(bad) + "\n")
    assert "not a finite number" in err.problem and err.line == frame
    bad[frame - 1] = lines[frame - 1].replace("92.5", "9x2", 1)
    assert "'9x2' is not a number" in _broken(tmp_path, "\n".join(bad) + "\n").problem
    # more frames than a clip may have: refused from the header, before any frame is read
    err = _broken(tmp_path, text.replace("Frames: 6", f"Frames: {MAX_FRAMES + 1}"))
    assert f"at most {MAX_FRAMES}" in err.problem and err.line == motion + 2
    # a bad frame time, an unknown channel, not a BVH at all
    assert "positive" in _broken(tmp_path, text.replace("Frame Time: 0.0333333", "Frame Time: 0")).problem
    assert "unknown channel" in _broken(tmp_path, text.replace("Zrotation", "Wrotation", 1)).problem
    assert "expected 'HIERARCHY'" in _broken(tmp_path, "hello\n").problem
    with pytest.raises(BVHError, match="file not found"):
        load_bvh(str(tmp_path / "missing.bvh"))


def test_hand_written_bvh_imports_and_scores():
    import rlpf
    from rlpf.data.retarget import import_motion

    res = import_motion(SMALL, world="humanoid")
    assert res.clip.world == "humanoid" and res.clip.n_frames == 6 and res.clip.fps == pytest.approx(30.0, rel=1e-5)
    assert "spine3" not in res.joints and len(res.joints) == 19   # the file has no third spine joint, no toes
    # a different skeleton (in cm, longer legs relative to its torso): the robot follows within a few cm
    assert 0.005 < res.scale < 0.015 and res.error_m.mean() < 0.08
    report = rlpf.score([res.clip], world="humanoid")
    assert len(report.clips) == 1 and np.isfinite(report.clips[0].score)


def test_euler_order_is_the_channel_order(tmp_path):
    """Rotation channels compose in the order listed (intrinsic): XYZ is Rx @ Ry @ Rz."""
    from scipy.spatial.transform import Rotation

    p = tmp_path / "xyz.bvh"
    p.write_text("HIERARCHY\nROOT a\n{\n OFFSET 0 0 0\n CHANNELS 6 Xposition Yposition Zposition Xrotation Yrotation Zrotation\n"
                 " JOINT b\n {\n  OFFSET 0 0 0\n  CHANNELS 3 Yrotation Zrotation Xrotation\n  End Site\n  {\n   OFFSET 0 1 0\n  }\n }\n"
                 " JOINT c\n {\n  OFFSET 1 2 3\n  CHANNELS 0\n }\n}\n"
                 "MOTION\nFrames: 1\nFrame Time: 0.5\n1 2 3 30 40 50 10 20 70\n")
    b = load_bvh(str(p))
    pos, rot = forward_kinematics(b)
    ra = Rotation.from_euler("XYZ", [30, 40, 50], degrees=True).as_matrix()
    rb = Rotation.from_euler("YZX", [10, 20, 70], degrees=True).as_matrix()
    assert np.allclose(ra, _rx(30) @ _ry(40) @ _rz(50))
    assert np.allclose(rot[0, 0], ra) and np.allclose(rot[0, 1], ra @ rb)
    assert np.allclose(pos[0, 2], [1, 2, 3] + ra @ [1, 2, 3]) and b.fps == 2.0


def _rx(a):
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
