"""Retargeting onto the humanoid with mink (rlpf.data.retarget) and `rlpf import` / `rlpf export`:
joint and BVH files written from simulated humanoid motion come back as the same motion (round-trip
error in cm), limits hold, and bad inputs are refused naming the input."""
import json

import mujoco
import numpy as np
import pytest

from rlpf.cli import main
from rlpf.core.clips import MAX_FRAMES, load_clips
from rlpf.data import retarget as R
from rlpf.data.bvh import load_bvh
from rlpf.envs.worlds import compile_world


@pytest.fixture(scope="module")
def sim_clip():
    from rlpf.data.simulate import simulate
    from rlpf.policies.scripted import SmoothRandom

    return simulate("humanoid", SmoothRandom(), 30, seed=3)


def body_positions(qpos):
    m = compile_world("humanoid").model
    d = mujoco.MjData(m)
    out = []
    for q in qpos:
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        out.append(d.xpos[1:].copy())
    return np.array(out)


def round_trip_cm(source, clip):
    """Mean and worst body-position error (cm) of a retargeted clip against the source clip."""
    e = np.linalg.norm(body_positions(clip.qpos) - body_positions(source.qpos), axis=-1)
    return 100 * e.mean(), 100 * e.max()


def test_mapping_table_places_every_smpl_joint_on_a_humanoid_body():
    m, kps = R.keypoint_model("humanoid")
    assert [k.joint for k in kps] == list(R.SMPL22) and m.nq == compile_world("humanoid").model.nq
    rest, _ = R.robot_keypoints("humanoid", m.qpos0)
    J = R.SMPL22.index
    assert rest[0, J("left_hip"), 1] > 0 > rest[0, J("right_hip"), 1]       # left is +y
    assert rest[0, J("head"), 2] > rest[0, J("neck"), 2] > rest[0, J("pelvis"), 2] > rest[0, J("left_knee"), 2]
    with pytest.raises(R.MotionFormatError, match="declares no keypoints"):
        R.keypoint_model("ant")


def test_joint_file_round_trip_y_up(sim_clip, tmp_path, capsys):
    p, _ = R.robot_keypoints("humanoid", sim_clip.qpos)
    src = tmp_path / "joints.npy"
    np.save(src, R.from_z_up(p, "y"))                     # as HumanML3D stores them: y up
    out = tmp_path / "clip.npz"
    assert main(["import", str(src), "--world", "humanoid", "--source-fps", str(sim_clip.fps), "--out", str(out)]) == 0
    assert "keypoint error" in capsys.readouterr().out
    clip = load_clips(str(out))[0]
    assert clip.world == "humanoid" and clip.n_frames == sim_clip.n_frames and clip.fps == pytest.approx(sim_clip.fps)
    mean_cm, worst_cm = round_trip_cm(sim_clip, clip)
    print(f"joints .npy round trip: body error {mean_cm:.2f} cm mean, {worst_cm:.2f} cm worst")
    assert mean_cm < 2.0 and worst_cm < 5.0
    # joint limits hold (hard constraints of the IK), and no frame jumps more than the source does
    m = compile_world("humanoid").model
    for j in range(m.njnt):
        if m.jnt_limited[j]:
            q = clip.qpos[:, m.jnt_qposadr[j]]
            assert (q >= m.jnt_range[j, 0] - 1e-6).all() and (q <= m.jnt_range[j, 1] + 1e-6).all(), m.joint(j).name
    step = np.abs(np.diff(clip.qpos[:, 7:], axis=0)).max()
    assert step < np.abs(np.diff(sim_clip.qpos[:, 7:], axis=0)).max() + 0.1
    # the imported clip loads and scores
    report = tmp_path / "report.json"
    assert main(["score", str(out), "--out", str(report)]) in (0, 1)
    rep = json.loads(report.read_text())
    assert not rep["errors"] and len(rep["clips"]) == 1 and np.isfinite(rep["clips"][0]["score"])


def test_joint_file_z_up_npz_with_fps_and_resampling(sim_clip, tmp_path):
    p, _ = R.robot_keypoints("humanoid", sim_clip.qpos)
    src = tmp_path / "joints.npz"
    np.savez(src, joints=p, fps=np.float64(sim_clip.fps))
    res = R.import_motion(str(src), up="z", fps=sim_clip.fps / 2)
    assert res.clip.fps == pytest.approx(sim_clip.fps / 2) and res.clip.n_frames == 15
    mean_cm, _ = round_trip_cm(type(sim_clip)(sim_clip.qpos[::2], sim_clip.fps / 2), res.clip)
    assert mean_cm < 2.0


def test_bvh_export_round_trip(sim_clip, tmp_path):
    clip_file = tmp_path / "sim.npz"
    from rlpf.core.clips import save_clips

    save_clips(str(clip_file), sim_clip)
    bvh = tmp_path / "sim.bvh"
    assert main(["export", str(clip_file), "--out", str(bvh)]) == 0
    b = load_bvh(str(bvh))
    assert b.names[0] == "pelvis" and sorted(b.names) == sorted(R.SMPL22) and b.n_frames == sim_clip.n_frames
    # the BVH's joints are the clip's keypoints (y up), to the file's printed precision
    pos, names = R.bvh_joint_positions(b)
    kp, _ = R.robot_keypoints("humanoid", sim_clip.qpos)
    assert np.abs(R.to_z_up(pos, "y") - kp).max() < 1e-5 and names["left_foot"] == "left_foot"
    out = tmp_path / "back.npz"
    assert main(["import", str(bvh), "--out", str(out)]) == 0
    mean_cm, worst_cm = round_trip_cm(sim_clip, load_clips(str(out))[0])
    print(f"BVH round trip: body error {mean_cm:.2f} cm mean, {worst_cm:.2f} cm worst")
    assert mean_cm < 2.0 and worst_cm < 5.0


def test_bad_joint_inputs_are_refused(sim_clip, tmp_path, capsys):
    p, _ = R.robot_keypoints("humanoid", sim_clip.qpos[:5])
    good = tmp_path / "j.npy"
    np.save(good, p)
    out = tmp_path / "o.npz"
    assert main(["import", str(good), "--up", "x", "--out", str(out)]) == 2
    assert "unknown up axis 'x'" in capsys.readouterr().err
    with pytest.raises(R.MotionFormatError, match="unknown up axis"):
        R.import_motion(str(good), up="-y")
    nan = p.copy()
    nan[2, 5, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(R.MotionFormatError, match="nan.npy: 1 non-finite values .first at frame 2, joint 5 right_knee"):
        R.import_motion(str(tmp_path / "nan.npy"))
    np.save(tmp_path / "shape.npy", p[:, :21])
    with pytest.raises(R.MotionFormatError, match=r"must be \[T, 22, 3\]"):
        R.import_motion(str(tmp_path / "shape.npy"))
    np.save(tmp_path / "long.npy", np.zeros((MAX_FRAMES + 1, 22, 3), np.float32))
    with pytest.raises(R.MotionFormatError, match=f"at most {MAX_FRAMES}"):
        R.import_motion(str(tmp_path / "long.npy"))
    np.save(tmp_path / "obj.npy", np.empty((2, 22, 3), dtype=object), allow_pickle=True)
    with pytest.raises(R.MotionFormatError, match="must be numbers"):   # never unpickled
        R.import_motion(str(tmp_path / "obj.npy"))
    with pytest.raises(R.MotionFormatError, match="unknown format"):
        R.import_motion(str(tmp_path / "j.txt"))
    # the output is checked before the work and is never one of the inputs
    np.savez(tmp_path / "in.npz", joints=p)
    before = (tmp_path / "in.npz").read_bytes()
    assert main(["import", str(tmp_path / "in.npz"), "--out", str(tmp_path / "in.npz")]) == 2
    assert "is one of the inputs" in capsys.readouterr().err and (tmp_path / "in.npz").read_bytes() == before
    assert main(["import", str(good), "--out", str(tmp_path)]) == 2     # a directory
    assert main(["import", str(good), "--world", "ant", "--out", str(out)]) == 2
    assert "declares no keypoints" in capsys.readouterr().err


def test_units_heading_and_offset_do_not_matter(sim_clip):
    """The same motion in cm, turned 120 degrees about the vertical and moved: the same clip comes back,
    turned and moved (scale from bone lengths, root orientation from the hips)."""
    p, _ = R.robot_keypoints("humanoid", sim_clip.qpos[:12])
    yaw = np.radians(120)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    shift = np.array([1.5, -2.0, 0.0])
    moved = p @ rz.T + shift
    res = R.retarget(100 * moved, sim_clip.fps)            # centimetres
    assert res.scale == pytest.approx(0.01, rel=1e-6)
    src = type(sim_clip)(sim_clip.qpos[:12].copy(), sim_clip.fps)
    want = body_positions(src.qpos) @ rz.T + shift
    e = np.linalg.norm(body_positions(res.clip.qpos) - want, axis=-1)
    assert 100 * e.mean() < 2.0, 100 * e.mean()
