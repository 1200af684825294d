"""The control evaluation harness: seeded episodes of any policy on gymnasium tasks, and its errors."""
import os

import numpy as np
import pytest

from rlpf.control.evaluate import (PolicyLoadError, PolicyMismatchError, UnknownEnvError, evaluate, expert_policy,
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

    from rlpf.control.evaluate import make_env, save_sb3

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


@pytest.fixture(scope="module")
def ppo_dir(tmp_path_factory):
    """A PPO policy directory as `rlpf control` writes it: model.zip, vecnormalize.json, sb3.json."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from rlpf.control.evaluate import save_sb3

    venv = VecNormalize(make_vec_env("Reacher-v5", n_envs=1, seed=0))
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu",
                policy_kwargs=dict(net_arch=[16]))
    model.learn(64)
    path = tmp_path_factory.mktemp("sb3") / "ppo"
    save_sb3(model, venv, str(path), "Reacher-v5", "ppo")
    venv.training = False
    return path, model, venv


def test_sb3_policy_applies_the_saved_statistics_like_vecnormalize(ppo_dir):
    path, model, venv = ppo_dir
    assert sorted(os.listdir(path)) == ["model.zip", "sb3.json", "vecnormalize.json"]  # no pickle written
    policy = load_policy(str(path), "Reacher-v5")
    obs = np.random.default_rng(0).normal(0, 3, (8, 10)).astype(np.float32)
    for o in obs:
        want = model.predict(venv.normalize_obs(o), deterministic=True)[0]
        np.testing.assert_array_equal(policy.act(o, None), want)


def test_a_policy_directory_with_pickled_statistics_never_runs_them(ppo_dir, tmp_path, capsys):
    import shutil

    from payloads import pickle_file

    from rlpf.cli import main

    marker = tmp_path / "payload-ran"
    shared = tmp_path / "shared"
    shutil.copytree(ppo_dir[0], shared)
    os.remove(shared / "vecnormalize.json")
    pickle_file(shared / "vecnormalize.pkl", marker)  # what an older rlpf (SB3's VecNormalize.save) wrote
    with pytest.raises(PolicyLoadError, match=r"shared/vecnormalize\.pkl: .*older rlpf.*--trust-and-convert"):
        load_policy(str(shared), "Reacher-v5")
    assert main(["eval-control", "--env", "Reacher-v5", "--policy", str(shared), "--episodes", "1", "--quiet"]) == 2
    assert "vecnormalize.pkl" in capsys.readouterr().err
    pickle_file(shared / "vecnormalize.json", marker)  # a pickle under the new name
    with pytest.raises(PolicyLoadError, match=r"shared/vecnormalize\.json: .*pickled"):
        load_policy(str(shared), "Reacher-v5")
    assert not marker.exists()


def test_an_sb3_zip_with_a_serialized_payload_never_runs_it(ppo_dir, tmp_path):
    from stable_baselines3 import PPO

    from payloads import sb3_zip_with_payload

    marker = tmp_path / "payload-ran"
    src = ppo_dir[0] / "model.zip"
    doctored = sb3_zip_with_payload(src, tmp_path / "known.zip", marker, "policy_class")
    # an entry rlpf rebuilds from its readable fields: the model loads, the payload is never decoded
    policy = load_policy(doctored, "Reacher-v5")
    assert (policy.obs_size, policy.act_size) == (10, 2)
    unknown = sb3_zip_with_payload(src, tmp_path / "unknown.zip", marker, "surprise")
    with pytest.raises(PolicyLoadError, match=r"unknown\.zip: entry 'surprise' is a pickled Python object"):
        load_policy(unknown, "Reacher-v5")
    assert not marker.exists()
    PPO.load(unknown, device="cpu")  # SB3's plain loader decodes it: the payload is live
    assert marker.exists()


def test_a_video_that_cannot_be_written_is_recorded_not_raised(tmp_path, capsys):
    """video_dir under a regular file (makedirs fails for real, also as root): the evaluation completes
    with the same numbers, the failure is a warning and an entry in video_errors."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the video directory should go")
    bad = evaluate(expert_policy("Reacher-v5"), "Reacher-v5", episodes=2, video_dir=str(blocker / "videos"),
                   video_size=64, label="expert", progress=False)
    plain = evaluate(expert_policy("Reacher-v5"), "Reacher-v5", episodes=2, progress=False)
    assert bad["per_episode"] == plain["per_episode"] and bad["videos"] == []
    (entry,) = bad["video_errors"]
    assert entry["video"].startswith(str(blocker / "videos")) and "Error" in entry["error"]
    assert "no video" in capsys.readouterr().err
    assert plain["video_errors"] == []


def test_eval_control_without_an_opengl_backend_still_reports(tmp_path):
    """MUJOCO_GL=glfw without a display: gymnasium's renderer cannot make a context. `rlpf eval-control
    --video` still evaluates, exits 0 and records the failure in its report."""
    import json
    import subprocess
    import sys

    if os.environ.get("DISPLAY") or sys.platform != "linux":
        pytest.skip("a display is available: glfw would render")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MUJOCO_GL"] = "glfw"
    out = tmp_path / "report.json"
    p = subprocess.run([sys.executable, "-m", "rlpf.cli", "eval-control", "--env", "Reacher-v5", "--policy", "expert",
                        "--episodes", "1", "--video", str(tmp_path / "videos"), "--out", str(out), "--quiet"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["videos"] == [] and report["episodes"] == 1
    (entry,) = report["video_errors"]
    assert entry["video"] == "env.render()" and entry["error"]
    assert "no video" in p.stderr
