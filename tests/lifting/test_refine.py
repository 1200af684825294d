"""rlpf.lifting.refine: render-and-compare refinement of lifted ant poses, on real contract renders."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def scene(no_rendering):
    from rlpf.data.simulate import simulate
    from rlpf.lifting.refine import SilhouetteRefiner
    from rlpf.policies.scripted import JointServo
    from rlpf.viz.contract import contract_for
    from rlpf.viz.render import RenderError

    contract = contract_for("ant")
    clip = simulate("ant", JointServo(), 12, seed=3)
    try:
        with contract.renderer() as r:
            frames = r.frames(clip.qpos)
        refiner = SilhouetteRefiner(contract)
    except RenderError as e:
        no_rendering(e)
    yield clip, frames, refiner
    refiner.close()


def test_labels_find_every_part_and_leave_the_floor_out(scene):
    clip, frames, refiner = scene
    lab = refiner.labels(frames[0])
    assert lab.shape == (refiner.size, refiner.size)
    counts = np.bincount(lab.ravel(), minlength=len(refiner.parts) + 1)
    # tan torso + hip segments, the torso's three marker colours (rlpf.viz.contract.ANT_MARKERS), four legs
    assert len(refiner.parts) == 8
    assert (counts[1:] > 3).all(), counts
    assert counts[0] > 0.6 * lab.size                    # the checker floor is background
    # the frame and the same pose rendered by the refiner agree almost everywhere
    assert (refiner.rendered_labels(clip.qpos[0]) == lab).mean() > 0.95


def test_the_true_pose_costs_less_than_a_perturbed_one(scene):
    clip, frames, refiner = scene
    observed = refiner._observed(refiner.labels(frames[4]))
    bent = clip.qpos[4].copy()
    bent[7:] += np.radians(10.0) * np.array([1, -1, 1, -1, -1, 1, -1, 1])
    assert refiner.cost(clip.qpos[4], observed) < refiner.cost(bent, observed)


def test_refinement_recovers_perturbed_joints_and_keeps_the_root_position(scene):
    clip, frames, refiner = scene
    rng = np.random.default_rng(0)
    T = 4
    lifted = clip.qpos[:T].copy()
    lifted[:, 3:7] /= np.linalg.norm(lifted[:, 3:7], axis=1, keepdims=True)   # the reset pose's is not quite unit
    lifted[:, 7:] += np.radians(rng.uniform(-10, 10, (T, 8)))
    out, info = refiner.refine(lifted, frames[:T], smooth_frames=0)
    before = np.degrees(np.abs(lifted[:, 7:] - clip.qpos[:T, 7:])).mean()
    after = np.degrees(np.abs(out[:, 7:] - clip.qpos[:T, 7:])).mean()
    assert after < 0.7 * before, (before, after)
    assert (info["refine_cost_px"][:, 1] <= info["refine_cost_px"][:, 0]).all(), info["refine_cost_px"]
    np.testing.assert_array_equal(out[:, :3], lifted[:, :3])        # x, y (odometry) and height (sphere) kept
    np.testing.assert_allclose(np.linalg.norm(out[:, 3:7], axis=1), 1.0, atol=1e-9)


def test_a_joint_past_its_limit_is_not_pulled_back_into_range(scene):
    clip, frames, refiner = scene
    from rlpf.viz.contract import contract_for

    m = refiner.model
    q = clip.qpos[2].copy()
    j = 2                                                 # ankle_1
    q[m.jnt_qposadr[j]] = m.jnt_range[j, 1] + 0.35        # bent 20 degrees past its range
    with contract_for("ant").renderer() as r:
        frame = r.frames(q[None])[0]
    out, _, _ = refiner.refine_frame(q, frame)
    assert out[m.jnt_qposadr[j]] > m.jnt_range[j, 1] + 0.25


def test_bad_input_is_refused_with_the_reason(scene):
    clip, frames, refiner = scene
    with pytest.raises(ValueError, match="4 poses for 3 frames"):
        refiner.refine(clip.qpos[:4], frames[:3])
    with pytest.raises(ValueError, match="nq=15"):
        refiner.refine(clip.qpos[:3, :9], frames[:3])


def test_score_refine_needs_a_pose_run(tmp_path, capsys):
    from rlpf.cli import main

    assert main(["score", str(tmp_path), "--refine"]) == 2
    assert "--refine refines lifted videos; it needs --pose RUN" in capsys.readouterr().err


def test_key_frames_are_searched_and_the_frames_between_interpolated(scene):
    clip, frames, refiner = scene
    T = 5
    lifted = clip.qpos[:T].copy()
    lifted[:, 3:7] /= np.linalg.norm(lifted[:, 3:7], axis=1, keepdims=True)
    lifted[:, 8] += np.radians(8.0)                          # the same error on every frame (ankle_1)
    out, info = refiner.refine(lifted, frames[:T], fps=20.0, smooth_frames=0)   # KEY_SECONDS 0.1: every 2nd
    assert list(info["refine_key_frames"]) == [0, 2, 4]
    assert np.isnan(info["refine_cost_px"][[1, 3]]).all() and np.isfinite(info["refine_cost_px"][[0, 2, 4]]).all()
    fix = out[:, 8] - lifted[:, 8]
    np.testing.assert_allclose(fix[1], 0.5 * (fix[0] + fix[2]), atol=1e-9)
    assert abs(np.degrees(out[:, 8] - clip.qpos[:T, 8])).mean() < 4.0


def test_no_move_adds_a_violation_the_lifted_pose_did_not_have(scene):
    clip, frames, refiner = scene
    m = refiner.model
    q = clip.qpos[6].copy()
    q[3:7] /= np.linalg.norm(q[3:7])
    j = 2                                                   # ankle_1, put exactly at its upper limit
    q[m.jnt_qposadr[j]] = m.jnt_range[j, 1]
    refiner._limits_of(q)
    past = q.copy()
    past[m.jnt_qposadr[j]] += np.radians(2.0)
    assert refiner._within(q, q) and not refiner._within(past, q)
    sunk = q.copy()
    sunk[2] -= 0.3                                          # well inside the floor
    assert refiner._depth(sunk) > 0.04
    refiner._limits_of(q)
    assert not refiner._within(sunk, q)                     # deeper than the lifted pose: refused
    refiner._limits_of(sunk)
    assert refiner._within(sunk, sunk)                      # a sunk lifted pose may stay sunk
