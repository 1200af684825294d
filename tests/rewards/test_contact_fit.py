"""The contact fit's friction: sliding points get kinetic Coulomb friction mu*N against their slip."""
import numpy as np
import pytest

from rlpf.core.clips import Clip
from rlpf.data import corrupt
from rlpf.envs.worlds import compile_world
from rlpf.judge.scoring import score_clips
from rlpf.rewards import analysis
from rlpf.rewards.contact_forces import friction_pyramid


def glide(clip: Clip, speed: float = 0.8, heading: float = 0.7) -> Clip:
    """The issue's whole-body glide: the root translated at ``speed`` m/s over the floor."""
    out = Clip(qpos=clip.qpos.copy(), fps=clip.fps, world=clip.world, source=f"{clip.source}+glide")
    t = np.arange(clip.n_frames) / clip.fps
    root = corrupt._root(clip)
    out.qpos[:, root] += speed * np.cos(heading) * t
    out.qpos[:, root + 1] += speed * np.sin(heading) * t
    return out


def test_a_sliding_point_gets_exactly_kinetic_friction_against_its_slip():
    rng = np.random.default_rng(0)
    vel = rng.normal(size=(5, 3, 3))
    sliding = np.array([[True, False, True]] * 5)
    mu = 0.7
    cols = analysis.contact_columns(vel, sliding, mu)
    assert cols.shape == (5, 3, 4, 3)
    slide = cols[sliding]                       # [N, 4, 3]
    f = slide[:, 0]
    s_hat = vel[sliding][:, :2] / np.linalg.norm(vel[sliding][:, :2], axis=1, keepdims=True)
    # on the line N * (e_z - mu * s_hat): tangential part / normal part == -mu * slip direction
    np.testing.assert_allclose(f[:, :2] / f[:, 2:], -mu * s_hat, atol=1e-12)
    assert (f[:, 2] > 0).all()
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0)
    assert not slide[:, 1:].any(), "a sliding point has one column only (no free tangential columns)"
    stick = cols[~sliding]
    pyramid = friction_pyramid(mu) / np.linalg.norm(friction_pyramid(mu), axis=1, keepdims=True)
    np.testing.assert_allclose(stick, np.broadcast_to(pyramid, stick.shape))


def test_kinetic_column_uses_the_given_friction_coefficient():
    f = analysis.kinetic_column(np.array([[2.0, 0.0]]), 0.4)[0]
    assert f[0] / f[2] == pytest.approx(-0.4)
    assert f[1] == 0.0


def test_contact_fit_reads_mu_from_the_mjcf():
    cw = compile_world("humanoid")
    m = cw.model
    assert cw.friction == pytest.approx(max(m.geom_friction[cw.floor_geom, 0], m.geom_friction[cw.robot_geoms, 0].max()))


def test_valid_humanoid_is_plausible_and_its_glide_is_not(valid_clips):
    cw = compile_world("humanoid")
    for shared in valid_clips["humanoid"]:
        clip = Clip(qpos=shared.qpos.copy(), fps=shared.fps, world="humanoid")  # own cache
        g = glide(clip)
        valid, glided = score_clips([clip, g], "humanoid")
        assert valid["plausible"], valid["violations"]
        assert not glided["plausible"]
        assert glided["terms"]["root_residual_bw"] > 0.25 > valid["terms"]["root_residual_bw"]
        # where the body lies on sliding points only, kinetic friction mu*N with N ~ its weight is a
        # horizontal force nothing propels against: the best fit leaves >= mu / sqrt(1 + mu^2) of the
        # support unexplained (N = W / (1 + mu^2)); allow half of that for the body's own motion
        ph, sol = analysis.analyze(g, cw), analysis.contact_solution(g, cw)
        active, sliding = analysis.contact_points(ph, cw)
        lying = active.any(axis=1) & (sliding | ~active).all(axis=1) & (np.abs(sol.support_need - 1.0) < 0.2)
        assert lying.sum() >= 5
        mu = cw.friction
        assert np.median(sol.root_residual[lying]) > 0.5 * mu / np.sqrt(1 + mu ** 2)


def test_gymnasium_humanoid_recording_and_its_glide():
    """A clip recorded from gymnasium's own Humanoid-v5 (66.7 fps, smoothed random actions)."""
    import gymnasium as gym

    env = gym.make("Humanoid-v5")
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    u = np.zeros(env.action_space.shape)
    frames = []
    for _ in range(1000):
        u = 0.85 * u + 0.15 * rng.uniform(-0.4, 0.4, u.shape)
        _, _, terminated, truncated, _ = env.step(u)
        frames.append(env.unwrapped.data.qpos.copy())
        if terminated or truncated:
            break
    clip = Clip(qpos=np.array(frames), fps=1.0 / env.unwrapped.dt, world="humanoid")
    env.close()
    valid, glided = score_clips([clip, glide(clip)], "humanoid")
    assert valid["plausible"], valid["violations"]
    assert not glided["plausible"]
