"""Built-in worlds match gymnasium's models; any MJCF file works as a world; worlds declare every
per-robot fact; the world and tracker registries (by name, by entry point, across worker processes)."""
import dataclasses

import mujoco
import numpy as np
import pytest

from rlpf.data import corrupt
from rlpf.core.clips import Clip
from rlpf.envs.worlds import (
    BUILTIN_WORLDS,
    UnknownWorldError,
    World,
    WorldRegistryError,
    compile_world,
    get_world,
    portable_world,
    register_world,
    registered_worlds,
    unregister_world,
)
from rlpf.policies.pd_tracker import PDTracker
from rlpf.judge.scoring import ScoreConfig, score_clips

ROBOT = """
<mujoco>
  <option timestep="0.005"/>
  <worldbody>
    <geom name="ground" type="plane" size="5 5 0.1"/>
    <body name="bot" pos="0 0 0.3">
      <freejoint name="base"/>
      <geom type="box" size="0.15 0.1 0.05" mass="2"/>
      <body name="leg" pos="0.15 0 0">
        <joint name="knee" type="hinge" axis="0 1 0" range="-1 1" damping="0.5"/>
        <geom name="shin" type="capsule" fromto="0 0 0 0 0 -0.2" size="0.03" mass="0.3"/>
      </body>
    </body>
    <body name="crate" pos="0.8 0 0.06">
      <joint name="crate_x" type="slide" axis="1 0 0" damping="2"/>
      <geom type="box" size="0.06 0.06 0.06" mass="0.5"/>
    </body>
  </worldbody>
  <actuator><motor joint="knee" gear="5" ctrlrange="-1 1"/></actuator>
</mujoco>
"""


@pytest.mark.parametrize("name,gym_id", [("ant", "Ant-v5"), ("humanoid", "Humanoid-v5"), ("pusher", "Pusher-v5")])
def test_builtin_worlds_are_gymnasium_models(name, gym_id):
    import gymnasium as gym

    env = gym.make(gym_id)
    m = env.unwrapped.model
    cw = compile_world(name)
    assert cw.nq == m.nq and cw.model.nv == m.nv and cw.model.nu == m.nu
    assert np.allclose(cw.model.qpos0, m.qpos0)
    assert BUILTIN_WORLDS[name].fps == pytest.approx(1.0 / env.unwrapped.dt)
    env.close()


def test_mjcf_path_is_a_world(tmp_path):
    xml = tmp_path / "bot.xml"
    xml.write_text(ROBOT)
    w = get_world(str(xml))
    assert (w.floor, w.root_joint, w.objects) == ("ground", "base", ("crate",))
    assert w.feet == ("shin",)
    cw = compile_world(w)
    assert cw.floating and len(cw.object_dofs) == 1 and len(cw.actuated_dofs) == 1

    # drop the robot and let it settle: valid by construction
    m = cw.model
    d = mujoco.MjData(m)
    frames = []
    for t in range(120):
        frames.append(d.qpos.copy())
        d.ctrl[:] = 0.3 * np.sin(t / 10)
        for _ in range(6):
            mujoco.mj_step(m, d)
    clip = Clip(qpos=np.array(frames), fps=1 / (6 * m.opt.timestep), world=str(xml))
    good = score_clips([clip], w, ScoreConfig())[0]
    assert good["plausible"], good
    bad = corrupt.float_up(clip, 0.15)
    assert not score_clips([bad], w, ScoreConfig())[0]["plausible"]
    moved = corrupt.move_object(clip, 0.4)
    assert "object_unexplained_mps" in score_clips([moved], w, ScoreConfig())[0]["violations"]


# ---------------------------------------------------------------- per-world facts live in the declaration


def test_builtin_worlds_declare_their_facts():
    from rlpf.data.motion_data import ANT_DATA, PROMPTS, PUSHER_DATA, data_source
    from rlpf.policies.pd_tracker import DEFAULT_GAINS, world_gains
    from rlpf.judge.tracking import DEFAULT_THRESHOLD_M, fall_drop_m, success_threshold

    ant, humanoid, pusher = (BUILTIN_WORLDS[n] for n in ("ant", "humanoid", "pusher"))
    assert (ant.success_threshold_m, ant.fall_drop_m, ant.pd_gains) == (0.3, 0.2, (900.0, 60.0))
    assert (humanoid.success_threshold_m, humanoid.fall_drop_m, humanoid.pd_gains) == (0.5, 0.35, (6400.0, 160.0))
    assert (pusher.success_threshold_m, pusher.fall_drop_m, pusher.pd_gains) == (0.3, None, (900.0, 60.0))
    assert data_source("ant") is ANT_DATA and data_source("pusher") is PUSHER_DATA and data_source("humanoid") is None
    assert [w for w in sorted(PROMPTS) if not w.startswith("metaworld/")] == ["ant", "pusher"]
    assert PROMPTS["pusher"] == PUSHER_DATA.prompts
    assert ANT_DATA.artifact_kinds == ("float", "sink", "skate", "jitter")
    # a declaration without the facts gets the model-derived defaults
    bare = World(name="t_bare", xml="ant.xml")
    assert success_threshold(bare) == DEFAULT_THRESHOLD_M == 0.5 and world_gains(bare) == DEFAULT_GAINS
    m = compile_world(bare).model
    assert fall_drop_m(bare, m) == 0.25 * m.qpos0[2] and fall_drop_m(bare) == 0.0
    assert success_threshold("not-a-world") == 0.5


# ---------------------------------------------------------------- the world registry


@pytest.fixture
def bot_xml(tmp_path):
    xml = tmp_path / "bot.xml"
    xml.write_text(ROBOT)
    return str(xml)


@pytest.fixture
def worlds():
    """Register test worlds; every one is unregistered afterwards."""
    names: list[str] = []

    def add(name, world, **kw):
        names.append(name)
        return register_world(name, world, **kw)

    yield add
    for n in names:
        unregister_world(n)


def bot_world(xml, name="t_bot", **kw):
    # 5 steps of 0.005 s per frame: 40 fps
    facts = dict(floor="ground", root_joint="base", feet=("shin",), objects=("crate",), fps=40.0,
                 success_threshold_m=0.25, fall_drop_m=0.1, pd_gains=(400.0, 40.0))
    return World(name=name, xml=xml, **{**facts, **kw})


def test_register_world_duplicate_replace_unknown(bot_xml, worlds):
    import rlpf

    w = worlds("t_bot", rlpf.World(name="t_bot", xml=bot_xml, floor="ground", root_joint="base"))  # lazy top-level names
    assert rlpf.register_world is register_world and get_world("t_bot") is w
    assert "t_bot" in registered_worlds() and compile_world("t_bot").floating
    with pytest.raises(WorldRegistryError, match="'t_bot' is already registered.*replace=True"):
        register_world("t_bot", bot_world(bot_xml))
    with pytest.raises(WorldRegistryError, match="'ant' is already registered"):
        register_world("ant", dataclasses.replace(BUILTIN_WORLDS["ant"], fps=10.0))
    assert get_world("t_bot") is w  # a refused registration changes nothing
    better = worlds("t_bot", bot_world(bot_xml), replace=True)
    assert get_world("t_bot") is better and better.pd_gains == (400.0, 40.0)
    inferred = worlds("t_inferred", bot_xml)  # an MJCF path is declared by inference, under the given name
    assert inferred.name == "t_inferred" and inferred.objects == ("crate",)
    with pytest.raises(UnknownWorldError) as e:
        get_world("t_nope")
    assert "t_nope" in str(e.value) and all(n in str(e.value) for n in ("ant", "humanoid", "pusher", "t_bot", "t_inferred"))


def test_unregister_brings_a_replaced_builtin_back(worlds):
    slow = worlds("ant", dataclasses.replace(BUILTIN_WORLDS["ant"], pd_gains=(100.0, 20.0)), replace=True)
    assert get_world("ant") is slow and portable_world("ant") is slow  # no longer the built-in: ship the World
    unregister_world("ant")
    assert get_world("ant") is BUILTIN_WORLDS["ant"] and portable_world("ant") == "ant"


@pytest.mark.parametrize("name,facts,fragment", [
    ("", {}, "bad world name"),
    ("t.xml", {}, "bad world name"),
    ("pkg:bot", {}, "bad world name"),
    ("t_other", dict(name="t_named"), "named 't_named'"),
    ("t_bot", dict(fall_drop_m=-1.0), "fall_drop_m must be"),
    ("t_bot", dict(success_threshold_m=float("nan")), "success_threshold_m must be"),
    ("t_bot", dict(pd_gains=(1.0,)), "pd_gains must be"),
    ("t_bot", dict(data="no_colon"), "not a 'module:name'"),
    ("t_bot", dict(feet=("no_such_geom",)), "no geom named 'no_such_geom'"),
])
def test_register_world_refuses_bad_declarations(bot_xml, name, facts, fragment):
    facts = dict(facts)
    with pytest.raises(WorldRegistryError, match=fragment):
        register_world(name, bot_world(bot_xml, name=facts.pop("name", name), **facts))
    assert name not in registered_worlds()


def test_register_world_refuses_what_is_not_a_world():
    with pytest.raises(WorldRegistryError, match="neither a World nor an MJCF file"):
        register_world("t_bot", "missing.xml")
    with pytest.raises(WorldRegistryError, match="expected a World or an MJCF path, got dict"):
        register_world("t_bot", {"xml": "ant.xml"})
    assert "t_bot" not in registered_worlds()


def _bot_clips(world_name, n=3, frames=40):
    from rlpf.policies.scripted import SmoothRandom
    from rlpf.data.simulate import simulate

    return [simulate(world_name, SmoothRandom(0.4), frames, seed=s) for s in range(n)]


def test_registered_world_scores_and_tracks_in_two_workers(bot_xml, worlds, tmp_path, capsys):
    """A world registered in this process, named by the clips' ``world`` field, scored by the CLI and
    tracked by ``--tracker pd`` in 2 worker processes (which never saw the registration)."""
    import json

    from rlpf.cli import main
    from rlpf.core.clips import load_clips, save_clips
    from rlpf.policies.pd_tracker import PDTracker

    worlds("t_bot", bot_world(bot_xml))
    clips = _bot_clips("t_bot")
    clip_dir = tmp_path / "clips"
    for i, c in enumerate(clips):
        save_clips(str(clip_dir / f"bot_{i}.npz"), c)
    assert {c.world for p in sorted(clip_dir.iterdir()) for c in load_clips(str(p))} == {"t_bot"}
    out = tmp_path / "report.json"
    rc = main(["score", str(clip_dir), "--tracker", "pd", "tracker_workers=2", "--quiet", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, report["errors"]
    assert report["world"] == "t_bot" and len(report["clips"]) == 3 and not report["errors"]
    # the workers tracked with the registered declaration: the same results as this process
    tracker = PDTracker("t_bot")
    assert (tracker.kp, tracker.kd, tracker.threshold_m, tracker.fall_drop_m) == (400.0, 40.0, 0.25, 0.1)
    assert tracker.spec()[1]["world"] == get_world("t_bot")  # a World, not a name the workers cannot resolve
    loaded = [c for p in sorted(clip_dir.glob("*.npz")) for c in load_clips(str(p))]
    serial = {c.source: tracker.track_one(c) for c in loaded}
    for entry in report["clips"]:
        r = serial[entry["source"]]
        assert not r.diverged, r.info
        got = entry["tracking"]["pd"]
        assert (got["success"], got["fell"], got["diverged"]) == (r.success, r.fell, False)
        assert got["max_error_m"] == pytest.approx(float(r.body_error_m.max()), abs=1e-4)
    # ... exactly what tracking in this process gives through the same command
    one = tmp_path / "one_worker.json"
    assert main(["score", str(clip_dir), "--tracker", "pd", "tracker_workers=1", "--quiet", "--out", str(one)]) == 0
    assert [c["tracking"] for c in json.loads(one.read_text())["clips"]] == [c["tracking"] for c in report["clips"]]
    parallel = tracker.track(loaded * 2, workers=2)
    assert all(not r.diverged for r in parallel)

    # and from a YAML config (world: t_bot), and rlpf simulate
    cfg = tmp_path / "score.yaml"
    cfg.write_text("world: t_bot\n")
    assert main(["score", str(clip_dir / "bot_0.npz"), "--config", str(cfg), "--quiet", "--out", str(tmp_path / "r2.json")]) == 0
    assert json.loads((tmp_path / "r2.json").read_text())["world"] == "t_bot"
    assert main(["simulate", "--world", "t_bot", "--n", "1", "--frames", "12", "--out", str(tmp_path / "sim")]) == 0
    assert load_clips(str(tmp_path / "sim" / "t_bot_000.npz"))[0].world == "t_bot"
    # no data source declared: rlpf data says which worlds have one
    assert main(["data", "--world", "t_bot", "--n", "2", "--out", str(tmp_path / "data")]) == 2
    assert "motion data exists for ['ant', 'metaworld/" in capsys.readouterr().err


def test_registered_world_with_a_data_source_generates_in_two_workers(worlds):
    """A registered world brings its data source (here the ant's, by import path) to make_dataset's workers."""
    from rlpf.data.motion_data import PROMPTS, make_dataset

    worlds("t_ant", dataclasses.replace(BUILTIN_WORLDS["ant"], name="t_ant"))
    assert "t_ant" in PROMPTS and PROMPTS["t_ant"] == PROMPTS["ant"]
    mine = make_dataset("t_ant", 2, seed=5, frames=16, workers=2)
    theirs = make_dataset("ant", 2, seed=5, frames=16, workers=1)
    assert [c.world for c in mine] == ["t_ant", "t_ant"] and [c.prompt for c in mine] == [c.prompt for c in theirs]
    for a, b in zip(mine, theirs):
        np.testing.assert_array_equal(a.qpos, b.qpos)


# ---------------------------------------------------------------- entry points (a real installed distribution)


from test_registry import _fake_distribution  # noqa: E402 - one fake installed distribution for both registries


@pytest.fixture
def forget_modules():
    import sys

    names: list[str] = []
    yield names.append
    for n in names:
        sys.modules.pop(n, None)


def test_entry_point_worlds_and_trackers(tmp_path, monkeypatch, forget_modules):
    import importlib.metadata
    import sys

    from rlpf.policies.pd_tracker import PDTracker
    from rlpf.judge.tracking import TrackerError, load_tracker, registered_trackers, unregister_tracker

    (tmp_path / "epbot.xml").write_text(ROBOT)
    _fake_distribution(
        tmp_path, "fakebots",
        "[rlpf.worlds]\nt_epbot = fakebots_mod:WORLD\nt_epbroken = fakebots_broken:WORLD\n"
        "[rlpf.trackers]\nt_eptracker = fakebots_mod:soft_pd\nt_epbad = fakebots_mod:NOT_CALLABLE\n",
        {"fakebots_mod": f'''
            import os
            from rlpf.envs.worlds import World
            from rlpf.policies.pd_tracker import PDTracker

            WORLD = World(name="t_epbot", xml={str(tmp_path / "epbot.xml")!r}, floor="ground", root_joint="base",
                          feet=("shin",), objects=("crate",), fps=40.0, success_threshold_m=0.2)
            NOT_CALLABLE = 3

            def soft_pd(world):
                """a softer PD tracker"""
                return PDTracker(world, kp=100.0, kd=20.0)
        ''', "fakebots_broken": 'raise ImportError("broken on purpose: needs libbot")\n'},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_modules("fakebots_mod")
    forget_modules("fakebots_broken")
    assert {"t_epbot", "t_epbroken"} <= {ep.name for ep in importlib.metadata.entry_points(group="rlpf.worlds")}
    assert "fakebots_mod" not in sys.modules  # looked up lazily, on a registry miss
    try:
        assert "t_epbot" not in registered_worlds()
        w = get_world("t_epbot")
        assert w.success_threshold_m == 0.2 and "t_epbot" in registered_worlds()
        with pytest.warns(UserWarning, match="t_epbroken"):
            with pytest.raises(UnknownWorldError, match="needs libbot"):
                get_world("t_epbroken")
        assert get_world("ant") is BUILTIN_WORLDS["ant"]  # the rest keep working

        tracker = load_tracker("t_eptracker", "t_epbot")
        assert isinstance(tracker, PDTracker) and (tracker.kp, tracker.threshold_m) == (100.0, 0.2)
        assert registered_trackers()["t_eptracker"] == "a softer PD tracker"
        with pytest.warns(UserWarning, match="t_epbad"):
            with pytest.raises(TrackerError, match="not callable"):
                load_tracker("t_epbad", "ant")
    finally:
        unregister_world("t_epbot")
        unregister_tracker("t_eptracker")


def test_entry_point_lookup_with_given_entry_points(bot_xml):
    """The lookup functions take the entry points to search (importlib.metadata.EntryPoint objects)."""
    from importlib.metadata import EntryPoint

    from rlpf.envs.worlds import _from_entry_point
    from rlpf.judge.tracking import _tracker_factory, unregister_tracker

    eps = [EntryPoint(name="t_ant_alias", value="rlpf.envs.worlds:BUILTIN_WORLDS", group="rlpf.worlds")]
    with pytest.warns(UserWarning, match="not an rlpf World"):
        with pytest.raises(UnknownWorldError, match="t_ant_alias"):
            _from_entry_point("t_ant_alias", eps)
    assert _from_entry_point("t_other", eps) is None
    eps = [EntryPoint(name="t_pd_alias", value="rlpf.policies.pd_tracker:PDTracker", group="rlpf.trackers")]
    try:
        assert _tracker_factory("t_pd_alias", eps).__name__ == "PDTracker"  # a Tracker class is a factory
    finally:
        unregister_tracker("t_pd_alias")


# ---------------------------------------------------------------- the tracker registry


class SoftPD(PDTracker):
    """A PD tracker with soft gains, registered by name (importable here, so workers can rebuild it)."""

    name = "t_soft"

    def __init__(self, world, **kw):
        super().__init__(world, **{"kp": 100.0, "kd": 20.0, **kw})

    def spec(self):
        cls, kwargs = super().spec()
        return SoftPD, kwargs


def test_custom_tracker_registered_by_name(valid_clips, tmp_path):
    import json

    from rlpf.cli import main
    from rlpf.core.clips import save_clips
    from rlpf.judge.tracking import TrackerError, check_tracker_spec, load_tracker, register_tracker, unregister_tracker

    register_tracker("t_soft", SoftPD)
    try:
        with pytest.raises(TrackerError, match="'t_soft' is already registered.*replace=True"):
            register_tracker("t_soft", PDTracker)
        with pytest.raises(TrackerError, match="'pd' is already registered"):
            register_tracker("pd", SoftPD)
        with pytest.raises(TrackerError, match="not callable"):
            register_tracker("t_x", 3)
        with pytest.raises(TrackerError) as e:
            check_tracker_spec("t_nope")
        assert all(f"'{n}'" in str(e.value) for n in ("pd", "learned", "t_soft"))
        tracker = load_tracker("t_soft", "ant")
        assert isinstance(tracker, SoftPD) and tracker.kp == 100.0
        clips = valid_clips["ant"]
        serial = [tracker.track_one(c) for c in clips]
        parallel = tracker.track(clips, workers=2)
        for a, b in zip(serial, parallel):
            np.testing.assert_array_equal(a.qpos, b.qpos)
        for i, c in enumerate(clips):
            save_clips(str(tmp_path / "clips" / f"ant_{i}.npz"), c)
        out = tmp_path / "report.json"
        assert main(["score", str(tmp_path / "clips"), "--tracker", "t_soft", "--tracker", "pd",
                     "tracker_workers=2", "--quiet", "--out", str(out)]) in (0, 1)
        report = json.loads(out.read_text())
        assert all(set(c["tracking"]) == {"t_soft", "pd"} for c in report["clips"])
        register_tracker("t_soft", lambda world: PDTracker(world, kp=50.0), replace=True)
        assert load_tracker("t_soft", "ant").kp == 50.0
        register_tracker("t_bad", lambda world: "not a tracker")
        with pytest.raises(TrackerError, match="returned str"):
            load_tracker("t_bad", "ant")
    finally:
        unregister_tracker("t_soft")
        unregister_tracker("t_bad")
    unregister_tracker("pd")  # a built-in comes back
    assert isinstance(load_tracker("pd", "ant"), PDTracker) and not isinstance(load_tracker("pd", "ant"), SoftPD)


def test_import_rlpf_stays_light():
    import subprocess
    import sys

    code = ("import sys, rlpf; heavy = [m for m in ('mujoco', 'torch', 'trl') if m in sys.modules]; "
            "assert not heavy, heavy; w = rlpf.World; assert 'mujoco' in sys.modules; print('LIGHT')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "LIGHT" in r.stdout, r.stderr


def test_compile_world_is_built_once_and_load_model_edits_only_a_copy():
    """compile_world is cached per process (every tracker and scorer shares one model); load_model
    with an edit compiles a new model and leaves the cached one alone."""
    from rlpf.envs.worlds import compile_world, get_world, load_model

    cw = compile_world("ant")
    assert compile_world("ant") is cw
    ngeom = cw.model.ngeom

    def edit(spec):
        g = spec.body("torso").add_geom()
        g.name, g.size = "extra", [0.05, 0, 0]

    m = load_model(get_world("ant"), edit)
    assert m.ngeom == ngeom + 1 and m is not cw.model and cw.model.ngeom == ngeom
