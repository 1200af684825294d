"""Meta-World data: expert clips from the real envs, labelled from qpos, through rlpf data / simulate."""
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("metaworld")

from rlpf.core.clips import load_clips, validate  # noqa: E402
from rlpf.core.errors import RLPFError  # noqa: E402
from rlpf.data import metaworld_data as mwd  # noqa: E402
from rlpf.data.motion_data import PROMPTS, label_motion, make_dataset, measure_motion, simulate_episode  # noqa: E402
from rlpf.envs.worlds import compile_world  # noqa: E402

DRAWER = "metaworld/drawer-open-v3"


def test_expert_clip_opens_the_drawer_and_is_labelled_so():
    clip = mwd.record_episode(DRAWER, seed=0, frames=64, noise_std=0.0)
    cw = compile_world(DRAWER)
    validate(clip, cw.model, cw.name)
    assert clip.qpos.shape == (64, 10) and clip.actions.shape == (64, 2) and clip.fps == mwd.CLIP_FPS
    assert clip.cache["metaworld"]["success_step"] is not None           # Meta-World's own success flag
    m = measure_motion(clip.qpos, clip.fps, DRAWER)
    assert m["progress"] >= mwd.TASKS["drawer-open-v3"].done
    assert label_motion(clip.qpos, clip.fps, DRAWER) == "open the drawer"
    # deterministic in its arguments
    np.testing.assert_array_equal(mwd.record_episode(DRAWER, seed=0, frames=64, noise_std=0.0).qpos, clip.qpos)


def test_label_follows_the_measured_motion_not_the_request():
    # the expert stopped before reaching the handle: whatever was asked, nothing opened
    clip = mwd.record_episode(DRAWER, seed=1, frames=32, expert_steps=5, noise_std=0.0)
    assert label_motion(clip.qpos, clip.fps, DRAWER) == "move the arm without opening the drawer"
    # the same clip with its slide moved by hand: the label reads qpos only
    q = clip.qpos.copy()
    q[:, compile_world(DRAWER).articulation_qpos[0]] = np.linspace(0, -0.08, len(q))
    assert label_motion(q, clip.fps, DRAWER) == "open the drawer partway"


def test_pick_place_lift_decides():
    clip = mwd.record_episode("metaworld/pick-place-v3", seed=2, frames=64, noise_std=0.0)
    m = measure_motion(clip.qpos, clip.fps, "metaworld/pick-place-v3")
    assert m["lift_m"] >= 0.04 and m["displacement_m"] >= 0.10
    assert label_motion(clip.qpos, clip.fps, "metaworld/pick-place-v3") == "pick up the puck and move it"
    q = clip.qpos.copy()
    q[:, 9:12] = q[0, 9:12]     # the puck never moves
    assert label_motion(q, clip.fps, "metaworld/pick-place-v3") == "move the arm without lifting the puck"


@pytest.mark.parametrize("task, done", [("drawer-close-v3", "close the drawer"),
                                        ("window-open-v3", "slide the window open"),
                                        ("window-close-v3", "slide the window closed")])
def test_rest_of_mt10_articulations_labelled_with_meta_worlds_success(task, done):
    """The expert's run reaches Meta-World's own success and the label says done; the first
    frames (before the push) say nothing moved."""
    world = f"metaworld/{task}"
    clip = mwd.record_episode(world, seed=0, frames=64, noise_std=0.0)
    assert clip.cache["metaworld"]["success_step"] is not None
    assert label_motion(clip.qpos, clip.fps, world) == done
    assert label_motion(clip.qpos[:8], clip.fps, world) == mwd.TASKS[task].phrases[2]


def test_peg_insert_is_lift_then_meta_worlds_goal_distance():
    world = "metaworld/peg-insert-side-v3"
    clip = mwd.record_episode(world, seed=1, frames=64, noise_std=0.0)
    assert clip.cache["metaworld"]["success_step"] is not None
    m = measure_motion(clip.qpos, clip.fps, world)
    assert m["lift_m"] >= 0.05 and -m["progress"] <= 0.07     # progress = -Meta-World's obj_to_target
    assert label_motion(clip.qpos, clip.fps, world) == "insert the peg into the hole"
    # lifted but stopped before the hole: picked up only
    held = mwd.record_episode(world, seed=1, frames=48, stop_lift=0.04, noise_std=0.0)
    assert label_motion(held.qpos, held.fps, world) == "pick up the peg"
    q = clip.qpos.copy()
    q[:, 9:16] = q[0, 9:16]     # the peg never moves
    assert label_motion(q, clip.fps, world) == "move the arm without lifting the peg"


def test_make_dataset_balanced_and_deterministic():
    stats = {}
    clips = make_dataset(DRAWER, 3, seed=0, frames=64, workers=1, stats=stats)
    assert [c.prompt for c in clips] == list(PROMPTS[DRAWER])
    assert all(label_motion(c.qpos, c.fps, DRAWER) == c.prompt for c in clips)
    again = make_dataset(DRAWER, 3, seed=0, frames=64, workers=1)
    assert all(np.array_equal(a.qpos, b.qpos) for a, b in zip(clips, again))


@pytest.mark.parametrize("task", ["drawer-close-v3", "window-open-v3", "window-close-v3"])
def test_coasting_joints_datasets_hold_done_and_not_at_all(task):
    """Drawer-close and the windows coast to their end once pushed, so 'partway' cannot be recorded:
    their datasets hold the other two prompts (with equal quotas over three, make_dataset never ends);
    a partway clip, measured, is rejected for want of room, not a crash."""
    world, phrases = f"metaworld/{task}", mwd.TASKS[task].phrases
    assert PROMPTS[world] == (phrases[0], phrases[2])
    stats = {}
    clips = make_dataset(world, 4, seed=0, frames=64, workers=1, stats=stats)
    assert [c.prompt for c in clips] == [phrases[0]] * 2 + [phrases[2]] * 2
    assert all(label_motion(c.qpos, c.fps, world) == c.prompt for c in clips)
    assert stats["kept"] == 4 and stats["attempts"] < 40


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="frames must be"):
        mwd.record_episode(DRAWER, seed=0, frames=400)
    with pytest.raises(RLPFError, match="no-such-task-v3"):
        simulate_episode("metaworld/no-such-task-v3", "open the drawer", 0, 8)
    with pytest.raises(ValueError, match="no labeller"):      # reach-v3 is a world without labelled data
        label_motion(np.zeros((4, 16)), 40.0, "metaworld/reach-v3")
    with pytest.raises(ValueError, match="10 columns"):
        label_motion(np.zeros((4, 16)), 40.0, DRAWER)


def _rlpf(*args):
    exe = os.path.join(os.path.dirname(sys.executable), "rlpf")
    return subprocess.run([exe, *args], capture_output=True, text=True)


def test_cli_simulate_and_data(tmp_path):
    r = _rlpf("simulate", "--world", DRAWER, "--n", "2", "--frames", "16", "--out", str(tmp_path / "sim"))
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(tmp_path / "sim"))
    assert files == ["metaworld_drawer-open-v3_000.npz", "metaworld_drawer-open-v3_001.npz"]
    clip, = load_clips(str(tmp_path / "sim" / files[0]))
    assert clip.world == DRAWER and clip.fps == mwd.CLIP_FPS and clip.prompt in PROMPTS[DRAWER]
    r = _rlpf("data", "--world", DRAWER, "--n", "3", "--frames", "64", "--workers", "1", "--out", str(tmp_path / "data"))
    assert r.returncode == 0, r.stderr
    assert "open the drawer" in r.stdout and "simulating metaworld/drawer-open-v3" in r.stderr  # the progress bar
    r = _rlpf("data", "--world", "metaworld/nope-v3", "--n", "3", "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "metaworld/nope-v3" in r.stderr and DRAWER in r.stderr
    r = _rlpf("simulate", "--world", DRAWER, "--n", "1", "--frames", "400", "--out", str(tmp_path / "long"))
    assert r.returncode == 2 and "frames must be" in r.stderr
