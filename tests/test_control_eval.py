"""The control evaluation harness: seeded episodes of any policy on gymnasium tasks, and its errors."""
import os

import numpy as np
import pytest

from rlpf.control_eval import (PolicyLoadError, PolicyMismatchError, UnknownEnvError, evaluate, expert_policy,
                               load_policy)


def test_scripted_expert_succeeds_and_seeds_repeat():
    a = evaluate(expert_policy("Reacher-v5"), "Reacher-v5", episodes=3, seed=0, progress=False)
    b = evaluate(load_policy("expert", "Reacher-v5"), "Reacher-v5", episodes=3, seed=0, progress=False)
    assert a["success_rate"] == 1.0 and a["final_distance_mean"] < 0.02
    assert a["per_episode"] == b["per_episode"]
    assert a["eval_steps"] == 150 and a["return_mean"] < 0


def test_pusher_expert_pushes_the_object_toward_the_goal():
    r = evaluate(expert_policy("Pusher-v5"), "Pusher-v5", episodes=2, seed=1, progress=False)
    moved = [e["start_distance"] - e["final_distance"] for e in r["per_episode"]]
    assert max(moved) >= 0.10 and r["success_rate"] > 0


def test_video_is_written(tmp_path):
    r = evaluate(expert_policy("Reacher-v5"), "Reacher-v5", episodes=1, video_dir=str(tmp_path), video_size=64,
                 label="expert", progress=False)
    assert len(r["videos"]) == 1 and os.path.getsize(r["videos"][0]) > 0


def test_unknown_env_id_is_named():
    with pytest.raises(UnknownEnvError, match="Ant-v5.*Pusher-v5"):
        load_policy("expert", "Ant-v5")
    with pytest.raises(UnknownEnvError, match="CartPole"):
        evaluate(expert_policy("Reacher-v5"), "CartPole-v1", episodes=1, progress=False)


def test_missing_and_empty_policy_paths(tmp_path):
    with pytest.raises(PolicyLoadError, match="nope.*no such file"):
        load_policy(str(tmp_path / "nope"), "Pusher-v5")
    with pytest.raises(PolicyLoadError, match="no policy.pt or model.zip"):
        load_policy(str(tmp_path), "Pusher-v5")
    bad = tmp_path / "policy.pt"
    bad.write_bytes(b"not a policy")
    with pytest.raises(PolicyLoadError, match="not a readable rlpf policy"):
        load_policy(str(bad), "Pusher-v5")


def test_policy_of_another_task_is_refused():
    with pytest.raises(PolicyMismatchError, match="Reacher-v5.*actions 2.*Pusher-v5.*actions 7"):
        evaluate(expert_policy("Reacher-v5"), "Pusher-v5", episodes=1, progress=False)


def test_sb3_model_round_trip(tmp_path):
    from stable_baselines3 import PPO

    from rlpf.control_eval import make_env, save_sb3

    env = make_env("Reacher-v5")
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(32)
    save_sb3(model, None, str(tmp_path / "ppo"), "Reacher-v5", "ppo")
    a = evaluate(load_policy(str(tmp_path / "ppo"), "Reacher-v5"), "Reacher-v5", episodes=1, progress=False)
    b = evaluate(load_policy(str(tmp_path / "ppo" / "model.zip"), "Reacher-v5"), "Reacher-v5", episodes=1,
                 progress=False)
    assert a["per_episode"] == b["per_episode"] and np.isfinite(a["return_mean"])
    with pytest.raises(PolicyMismatchError):
        evaluate(load_policy(str(tmp_path / "ppo"), "Reacher-v5"), "Pusher-v5", episodes=1, progress=False)
