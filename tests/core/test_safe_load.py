"""rlpf.core.safe_load: tensors, SB3 zips and VecNormalize statistics are read without running code."""
import json
import os
import zipfile

import numpy as np
import pytest
import torch

from payloads import pickle_file, sb3_zip_with_payload, torch_file

from rlpf.core.safe_load import (LegacyPickleError, StatsFileError, UnsafeFileError, load_sb3_model, load_tensors, main,
                            read_vecnormalize, save_vecnormalize, vecnormalize_from_stats)


def test_load_tensors_reads_plain_data_and_refuses_objects(tmp_path):
    torch.save({"w": torch.arange(3), "meta": {"name": "x", "n": 2, "ok": True, "none": None}}, tmp_path / "ok.pt")
    assert load_tensors(str(tmp_path / "ok.pt"))["meta"] == {"name": "x", "n": 2, "ok": True, "none": None}
    marker = tmp_path / "ran"
    torch_file(tmp_path / "evil.pt", marker, around=lambda p: {"w": torch.zeros(1), "x": [p]})
    with pytest.raises(UnsafeFileError, match=r"evil\.pt: refused: this policy file holds Python objects .*names "
                                              r"[\w.]*open"):
        load_tensors(str(tmp_path / "evil.pt"), what="policy file")
    assert not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")  # pickle opcodes that name no object
    with pytest.raises(Exception, match=r"not a torch file of tensors \(Unsupported operand") as e:
        load_tensors(str(tmp_path / "junk.pt"))
    assert not isinstance(e.value, UnsafeFileError)  # damaged, not dangerous: the callers say "unreadable"


@pytest.fixture(scope="module")
def vn():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    v = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0), gamma=0.97, clip_obs=5.0, epsilon=1e-6)
    v.reset()
    for _ in range(20):
        v.step(np.random.default_rng(0).uniform(-2, 2, (2, 1)).astype(np.float32))
    return v


def test_statistics_round_trip_exactly(vn, tmp_path):
    path = save_vecnormalize(vn, str(tmp_path / "vn.json"))
    stats = read_vecnormalize(path)
    for name in ("obs_rms", "ret_rms"):
        a, b = getattr(vn, name), stats[name]
        assert np.array_equal(a.mean, b.mean) and np.array_equal(a.var, b.var) and a.count == b.count
    assert (stats["gamma"], stats["clip_obs"], stats["epsilon"]) == (0.97, 5.0, 1e-6)
    from stable_baselines3.common.env_util import make_vec_env

    rebuilt = vecnormalize_from_stats(stats, make_vec_env("Pendulum-v1", n_envs=1), training=False)
    obs = np.random.default_rng(1).normal(0, 3, (4, 3)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.normalize_obs(obs), vn.normalize_obs(obs))
    with pytest.raises(ValueError, match=r"statistics for observations \(3,\)"):
        vecnormalize_from_stats(stats, make_vec_env("CartPole-v1", n_envs=1))


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.update(format="other"), "not a rlpf.vecnormalize/1 JSON file"),
    (lambda s: s["obs_rms"].update(mean=[float("nan")] * 3), "obs_rms: mean and var must be finite"),
    (lambda s: s["obs_rms"].update(var=[-1.0, 1.0, 1.0]), "var >= 0"),
    (lambda s: s["ret_rms"].update(count=0), "ret_rms: count must be a positive number"),
    (lambda s: s["obs_rms"].update(shape=[4]), "obs_rms: not mean / var / count / shape"),
    (lambda s: s.update(norm_obs="yes"), "norm_obs: expected bool, got 'yes'"),
    (lambda s: s.update(gamma=1.5), r"gamma must be in \[0, 1\]"),
    (lambda s: s.update(clip_obs=0), "clip_obs must be > 0"),
    (lambda s: s.pop("ret_rms"), "ret_rms: missing"),
])
def test_bad_statistics_name_the_field(vn, tmp_path, edit, match):
    path = tmp_path / "vn.json"
    save_vecnormalize(vn, str(path))
    stats = json.loads(path.read_text())
    edit(stats)
    path.write_text(json.dumps(stats))
    with pytest.raises(StatsFileError, match=rf"vn\.json: .*{match}"):
        read_vecnormalize(str(path))


def test_pickled_statistics_are_refused_unopened(tmp_path):
    marker = tmp_path / "ran"
    pickle_file(tmp_path / "vecnormalize.json", marker)
    with pytest.raises(LegacyPickleError, match=r"vecnormalize\.json: .*--trust-and-convert"):
        read_vecnormalize(str(tmp_path / "vecnormalize.json"))
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(StatsFileError, match="unreadable"):
        read_vecnormalize(str(tmp_path / "empty.json"))
    assert not marker.exists()


@pytest.fixture(scope="module")
def ppo_zip(tmp_path_factory):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "Pendulum-v1", n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu",
                policy_kwargs=dict(net_arch=[8]))
    model.learn(32)
    path = tmp_path_factory.mktemp("sb3") / "ppo.zip"
    model.save(path)
    return path, model


def _rewrite(src, dst, edit):
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    data = json.loads(entries["data"])
    edit(data)
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, c in entries.items():
            z.writestr(n, c)
    return str(dst)


def test_sb3_zip_loads_equal_without_decoding_payloads(ppo_zip, tmp_path):
    from stable_baselines3 import PPO

    path, model = ppo_zip
    marker = tmp_path / "ran"
    doctored = str(path)
    for key in ("observation_space", "action_space", "lr_schedule", "clip_range", "rollout_buffer_class",
                "ep_info_buffer", "_last_obs"):  # every serialized entry of a trained PPO, each a payload
        doctored = sb3_zip_with_payload(doctored, tmp_path / "doctored.zip", marker, key)
    loaded = load_sb3_model(PPO, doctored)
    assert not marker.exists()
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    assert loaded.observation_space == model.observation_space and loaded.clip_range(1.0) == model.clip_range(1.0)


def test_sb3_entries_that_cannot_be_rebuilt_are_refused_by_name(ppo_zip, tmp_path):
    from stable_baselines3 import PPO, SAC

    path, _ = ppo_zip
    odd_schedule = _rewrite(path, tmp_path / "a.zip", lambda d: d["lr_schedule"].update(value_schedule="<function f>"))
    with pytest.raises(UnsafeFileError, match=r"a\.zip: entry 'lr_schedule' is a pickled schedule"):
        load_sb3_model(PPO, odd_schedule)
    not_a_box = _rewrite(path, tmp_path / "b.zip", lambda d: d["action_space"].update({":type:": "<class 'x.Y'>"}))
    with pytest.raises(UnsafeFileError, match=r"b\.zip: entry 'action_space' is a pickled <class 'x.Y'>"):
        load_sb3_model(PPO, not_a_box)
    with pytest.raises(UnsafeFileError, match=r"entry 'policy_class' names a class rlpf cannot identify"):
        load_sb3_model(SAC, str(path))  # a PPO policy is no SAC policy
    with pytest.raises(ValueError, match="not an SB3 model zip"):
        (tmp_path / "c.zip").write_bytes(b"PK not really")
        load_sb3_model(PPO, str(tmp_path / "c.zip"))


def test_truncated_space_bounds_fall_back_to_the_env(ppo_zip, tmp_path):
    import gymnasium as gym
    from stable_baselines3 import PPO

    path, _ = ppo_zip
    cut = _rewrite(path, tmp_path / "cut.zip", lambda d: d["observation_space"].update(low="[-1. ... -8.]"))
    with pytest.raises(UnsafeFileError, match="'observation_space': its bounds are not readable"):
        load_sb3_model(PPO, cut)
    env = gym.make("Pendulum-v1")
    assert load_sb3_model(PPO, cut, env=env).observation_space == env.observation_space


def test_trusted_conversion_is_explicit(vn, tmp_path, capsys):
    legacy = tmp_path / "run" / "checkpoints"
    legacy.mkdir(parents=True)
    vn.save(str(legacy / "tracker_vecnormalize_8_steps.pkl"))  # SB3's pickle, as older rlpf wrote it
    assert main(["--trust-and-convert", str(tmp_path / "run")]) == 0
    stats = read_vecnormalize(str(legacy / "tracker_vecnormalize_8_steps.json"))
    assert np.array_equal(stats["obs_rms"].mean, vn.obs_rms.mean)
    assert main(["--trust-and-convert", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["--trust-and-convert", str(tmp_path / "empty")]) == 2
    assert "no such file" in capsys.readouterr().err
    pickle_file(tmp_path / "other.pkl", tmp_path / "converted-ran")  # it does unpickle: that is what trust means
    with pytest.raises(StatsFileError, match="not a pickled VecNormalize"):
        main(["--trust-and-convert", str(tmp_path / "other.pkl")])
    assert os.path.exists(tmp_path / "converted-ran")
