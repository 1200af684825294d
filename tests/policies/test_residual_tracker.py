"""The residual-force tracker: valid motion under another contact model tracks, floating motion pays
for the residual it needs and fails, the residual is reported, bad inputs get clear errors."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest

from rlpf.core.clips import Clip
from rlpf.data import corrupt
from rlpf.envs.worlds import gymnasium_asset
from rlpf.judge.tracking import TrackerError, load_tracker
from rlpf.policies.residual_tracker import (RESIDUAL_LIMIT_BW, ResidualTracker, ResidualTrackResult,
                                            windowed_peak)


def changed_contact_clip(seed: int, fps: float = 30.0, seconds: float = 2.0) -> Clip:
    """Gymnasium's humanoid.xml with stiffer contacts (solref 6 ms, default 20 ms), friction x1.5 and
    another timestep, under smoothed random actions (it falls): valid motion the tracker's nominal
    model did not make."""
    m = mujoco.MjModel.from_xml_path(gymnasium_asset("humanoid.xml"))
    m.geom_solref[:, 0] = 0.006
    m.geom_friction[:, 0] *= 1.5
    steps = 14
    m.opt.timestep = 1.0 / (fps * steps)      # 2.4 ms (the model's: 3 ms)
    d = mujoco.MjData(m)
    rng = np.random.default_rng(seed)
    d.qpos[:] = m.qpos0 + rng.uniform(-0.01, 0.01, m.nq)
    mujoco.mj_forward(m, d)
    u = np.zeros(m.nu)
    frames = []
    for _ in range(int(seconds * fps) + 1):
        frames.append(d.qpos.copy())
        u = 0.85 * u + 0.15 * rng.uniform(-0.4, 0.4, m.nu) * 0.6
        d.ctrl[:] = u
        for _ in range(steps):
            mujoco.mj_step(m, d)
    return Clip(qpos=np.array(frames), fps=fps, world="humanoid", source=f"stiff-contact:{seed}")


@pytest.fixture(scope="module")
def tracker():
    return ResidualTracker("humanoid")


@pytest.fixture(scope="module")
def clips():
    return [changed_contact_clip(seed) for seed in (3, 4)]


def test_valid_clip_under_changed_contacts_tracks_and_reports_residual(tracker, clips):
    for clip in clips:
        r = tracker.track_one(clip)
        assert isinstance(r, ResidualTrackResult)
        assert r.success, (clip.source, np.nanmax(r.body_error_m), r.fell, r.info)
        assert r.residual_bw.shape == (clip.n_frames, 6) and np.isfinite(r.residual_bw).all()
        info = r.info
        assert info["tracker"] == "pd-residual"
        assert 0 <= info["residual_peak_bw"] <= info["residual_limit_bw"] == RESIDUAL_LIMIT_BW
        assert info["residual_window_s"] == 0.5 and info["residual_failed"] is False
        assert info["residual_peak_bw"] == pytest.approx(windowed_peak(r.residual_bw, clip.fps, 0.5))
        assert info["residual_mean_bw"] > 0          # something was needed: the contact model differs


@pytest.mark.parametrize("kind", ["hover", "levitate", "skate"])
def test_floating_and_sliding_motion_fails_on_its_residual(tracker, clips, kind):
    # hover: the whole clip 0.5 m up (a +10 cm float sags onto the floor at ~0.3 BW, under the limit:
    # small floats are the kinematic float term's, as for pd)
    make = (lambda c: corrupt.float_up(c, 0.5)) if kind == "hover" else corrupt.CORRUPTIONS[kind]
    for clip in clips:
        r = tracker.track_one(make(clip))
        assert not r.success, (kind, clip.source)
        # the residual it needed is charged: hovering / sliding against friction takes ~1 body weight
        assert r.info["residual_peak_bw"] > RESIDUAL_LIMIT_BW or r.fell, (kind, r.info["residual_peak_bw"])


def test_windowed_peak_is_a_net_impulse():
    fps = 10.0
    steady = np.tile([0.0, 0.0, 0.3, 0.0, 0.0, 0.0], (20, 1))
    assert windowed_peak(steady, fps, 0.5) == pytest.approx(0.3)
    back_and_forth = np.zeros((20, 6))
    back_and_forth[:, 0] = np.where(np.arange(20) % 2, 1.0, -1.0)   # +-1 BW every frame: cancels
    assert windowed_peak(back_and_forth, fps, 0.5) == pytest.approx(1.0 / 5)   # 5-frame windows: one left over
    assert windowed_peak(back_and_forth, fps, 0.4) == pytest.approx(0.0)
    assert windowed_peak(steady[:3], fps, 0.5) == pytest.approx(0.3)             # shorter than the window
    bad = steady.copy()
    bad[4, 2] = np.nan
    assert windowed_peak(bad, fps, 0.5) == np.inf


def test_by_name_and_in_worker_processes(clips):
    tr = load_tracker("pd-residual", "humanoid")
    assert isinstance(tr, ResidualTracker)
    cls, kwargs = tr.spec()
    assert cls is ResidualTracker and cls(**kwargs).spec() == (cls, kwargs)
    out = tr.track(clips, workers=2)
    assert [type(r) for r in out] == [ResidualTrackResult] * 2
    assert [r.success for r in out] == [tr.track_one(c).success for c in clips]


def test_bad_inputs_get_clear_errors(tracker):
    with pytest.raises(TrackerError, match="'pusher' has no floating root"):
        ResidualTracker("pusher")
    with pytest.raises(TrackerError, match="limit_bw must be a finite number > 0"):
        ResidualTracker("humanoid", limit_bw=0.0)
    with pytest.raises(TrackerError, match="window_s must be a finite number > 0"):
        ResidualTracker("humanoid", window_s=float("nan"))
    with pytest.raises(TrackerError, match="kp_root must be a finite number >= 0"):
        ResidualTracker("humanoid", kp_root=-1.0, kd_root=1.0)
    # a malformed clip is a failed track, never an exception
    bad = Clip(qpos=np.full((10, tracker.cw.model.nq), np.nan), fps=30.0, world="humanoid", source="nan")
    r = tracker.track_one(bad)
    assert not r.success and r.diverged and "not a finite" in r.info["why"]
    assert r.info["tracker"] == "pd-residual"
