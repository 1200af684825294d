"""The physics terms on clips simulated in MuJoCo (valid by construction) and corrupted copies."""
import numpy as np
import pytest

from rlpf.data import corrupt
from rlpf.core.clips import validate
from rlpf.envs.worlds import compile_world
from rlpf.rewards import evaluate_rewards, physics_terms
from rlpf.judge.scoring import ScoreConfig, score_clips


def score(clip, world):
    cw = compile_world(world)
    validate(clip, cw.model, world)
    return score_clips([clip], world, ScoreConfig())[0]


@pytest.mark.parametrize("world", ["ant", "humanoid", "pusher"])
def test_simulated_clips_are_plausible(valid_clips, world):
    for clip in valid_clips[world]:
        entry = score(clip, world)
        assert entry["plausible"], (clip.source, entry["violations"], entry["terms"])
        assert entry["score"] <= 0.0


CASES = [
    ("ant", "float", {"float_m", "root_residual_bw"}),
    ("ant", "sink", {"penetration_m"}),
    ("ant", "levitate", {"float_m", "root_residual_bw"}),
    ("ant", "skate", {"skate_mps"}),
    ("ant", "teleport", {"root_impulse_bws"}),
    ("ant", "bend_joint", {"joint_limit_rad"}),
    ("humanoid", "float", {"float_m", "root_residual_bw"}),
    ("humanoid", "sink", {"penetration_m"}),
    ("humanoid", "levitate", {"float_m"}),
    ("humanoid", "skate", {"skate_mps"}),
    ("humanoid", "teleport", {"root_impulse_bws"}),
    ("humanoid", "bend_joint", {"joint_limit_rad"}),
    ("pusher", "move_object", {"object_unexplained_mps"}),
    ("pusher", "bend_joint", {"joint_limit_rad"}),
]


@pytest.mark.parametrize("world,kind,expected", CASES)
def test_corruptions_are_flagged_by_the_right_term(valid_clips, world, kind, expected):
    clip = valid_clips[world][0]
    entry = score(corrupt.CORRUPTIONS[kind](clip), world)
    assert not entry["plausible"]
    assert expected <= set(entry["violations"]), (kind, entry["violations"], entry["terms"])
    assert entry["score"] < score(clip, world)["score"]


def test_jitter_is_implausible(valid_clips):
    for world in ("ant", "humanoid"):
        assert not score(corrupt.jitter(valid_clips[world][0], 0.03), world)["plausible"]


def test_terms_grow_with_the_violation(valid_clips):
    clip = valid_clips["humanoid"][0]
    floats = [score(corrupt.float_up(clip, h), "humanoid")["terms"]["float_m"] for h in (0.05, 0.1, 0.2)]
    sinks = [score(corrupt.sink(clip, h), "humanoid")["terms"]["penetration_m"] for h in (0.03, 0.06, 0.12)]
    assert floats == sorted(floats) and floats[0] < floats[-1]
    assert sinks == sorted(sinks) and sinks[0] < sinks[-1]


def test_ballistic_flight_is_not_floating():
    """A body thrown into the air (free fall, no contact) needs no support: no float, no residual."""
    from rlpf.core.clips import Clip

    cw = compile_world("humanoid")
    fps, T = 60.0, 40
    t = np.arange(T) / fps
    q = np.tile(cw.model.qpos0, (T, 1))
    q[:, 2] = 1.6 + 3.0 * t - 0.5 * 9.81 * t ** 2   # up and down, never near the floor
    q[:, 0] = 1.0 * t
    clip = Clip(qpos=q, fps=fps, world="humanoid")
    terms = score(clip, "humanoid")["terms"]
    assert terms["float_m"] < 0.01
    assert terms["root_residual_bw"] < 0.05
    # the same pose hovering still must be supported by something: flagged
    q2 = np.tile(cw.model.qpos0, (T, 1))
    q2[:, 2] = 1.6
    hover = score(Clip(qpos=q2, fps=fps, world="humanoid"), "humanoid")
    assert hover["terms"]["float_m"] > 0.2 and hover["terms"]["root_residual_bw"] > 0.9


def test_total_is_weighted_sum(valid_clips):
    clip = corrupt.float_up(valid_clips["ant"][0])
    weights = {name: -1.0 / info.threshold for name, info in physics_terms().items()}
    table = evaluate_rewards([clip], weights, world=compile_world("ant"))
    expected = sum(w * table.terms[k][0] for k, w in weights.items() if table.terms[k][0] is not None)
    assert table.total[0] == pytest.approx(expected)
    assert table.terms["object_unexplained_mps"] == [None]  # no objects in the ant world


def test_frame_rate_does_not_change_the_verdict(valid_clips):
    """The same motion at half the frame rate keeps its verdicts (terms are computed per second)."""
    from rlpf.core.clips import Clip

    clip = valid_clips["humanoid"][0]
    half = Clip(qpos=clip.qpos[::2].copy(), fps=clip.fps / 2, world="humanoid")
    assert score(half, "humanoid")["plausible"]
    assert not score(corrupt.float_up(half), "humanoid")["plausible"]


def test_gymnasium_env_recording_scores_as_is():
    """Clips recorded from gymnasium's own Ant-v5 use the same model and qpos layout."""
    import gymnasium as gym

    from rlpf.core.clips import Clip

    env = gym.make("Ant-v5")
    env.reset(seed=0)
    # seeded actions: unseeded, the test failed now and then - 1 of 30 such clips (action seeds 0-29)
    # is flagged for skating, the bouncy-ant limit the README states for uniform random actions
    env.action_space.seed(0)
    frames = []
    for _ in range(60):
        frames.append(env.unwrapped.data.qpos.copy())
        env.step(0.3 * env.action_space.sample())
    env.close()
    clip = Clip(qpos=np.array(frames), fps=1.0 / env.unwrapped.dt, world="ant")
    assert clip.fps == pytest.approx(20.0)
    assert score(clip, "ant")["plausible"]


def test_quaternion_sign_flips_do_not_matter(valid_clips):
    """q and -q are the same orientation; a generator may emit either from frame to frame."""
    clip = valid_clips["humanoid"][0]
    flipped = type(clip)(qpos=clip.qpos.copy(), fps=clip.fps, world="humanoid")
    flipped.qpos[::2, 3:7] *= -1
    a, b = score(clip, "humanoid"), score(flipped, "humanoid")
    assert b["plausible"]
    assert b["terms"]["root_residual_bw"] == pytest.approx(a["terms"]["root_residual_bw"], abs=1e-6)
