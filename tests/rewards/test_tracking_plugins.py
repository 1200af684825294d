"""Tracking reward plugins (one shared pass per clip) and `rlpf score --tracker`."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from rlpf.data import corrupt
from rlpf.cli import main
from rlpf.core.clips import save_clips
from rlpf.envs.worlds import compile_world
from rlpf.policies.pd_tracker import PDTracker
from rlpf.rewards import evaluate_rewards, get_reward, physics_terms
from rlpf.judge.scoring import ScoreConfig, score_clips, score_paths
from rlpf.judge.tracking import Tracker, TrackResult

TERMS = {"tracking_success": 1.0, "tracking_error_m": 0.0, "object_divergence_m": 0.0}


class CountingTracker(PDTracker):
    """A PD tracker that counts its simulations (spawned workers would hide them: use workers=1)."""

    calls = 0

    def track_one(self, clip):
        CountingTracker.calls += 1
        return super().track_one(clip)


class FixedTracker(Tracker):
    """Fails the clips whose source contains ``bad``: a stand-in for a second (learned) tracker."""

    name = "fixed"

    def __init__(self, bad: str = "levitate"):
        self.bad = bad

    def spec(self):
        return FixedTracker, {"bad": self.bad}

    def track_one(self, clip):
        err = np.full(clip.n_frames, 0.9 if self.bad in clip.source else 0.01)
        return TrackResult(clip.source, clip.qpos.copy(), err, np.zeros((clip.n_frames, 8)), False, False, 0.3)


@pytest.fixture(scope="module")
def ant_pair():
    from rlpf.data.motion_data import make_dataset

    clip = make_dataset("ant", 1, seed=23, frames=40, workers=1)[0]
    clip = dataclasses.replace(clip, source="valid_ant")
    return [clip, corrupt.levitate(clip)]


def fresh(clips):
    return [dataclasses.replace(c, cache={}) for c in clips]


def test_terms_registered_not_physics():
    for name in TERMS:
        assert get_reward(name).name == name
        assert name not in physics_terms()
    assert get_reward("object_divergence_m").threshold == pytest.approx(0.05)


def test_plugins_share_one_tracking_pass(ant_pair):
    clips = fresh(ant_pair)
    CountingTracker.calls = 0
    tracker = CountingTracker("ant")
    table = evaluate_rewards(clips, TERMS, world=compile_world("ant"), tracker=tracker, tracker_workers=1)
    assert CountingTracker.calls == 2                                  # three terms, one simulation per clip
    assert table.terms["tracking_success"] == [1.0, 0.0]
    assert table.terms["object_divergence_m"] == [None, None]          # the ant has no objects
    err = table.terms["tracking_error_m"]
    assert err[0] < 0.05 < err[1]
    assert table.total == [1.0, 0.0]
    evaluate_rewards(clips, {"tracking_success": 1.0}, world="ant", tracker=tracker, tracker_workers=1)
    assert CountingTracker.calls == 2                                  # cached on the clips


def test_default_and_named_tracker(ant_pair):
    a = evaluate_rewards(fresh(ant_pair), {"tracking_success": 1.0}, world="ant")
    b = evaluate_rewards(fresh(ant_pair), {"tracking_success": 1.0}, world="ant", tracker="pd")
    assert a.terms == b.terms == {"tracking_success": [1.0, 0.0]}


def test_wrong_world_tracker_is_a_plugin_error(ant_pair):
    table = evaluate_rewards(fresh(ant_pair)[:1], {"tracking_success": 1.0}, world="ant", tracker=PDTracker("humanoid"))
    assert "world" in table.errors[0]


def test_object_divergence_for_the_pusher(valid_clips):
    clip = valid_clips["pusher"][0]
    clips = [dataclasses.replace(clip, cache={}), corrupt.move_object(clip, 0.3)]
    table = evaluate_rewards(clips, TERMS, world="pusher", tracker_workers=1)
    ok, moved = table.terms["object_divergence_m"]
    assert ok < 0.01 and moved > 0.25


def test_score_clips_with_tracker_marks_failed_tracks(ant_pair):
    entries = score_clips(fresh(ant_pair), "ant", ScoreConfig(trackers=["pd"], tracker_workers=1))
    valid, levitated = entries
    assert valid["terms"]["tracking_success"] == 1.0 and valid["plausible"]
    assert levitated["terms"]["tracking_success"] == 0.0 and "tracking_success" in levitated["violations"]
    assert not levitated["plausible"]
    assert "object_divergence_m" not in valid["terms"]
    # reported, not scored: the physics score is the same as without the tracker
    plain = score_clips(fresh(ant_pair), "ant", ScoreConfig())
    assert [e["score"] for e in entries] == [e["score"] for e in plain]


def test_score_paths_compares_trackers(ant_pair, tmp_path, monkeypatch):
    import rlpf.judge.scoring as scoring

    for c in ant_pair:
        save_clips(str(tmp_path / f"{c.source.replace('+', '_')}.npz"), c)
    real = scoring.load_tracker
    monkeypatch.setattr(scoring, "load_tracker", lambda spec, world: FixedTracker() if spec == "fixed" else real(spec, world))
    monkeypatch.setattr(scoring, "check_tracker_spec", lambda spec: None)
    report = score_paths([str(tmp_path)], ScoreConfig(world="ant", trackers=["pd", "fixed"], tracker_workers=1))
    s = report["summary"]
    assert s["tracking_success_rate"] == 0.5
    assert set(s["trackers"]) == {"pd", "fixed"} and s["trackers"]["fixed"]["success_rate"] == 0.5
    assert s["tracker_agreement"]["pd vs fixed"]["rate"] == 1.0
    for clip in report["clips"]:
        assert set(clip["tracking"]) == {"pd", "fixed"}
        assert clip["tracking"]["pd"]["success"] == (clip["terms"]["tracking_success"] == 1.0)


@pytest.fixture(scope="module")
def clip_files(ant_pair, tmp_path_factory):
    d = tmp_path_factory.mktemp("track_clips")
    paths = []
    for name, c in zip(("valid", "levitated"), ant_pair):
        paths.append(save_clips(str(d / f"{name}.npz"), c))
    return paths


def test_cli_score_tracker_pd(clip_files, tmp_path, capsys):
    out = tmp_path / "report.json"
    rc = main(["score", *clip_files, "--tracker", "pd", "--out", str(out), "--quiet", "tracker_workers=2"])
    assert rc == 0
    report = json.loads(out.read_text())
    by_name = {c["source"].rsplit("/", 1)[-1]: c for c in report["clips"]}
    for c in by_name.values():
        assert {"tracking_success", "tracking_error_m"} <= set(c["terms"])
    assert by_name["valid.npz"]["terms"]["tracking_success"] == 1.0 and by_name["valid.npz"]["plausible"]
    assert by_name["levitated.npz"]["terms"]["tracking_success"] == 0.0
    assert not by_name["levitated.npz"]["plausible"]
    s = report["summary"]
    assert s["tracking_success_rate"] == 0.5 and s["trackers"]["pd"]["n_clips"] == 2
    assert s["weights"]["tracking_success"] == 0.0
    assert capsys.readouterr().out == ""


def test_cli_score_table_mentions_tracker(clip_files, capsys):
    assert main(["score", clip_files[0], "--tracker", "pd"]) == 0
    out = capsys.readouterr().out
    assert "tracked" in out and "tracker pd: 100% tracked" in out


@pytest.mark.parametrize("value", ["nonsense", "runs/definitely-missing-tracker"])
def test_cli_bad_tracker_exits_2(clip_files, value, capsys):
    assert main(["score", clip_files[0], "--tracker", value]) == 2
    err = capsys.readouterr().err
    assert "unknown tracker" in err and "pd" in err
