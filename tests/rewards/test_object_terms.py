"""The object physics terms on Meta-World expert clips (recorded from Meta-World's own env and
scripted expert, valid by construction) and on object-corrupted copies of them."""
import numpy as np
import pytest

from rlpf.core.clips import Clip
from rlpf.data import corrupt
from rlpf.envs.worlds import compile_world
from rlpf.judge.scoring import ScoreConfig, score_clips
from rlpf.rewards import get_reward

OBJECT_TERMS = ["object_levitation_mps", "object_in_support_m", "robot_object_penetration_m",
                "articulation_unexplained_mps", "object_teleport_m"]


def _record(task, seed=0, steps=80):
    """A short clip of Meta-World's expert on ``task`` (qpos after every env.step) and its episode's World."""
    pytest.importorskip("metaworld")
    from metaworld.policies import ENV_POLICY_MAP
    from rlpf.envs.metaworld import make_env, placed

    env = make_env(f"metaworld/{task}", seed=seed)
    obs, _ = env.reset(seed=seed)
    policy = ENV_POLICY_MAP[task]()
    qpos = [env.unwrapped.data.qpos.copy()]
    for _ in range(steps):
        obs, *_ = env.step(policy.get_action(obs))
        qpos.append(env.unwrapped.data.qpos.copy())
    world = placed(f"metaworld/{task}", env)
    env.close()
    return Clip(qpos=np.array(qpos), fps=1.0 / env.unwrapped.dt, world=world.name, source=task), world


@pytest.fixture(scope="module")
def pick():
    return _record("pick-place-v3", steps=75)   # the expert has grasped and lifted the puck by then


@pytest.fixture(scope="module")
def drawer():
    return _record("drawer-open-v3", steps=100)


def _terms(clip, world):
    entry = score_clips([clip], world, ScoreConfig())[0]
    assert "error" not in entry, entry
    return entry


def _flagged(entry):
    return {k for k, v in entry["terms"].items() if k in OBJECT_TERMS + ["object_unexplained_mps"]
            and v > get_reward(k).threshold}


@pytest.mark.parametrize("which", ["pick", "drawer"])
def test_expert_clips_pass_every_object_term(request, which):
    clip, world = request.getfixturevalue(which)
    entry = _terms(clip, world)
    assert not _flagged(entry), entry["terms"]


CASES = [
    ("pick", "levitate_object", "object_levitation_mps"),
    ("pick", "sink_object", "object_in_support_m"),
    ("pick", "pass_through_gripper", "robot_object_penetration_m"),
    ("pick", "slide_object", "object_unexplained_mps"),
    ("pick", "teleport_object", "object_teleport_m"),
    ("drawer", "move_articulation", "articulation_unexplained_mps"),
    ("drawer", "teleport_object", "object_teleport_m"),
]


@pytest.mark.parametrize("which,kind,term", CASES)
def test_each_object_corruption_is_flagged_by_its_term(request, which, kind, term):
    clip, world = request.getfixturevalue(which)
    bad = corrupt.CORRUPTIONS[kind](clip)
    entry = _terms(bad, world)
    assert term in _flagged(entry), (kind, entry["terms"])
    assert entry["terms"][term] > _terms(clip, world)["terms"][term]


def test_terms_grow_with_the_violation(pick):
    clip, world = pick
    # levitation integrates the hover over time: an earlier start hovers longer
    lev = [_terms(corrupt.levitate_object(clip, 0.1, start=s, end=s + 0.2), world)["terms"]["object_levitation_mps"]
           for s in (0.6, 0.4, 0.2)]
    sink = [_terms(corrupt.sink_object(clip, d), world)["terms"]["object_in_support_m"] for d in (0.02, 0.04)]
    assert lev[0] < lev[1] < lev[2] and sink[0] < sink[1], (lev, sink)


def test_worlds_without_objects_or_articulations_give_none(valid_clips):
    clip = valid_clips["ant"][0]
    entry = score_clips([clip], "ant", ScoreConfig())[0]
    for name in OBJECT_TERMS:
        assert name not in entry["terms"]            # None: not applicable, not 0 and not a crash
        assert get_reward(name).fn([clip], world="ant") == [None]
    # the pusher has a free object but no support, articulation or declared fingers
    push = valid_clips["pusher"][0]
    out = {n: get_reward(n).fn([push], world="pusher")[0] for n in OBJECT_TERMS}
    assert out["object_in_support_m"] is None and out["articulation_unexplained_mps"] is None


def test_object_corruptions_name_what_the_world_lacks(valid_clips):
    with pytest.raises(corrupt.CorruptionError, match="no free object"):
        corrupt.levitate_object(valid_clips["ant"][0])
    with pytest.raises(corrupt.CorruptionError, match="no articulation"):
        corrupt.move_articulation(valid_clips["pusher"][0])


def test_articulated_world_has_no_free_object_terms(drawer):
    clip, world = drawer
    entry = _terms(clip, world)
    assert "object_levitation_mps" not in entry["terms"] and "articulation_unexplained_mps" in entry["terms"]
    assert compile_world(world).articulation_joints.size == 1


def test_a_one_frame_depth_is_not_a_penetration():
    """mj_geomDistance can report a resting object deep inside its support on a single frame; a real
    penetration lasts, so the terms count depths that persist for PERSIST_FRAMES frames."""
    from rlpf.rewards.object_penetration import PERSIST_FRAMES, persistent_depth

    depth = np.zeros((10, 1))
    depth[4] = 0.3                                   # one frame: the distance query's glitch
    assert persistent_depth(depth).max() == 0.0
    depth[6:6 + PERSIST_FRAMES] = 0.05               # a sunk object stays sunk
    assert persistent_depth(depth).max() == pytest.approx(0.05)
    assert persistent_depth(np.zeros((2, 1))).shape == (0, 1)
