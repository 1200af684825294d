"""Meta-World MT10 suite: the any-step success rule, seeded scenes, the batched evaluation, expert demos."""
import numpy as np
import pytest

from rlpf.core.errors import RLPFError

from rlpf.control.mt10 import (MT10, NOISE_STD, PROMPTS, ExpertPolicy, MetaWorldTaskError, collect_mt_demos,
                               evaluate_mt, make_task_env, one_hot, upright)


class ReachThenLeave:
    """Meta-World's reach expert for ``reach_steps`` steps, then the hand driven straight up, away from the goal."""

    tasks = None

    def __init__(self, reach_steps):
        self.expert, self.reach_steps = ExpertPolicy(), reach_steps

    def reset(self, task, mask, seeds):
        self.t = 0

    def act(self, obs, task):
        self.t += 1
        if self.t <= self.reach_steps:
            return self.expert.act(obs, task)
        return np.tile([0.0, 0.0, 1.0, 0.0], (len(obs), 1)).astype(np.float32)


def test_success_counts_at_any_step_not_the_last():
    policy = ReachThenLeave(reach_steps=150)
    r = evaluate_mt(policy, ["reach-v3"], episodes=1, seed=1000, n_envs=1, progress=False)
    ep = r["tasks"]["reach-v3"]["per_episode"][0]
    assert ep["success"] and ep["first_success_step"] == ep["steps"] < 150
    # the same episode played to its 500-step end: the hand has left the goal, so a last-step rule would fail it
    env = make_task_env("reach-v3")
    obs, _ = env.reset(seed=1000)
    policy.reset("reach-v3", np.ones(1, bool), [1000])
    flags = []
    for _ in range(500):
        obs, _, _, truncated, info = env.step(policy.act(obs[None], "reach-v3")[0])
        flags.append(bool(info["success"]))
    assert truncated and any(flags) and not flags[-1]
    assert flags.index(True) + 1 == ep["first_success_step"]
    env.close()


def test_scenes_come_from_the_seed():
    a, b = make_task_env("push-v3"), make_task_env("push-v3")
    o1, _ = a.reset(seed=5)
    o2, _ = a.reset(seed=6)
    o3, _ = b.reset(seed=5)
    assert np.array_equal(o1, o3) and not np.allclose(o1[4:7], o2[4:7])   # the puck's start follows the seed
    assert np.linalg.norm(o1[4:6] - o1[-3:-1]) >= 0.15                      # push's own reset rule still holds
    a.close(), b.close()


def test_expert_succeeds_and_batching_does_not_change_episodes():
    one = evaluate_mt(ExpertPolicy(), ["push-v3"], episodes=3, seed=1000, n_envs=1, progress=False)
    three = evaluate_mt(ExpertPolicy(), ["push-v3"], episodes=3, seed=1000, n_envs=3, progress=False)
    assert one["tasks"]["push-v3"]["success_rate"] == 1.0
    assert one["tasks"]["push-v3"]["per_episode"] == three["tasks"]["push-v3"]["per_episode"]
    assert three["eval_steps"] == sum(e["steps"] for e in three["tasks"]["push-v3"]["per_episode"])
    assert three["steps_per_s"] > 0


def test_demos_are_clean_actions_of_noisy_seeded_episodes():
    d = collect_mt_demos(["reach-v3"], episodes=2, seed=0, n_envs=2, progress=False)
    again = collect_mt_demos(["reach-v3"], episodes=2, seed=0, n_envs=1, progress=False)
    assert all(np.array_equal(d[k], again[k]) for k in ("obs", "actions", "episode", "step", "qpos__reach-v3"))
    n = len(d["obs"])
    assert d["obs"].shape == (n, 39) and d["actions"].shape == (n, 4) and len(d["qpos__reach-v3"]) == n
    assert np.abs(d["actions"]).max() <= 1.0
    assert (d["task_onehot"].argmax(1) == MT10.index("reach-v3")).all() and (d["task_onehot"].sum(1) == 1).all()
    assert list(d["ep_seed"]) == [0, 1] and list(np.bincount(d["episode"])) == list(d["ep_steps"])
    assert all(NOISE_STD[0] <= s <= NOISE_STD[1] for s in d["ep_sigma"]) and d["ep_sigma"][0] != d["ep_sigma"][1]
    assert list(d["prompts"]) == [PROMPTS[t] for t in MT10]


def test_noise_convention_matches_the_data_layer():
    from rlpf.data.metaworld_data import NOISE_STD as DATA_NOISE

    assert NOISE_STD == DATA_NOISE


def test_unknown_task_and_bad_arguments_are_named():
    with pytest.raises(MetaWorldTaskError, match="fly-v3"):
        make_task_env("fly-v3")
    with pytest.raises(MetaWorldTaskError, match="fly-v3"):
        evaluate_mt(ExpertPolicy(), ["fly-v3"], episodes=1, progress=False)
    with pytest.raises(RLPFError, match="episodes must be >= 1"):
        evaluate_mt(ExpertPolicy(), ["reach-v3"], episodes=0, progress=False)
    assert one_hot("window-close-v3", 2).tolist() == [[0.0] * 9 + [1.0]] * 2


def test_video_frames_are_turned_upright():
    """Meta-World's corner camera is rolled 180 degrees (its up axis points down): frames are rotated,
    not mirrored. Rendered for real: in the upright frame the table top (brown wood) lies below the
    image's middle, as seen from a camera 0.6 m above the floor looking down at it."""
    pytest.importorskip("imageio")
    frame = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    np.testing.assert_array_equal(upright(frame), np.rot90(frame, 2))
    env = make_task_env("push-v3", render_size=64)
    try:
        env.reset(seed=0)
        img = upright(env.render()).astype(float)
    except Exception as e:  # noqa: BLE001 - no OpenGL backend on this machine
        pytest.skip(f"no rendering here: {e}")
    finally:
        env.close()
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    wood = (r > g) & (g > b) & (r - b > 40) & (r < 200)       # brown: red > green > blue
    rows = np.nonzero(wood)[0]
    assert len(rows) > 50 and rows.mean() > img.shape[0] / 2
