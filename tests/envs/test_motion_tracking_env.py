"""rlpf/MotionTracking-v0 and the learned tracker trained on it (tiny budgets: seconds, not minutes)."""
import os
import shutil
import warnings

import gymnasium as gym
import numpy as np
import pytest

from rlpf.core.clips import save_clips
from rlpf.envs.motion_tracking import REWARD_TERMS, MotionTrackingEnv, resample


@pytest.fixture(scope="module")
def ant_clips():
    from rlpf.policies.scripted import SmoothRandom
    from rlpf.data.simulate import simulate

    return [simulate("ant", SmoothRandom(0.5), 40, seed=s) for s in range(6)]


@pytest.fixture
def env(ant_clips):
    e = MotionTrackingEnv("ant", clips=ant_clips[:3])
    yield e
    e.close()


def test_registered_and_passes_both_env_checkers(ant_clips):
    import rlpf.envs  # noqa: F401  (registers the id)
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("rlpf/MotionTracking-v0", world="ant", clips=ant_clips[:3])
    assert isinstance(env.unwrapped, MotionTrackingEnv)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")  # unbounded observations, by design
        check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=False)


def test_library_path_and_bad_arguments(ant_clips, tmp_path):
    save_clips(str(tmp_path / "lib.npz"), ant_clips[:2])
    env = MotionTrackingEnv("ant", library=str(tmp_path))
    assert len(env.clips) == 2
    with pytest.raises(ValueError, match="exactly one"):
        MotionTrackingEnv("ant")
    with pytest.raises(ValueError, match="floating root"):
        MotionTrackingEnv("pusher", clips=ant_clips[:1])
    with pytest.raises(ValueError, match="file not found"):
        MotionTrackingEnv("ant", library=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .npz clips"):
        MotionTrackingEnv("ant", library=str(tmp_path / "empty"))


def test_reward_terms_in_info_sum_to_reward(env):
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        terms = [info[f"reward_{k}"] for k in REWARD_TERMS]
        assert reward == pytest.approx(sum(terms), abs=1e-12)
        assert all(t >= 0 for t in terms) and reward <= 1.0 + 1e-9  # the default weights sum to 1
        assert np.isfinite(info["body_error_m"])
        if terminated or truncated:
            break


def test_reward_is_maximal_on_the_reference_and_weights_apply(ant_clips):
    env = MotionTrackingEnv("ant", clips=ant_clips[:1], pose_weight=2.0)
    env.reset(options={"clip": 0, "frame": 0})
    ref = env.reference(0)
    env.data.qpos[:], env.data.qvel[:] = ref.qpos[1], ref.qvel[1]
    env.frame = 1
    import mujoco

    mujoco.mj_forward(env.model, env.data)
    terms = env._reward_terms(1)
    assert terms["pose"] == pytest.approx(2.0)
    assert terms["root_pose"] == pytest.approx(0.15) and terms["key_body"] == pytest.approx(0.15)


def test_seeded_reset_repeats(env):
    obs1, info1 = env.reset(seed=7)
    traj1 = [env.step(np.full(env.action_space.shape, 0.3, np.float32))[0] for _ in range(3)]
    obs2, info2 = env.reset(seed=7)
    traj2 = [env.step(np.full(env.action_space.shape, 0.3, np.float32))[0] for _ in range(3)]
    assert info1 == info2
    np.testing.assert_array_equal(obs1, obs2)
    np.testing.assert_array_equal(np.stack(traj1), np.stack(traj2))
    starts = {tuple(env.reset(seed=s)[1].values()) for s in range(10)}
    assert len(starts) > 3  # random clip and start frame (reference state initialization)


def test_early_termination_on_large_deviation(env):
    import mujoco

    env.reset(options={"clip": 0, "frame": 0})
    _, _, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
    assert not terminated and info["body_error_m"] < env.termination_distance
    env.data.qpos[0] += 1.0  # knock the body 1 m off its reference
    mujoco.mj_forward(env.model, env.data)
    _, _, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
    assert terminated and not truncated and info["body_error_m"] > env.termination_distance


def test_truncates_at_the_clip_end(ant_clips):
    env = MotionTrackingEnv("ant", clips=ant_clips[:1], termination_distance=np.inf)
    env.reset(options={"clip": 0, "frame": 36})
    flags = [env.step(np.zeros(8))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_resample_round_trip(ant_clips):
    from rlpf.core.clips import quaternion_addresses
    from rlpf.envs.worlds import compile_world

    q = ant_clips[0].qpos.copy()
    q[:, 3:7] /= np.linalg.norm(q[:, 3:7], axis=1, keepdims=True)
    adrs = quaternion_addresses(compile_world("ant").model)
    up = resample(q, 20.0, 40.0, adrs)
    assert up.shape == (2 * len(q) - 1, q.shape[1])
    np.testing.assert_allclose(resample(up, 40.0, 20.0, adrs), q, atol=1e-9)


def test_short_ppo_run_changes_every_parameter(env):
    import torch
    from stable_baselines3 import PPO

    torch.manual_seed(0)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu",
                policy_kwargs=dict(net_arch=[32, 32]))
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(192)
    after = model.policy.state_dict()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, f"parameters not updated: {unchanged}"


@pytest.fixture(scope="module")
def tiny_run(ant_clips, tmp_path_factory):
    """A tracker trained for 256 steps on a 6-clip library (dummy vec env, checkpoints every 128)."""
    from rlpf.policies.learned_tracker import TrackerTrainConfig, train_tracker

    root = tmp_path_factory.mktemp("tracker")
    lib = root / "lib"
    save_clips(str(lib / "ant.npz"), ant_clips)
    cfg = TrackerTrainConfig(data=str(lib), val_fraction=0.34, total_timesteps=256, n_envs=2, vec_env="dummy",
                             n_steps=64, batch_size=64, n_epochs=1, net_arch=[32, 32], checkpoint_every=128,
                             eval_clips=1)
    run = root / "run"
    summary = train_tracker(cfg, str(run), progress=False)
    return cfg, str(run), summary


def test_train_tracker_writes_a_loadable_run(tiny_run):
    from rlpf.policies.learned_tracker import LearnedTracker

    cfg, run, summary = tiny_run
    for name in ("config.yaml", "heldout.npz", "tracker.zip", "vecnormalize.json", "tracker_summary.json"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert not [f for _, _, files in os.walk(run) for f in files if f.endswith(".pkl")]  # no pickles written
    assert os.listdir(os.path.join(run, "tb", "ppo_1"))
    assert summary["n_train"] == 4 and summary["eval"]["valid"]["n"] == 1
    tracker = LearnedTracker.load(run, world="ant")
    cls, kwargs = tracker.spec()
    assert cls(**kwargs).policy is tracker.policy
    assert tracker.cache_key() == LearnedTracker.load(run).cache_key() and len(str(tracker.cache_key())) < 400


def test_numpy_policy_matches_sb3(tiny_run, ant_clips):
    from stable_baselines3 import PPO

    from rlpf.policies.learned_tracker import LearnedTracker, make_vec_env
    from rlpf.core.safe_load import read_vecnormalize, vecnormalize_from_stats

    cfg, run, _ = tiny_run
    tracker = LearnedTracker.load(run)
    model = PPO.load(os.path.join(run, "tracker.zip"), device="cpu")  # SB3's own loader: our file, trusted here
    norm = vecnormalize_from_stats(read_vecnormalize(os.path.join(run, "vecnormalize.json")),
                                   make_vec_env(cfg, ant_clips[:1]), training=False)
    obs = np.random.default_rng(0).normal(0, 2, (5, tracker.policy.obs_dim)).astype(np.float32)
    for o in obs:
        want, _ = model.predict(norm.normalize_obs(o), deterministic=True)
        np.testing.assert_allclose(tracker.act(o), want, atol=1e-5)


def test_track_one_returns_a_track_result(tiny_run, ant_clips):
    from rlpf.core.clips import quaternion_addresses
    from rlpf.envs.worlds import compile_world
    from rlpf.policies.learned_tracker import LearnedTracker
    from rlpf.judge.tracking import success_threshold

    tracker = LearnedTracker.load(tiny_run[1])
    clip = ant_clips[4]
    r = tracker.track_one(clip)
    T = clip.n_frames
    assert r.qpos.shape == (T, 15) and r.body_error_m.shape == (T,) and r.torques.shape == (T, 8)
    assert r.body_error_m[0] == pytest.approx(0.0, abs=1e-9) and np.isfinite(r.body_error_m).all()
    assert r.threshold_m == success_threshold("ant") and not r.diverged
    assert isinstance(r.success, bool) and isinstance(r.fell, bool)
    # a clip at another frame rate is tracked at the world's and reported at its own frames
    import dataclasses

    fast = dataclasses.replace(clip, qpos=resample(clip.qpos, 20.0, 40.0, quaternion_addresses(compile_world("ant").model)),
                               fps=40.0)
    r40 = tracker.track_one(fast)
    assert r40.qpos.shape == (2 * T - 1, 15) and r40.body_error_m.shape == (2 * T - 1,)


def test_load_errors(tiny_run, tmp_path):
    from rlpf.policies.learned_tracker import LearnedTracker, TrackerLoadError

    run = tiny_run[1]
    with pytest.raises(TrackerLoadError, match="no such tracker run"):
        LearnedTracker.load(str(tmp_path / "missing"))
    with pytest.raises(TrackerLoadError, match="no config.yaml"):
        LearnedTracker.load(str(tmp_path))
    with pytest.raises(TrackerLoadError, match="trained for world 'ant', asked to track 'humanoid'"):
        LearnedTracker.load(run, world="humanoid")
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "tracker.zip").write_bytes(b"not a zip")
    with pytest.raises(TrackerLoadError, match="tracker.zip: unreadable policy"):
        LearnedTracker.load(str(broken))
    shutil.copy(os.path.join(run, "tracker.zip"), broken / "tracker.zip")
    (broken / "vecnormalize.json").write_bytes(b"garbage")
    with pytest.raises(TrackerLoadError, match="vecnormalize.json: unreadable VecNormalize"):
        LearnedTracker.load(str(broken))
    empty = tmp_path / "untrained"
    empty.mkdir()
    shutil.copy(os.path.join(run, "config.yaml"), empty / "config.yaml")
    with pytest.raises(TrackerLoadError, match="no trained policy"):
        LearnedTracker.load(str(empty))


def test_resume_continues_from_the_last_checkpoint(tiny_run, tmp_path):
    from stable_baselines3 import PPO

    from rlpf.core.config import ConfigError
    from rlpf.policies.learned_tracker import latest_checkpoint, train_tracker

    cfg, run, _ = tiny_run
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    for name in ("tracker.zip", "vecnormalize.json", "tracker_summary.json", "checkpoints/tracker_256_steps.zip",
                 "checkpoints/tracker_vecnormalize_256_steps.json"):
        os.remove(resumed / name)
    assert latest_checkpoint(str(resumed))[0].endswith("tracker_128_steps.zip")
    summary = train_tracker(cfg, str(resumed), progress=False)
    assert summary["timings"]["steps"] == 128  # only the missing half was trained
    assert PPO.load(str(resumed / "tracker.zip"), device="cpu").num_timesteps == 256
    assert sorted(os.listdir(resumed / "tb")) == ["eval", "ppo_1"]  # TensorBoard continues the same run
    with pytest.raises(ConfigError, match="different config"):
        train_tracker(type(cfg)(**{**vars(cfg), "seed": 1}), str(resumed), progress=False)


def test_payload_files_in_a_tracker_run_never_run(tiny_run, tmp_path):
    """A doctored run: pickled statistics (as older rlpf wrote them, or under the new name) and an SB3
    zip with cloudpickled entries. Loading refuses the pickles by name; no payload runs."""
    from payloads import pickle_file, sb3_zip_with_payload

    from rlpf.policies.learned_tracker import LearnedTracker, TrackerLoadError

    run = tiny_run[1]
    marker = tmp_path / "payload-ran"
    legacy = tmp_path / "legacy"
    shutil.copytree(run, legacy)
    os.remove(legacy / "vecnormalize.json")
    pickle_file(legacy / "vecnormalize.pkl", marker)
    with pytest.raises(TrackerLoadError, match=r"legacy/vecnormalize\.pkl: VecNormalize statistics pickled by an "
                                               r"older rlpf.*--trust-and-convert"):
        LearnedTracker.load(str(legacy))
    disguised = tmp_path / "disguised"
    shutil.copytree(run, disguised)
    pickle_file(disguised / "vecnormalize.json", marker)
    with pytest.raises(TrackerLoadError, match=r"disguised/vecnormalize\.json: .*pickled"):
        LearnedTracker.load(str(disguised))
    doctored = tmp_path / "doctored"
    shutil.copytree(run, doctored)
    # a known entry keeps working from its readable fields (its pickle is ignored) ...
    for key in ("observation_space", "policy_class", "clip_range", "_last_obs"):
        sb3_zip_with_payload(os.path.join(run, "tracker.zip"), doctored / "tracker.zip", marker, key)
        assert LearnedTracker.load(str(doctored)).policy.obs_dim == LearnedTracker.load(run).policy.obs_dim
    # ... an entry rlpf cannot rebuild is refused by name
    sb3_zip_with_payload(os.path.join(run, "tracker.zip"), doctored / "tracker.zip", marker, "surprise")
    with pytest.raises(TrackerLoadError, match=r"doctored/tracker\.zip: entry 'surprise' is a pickled Python object"):
        LearnedTracker.load(str(doctored))
    assert not marker.exists()


def test_resume_refuses_payload_checkpoints(tiny_run, tmp_path):
    from payloads import pickle_file, sb3_zip_with_payload

    from rlpf.policies.learned_tracker import TrackerLoadError, train_tracker

    cfg, run, _ = tiny_run
    marker = tmp_path / "payload-ran"
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    for name in ("tracker.zip", "vecnormalize.json", "tracker_summary.json", "checkpoints/tracker_256_steps.zip",
                 "checkpoints/tracker_vecnormalize_256_steps.json", "checkpoints/tracker_vecnormalize_128_steps.json"):
        os.remove(resumed / name)
    pickle_file(resumed / "checkpoints" / "tracker_vecnormalize_128_steps.pkl", marker)
    with pytest.raises(TrackerLoadError, match=r"tracker_vecnormalize_128_steps\.pkl: .*older rlpf.*Retrain"):
        train_tracker(cfg, str(resumed), progress=False)
    assert not marker.exists()
    # the checkpoint zip with a payload in an entry SB3 would cloudpickle-decode: resumed without running it
    os.remove(resumed / "checkpoints" / "tracker_vecnormalize_128_steps.pkl")
    shutil.copy(os.path.join(run, "checkpoints", "tracker_vecnormalize_128_steps.json"), resumed / "checkpoints")
    zip128 = resumed / "checkpoints" / "tracker_128_steps.zip"
    sb3_zip_with_payload(os.path.join(run, "checkpoints", "tracker_128_steps.zip"), zip128, marker, "ep_info_buffer")
    summary = train_tracker(cfg, str(resumed), progress=False)
    assert summary["num_timesteps"] == 256 and summary["timings"]["steps"] == 128
    assert not marker.exists()


def test_a_trusted_legacy_run_converts_and_loads(tiny_run, tmp_path, ant_clips):
    """An older rlpf's run (SB3 pickles) is usable after the deliberate conversion, with equal actions."""
    from rlpf.policies.learned_tracker import LearnedTracker, TrackerLoadError, make_vec_env
    from rlpf.core.safe_load import main as safe_load_main, read_vecnormalize, vecnormalize_from_stats

    cfg, run, _ = tiny_run
    legacy = tmp_path / "legacy"
    shutil.copytree(run, legacy)
    vn = vecnormalize_from_stats(read_vecnormalize(os.path.join(run, "vecnormalize.json")), make_vec_env(cfg, ant_clips[:1]))
    os.remove(legacy / "vecnormalize.json")
    vn.save(str(legacy / "vecnormalize.pkl"))  # what the older rlpf wrote (SB3's pickle)
    with pytest.raises(TrackerLoadError, match="--trust-and-convert"):
        LearnedTracker.load(str(legacy))
    assert safe_load_main(["--trust-and-convert", str(legacy)]) == 0
    obs = np.random.default_rng(1).normal(0, 2, LearnedTracker.load(run).policy.obs_dim)
    np.testing.assert_array_equal(LearnedTracker.load(str(legacy)).act(obs), LearnedTracker.load(run).act(obs))


def test_render_rgb_array(ant_clips, no_rendering):
    env = MotionTrackingEnv("ant", clips=ant_clips[:1], render_mode="rgb_array", width=64, height=48)
    env.reset(seed=0)
    try:
        frame = env.render()
    except Exception as e:  # no OpenGL here (MUJOCO_GL=egl / osmesa missing): skipped, or failed in CI
        no_rendering(e)
    finally:
        env.close()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 0


def test_training_repeats_for_a_seed(tiny_run, tmp_path):
    from rlpf.policies.learned_tracker import LearnedTracker, train_tracker

    cfg, run, _ = tiny_run
    train_tracker(cfg, str(tmp_path / "again"), progress=False)
    a, b = LearnedTracker.load(run).policy, LearnedTracker.load(str(tmp_path / "again")).policy
    np.testing.assert_array_equal(a.obs_mean, b.obs_mean)
    for (wa, ba, _), (wb, bb, _) in zip(a.layers, b.layers):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(ba, bb)


def test_finished_run_is_a_cached_no_op(tiny_run, monkeypatch):
    import rlpf.policies.learned_tracker as lt
    from rlpf.core.run_dir import read_json

    cfg, run, summary = tiny_run
    before = {n: os.path.getmtime(os.path.join(run, n)) for n in ("tracker.zip", "tracker_summary.json", "config.yaml")}

    def fail(*args, **kwargs):
        raise AssertionError("a finished run must not load data or train again")

    monkeypatch.setattr(lt, "load_library", fail)
    monkeypatch.setattr(lt, "make_vec_env", fail)
    again = lt.train_tracker(cfg, run, progress=False)
    assert again.pop("cached") is True and "cached" not in summary
    assert again == read_json(os.path.join(run, "tracker_summary.json")) and again["eval"] == summary["eval"]
    assert before["tracker.zip"] == os.path.getmtime(os.path.join(run, "tracker.zip"))
    assert before["tracker_summary.json"] == os.path.getmtime(os.path.join(run, "tracker_summary.json"))


def test_more_timesteps_extends_a_finished_run(tiny_run, tmp_path):
    import dataclasses

    from stable_baselines3 import PPO

    from rlpf.core.config import ConfigError, load_config
    from rlpf.policies.learned_tracker import TrackerTrainConfig, latest_checkpoint, train_tracker

    cfg, run, _ = tiny_run
    longer = tmp_path / "longer"
    shutil.copytree(run, longer)
    before = LearnedPolicyWeights(longer)
    with pytest.raises(ConfigError, match=r"already trained 256 steps.*total_timesteps=128 is fewer"):
        train_tracker(dataclasses.replace(cfg, total_timesteps=128), str(longer), progress=False)
    with pytest.raises(ConfigError, match=r"fields \['seed'\] differ; only total_timesteps may change"):
        train_tracker(dataclasses.replace(cfg, total_timesteps=384, seed=1), str(longer), progress=False)
    assert load_config(TrackerTrainConfig, str(longer / "config.yaml")).total_timesteps == 256  # refusals write nothing

    summary = train_tracker(dataclasses.replace(cfg, total_timesteps=384), str(longer), progress=False)
    assert summary["timings"]["steps"] == 128 and summary["num_timesteps"] == 384  # on from step 256, not afresh
    assert PPO.load(str(longer / "tracker.zip"), device="cpu").num_timesteps == 384
    assert latest_checkpoint(str(longer))[0].endswith("tracker_384_steps.zip")
    assert load_config(TrackerTrainConfig, str(longer / "config.yaml")).total_timesteps == 384
    assert sorted(os.listdir(longer / "tb")) == ["eval", "ppo_1"]
    assert not before.equal(LearnedPolicyWeights(longer))   # the policy trained on
    # the extended run is now the finished one for 384 steps: the same call again is a no-op
    assert train_tracker(dataclasses.replace(cfg, total_timesteps=384), str(longer), progress=False) == {**summary, "cached": True}


class LearnedPolicyWeights:
    """The actor weights of the tracker in a run directory, for comparison."""

    def __init__(self, run):
        from rlpf.policies.learned_tracker import LearnedTracker

        self.layers = [w.copy() for w, _, _ in LearnedTracker.load(str(run)).policy.layers]

    def equal(self, other) -> bool:
        return all(np.array_equal(a, b) for a, b in zip(self.layers, other.layers))
