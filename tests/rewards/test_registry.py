"""The reward plugin registry: the three ways to find a plugin, output checks and evaluate_rewards."""
from __future__ import annotations

import importlib.metadata
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rlpf.rewards as rewards_pkg
from rlpf.core.clips import Clip
from rlpf.envs.worlds import compile_world
from rlpf.rewards.registry import (
    ENTRY_POINT_GROUP,
    RewardError,
    RewardInfo,
    call_reward,
    evaluate_rewards,
    get_reward,
    per_clip,
    register,
    registered,
    unregister,
)


@pytest.fixture
def plugins():
    """Register test plugins by name; every one is unregistered afterwards."""
    names: list[str] = []

    def add(name, fn, **kw):
        register(name, **kw)(fn)
        names.append(name)
        return get_reward(name)

    yield add
    for n in names:
        unregister(n)


def _clips(n, prompts=None):
    prompts = prompts or [f"p{i}" for i in range(n)]
    return [Clip(qpos=np.zeros((3, 15)), fps=20.0, prompt=prompts[i], source=f"clip{i}") for i in range(n)]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _fake_distribution(root, dist, entry_points: str, modules: dict[str, str]):
    """A real installed-distribution layout (``dist-0.1.dist-info``) that importlib.metadata finds on sys.path."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    for mod, src in modules.items():
        _write(root / f"{mod}.py", src)


@pytest.fixture
def forget_modules():
    """Drop modules a test imported from its tmp_path, so no later test sees them."""
    names: list[str] = []
    yield names.append
    for n in names:
        for key in [k for k in sys.modules if k == n or k.startswith(n + ".")]:
            del sys.modules[key]


# ---------------------------------------------------------------- built-ins


def test_builtin_physics_terms_registered():
    reg = registered()
    for name in ("penetration_m", "float_m", "skate_mps", "root_residual_bw", "root_impulse_bws",
                 "joint_limit_rad", "torque_excess", "object_unexplained_mps"):
        assert name in reg, name
        assert reg[name].physics
        assert reg[name].threshold is not None and reg[name].threshold > 0
    assert rewards_pkg.get_reward is get_reward  # the package re-exports the registry API


# ---------------------------------------------------------------- (a) the decorator


def test_register_decorator_then_get_reward():
    @register("t_deco_reward", threshold=0.3, unit="m")
    def my_reward(clips, **kwargs):
        """Constant test reward.

        More text that is not the summary."""
        return [0.25] * len(clips)

    try:
        info = get_reward("t_deco_reward")
        assert isinstance(info, RewardInfo)
        assert info.name == "t_deco_reward"
        assert info.fn is my_reward  # the decorator returns the function unchanged
        assert info.threshold == 0.3 and info.unit == "m" and not info.physics
        assert info.doc == "Constant test reward."
        assert "t_deco_reward" in registered()
        assert call_reward(info, _clips(2)) == [0.25, 0.25]
    finally:
        unregister("t_deco_reward")
    assert "t_deco_reward" not in registered()
    with pytest.raises(RewardError, match="t_deco_reward") as ei:
        get_reward("t_deco_reward")
    assert "no such reward" in str(ei.value)
    assert ei.value.name == "t_deco_reward"


def test_register_default_name_is_function_name():
    @register()
    def t_default_named(clips, **kwargs):
        return [1.0] * len(clips)

    try:
        assert get_reward("t_default_named").fn is t_default_named
    finally:
        unregister("t_default_named")


def test_unknown_reward_message_lists_options():
    with pytest.raises(RewardError) as ei:
        get_reward("t_definitely_missing")
    msg = str(ei.value)
    assert "'t_definitely_missing'" in msg
    assert "skate_mps" in msg  # registered names are listed
    assert ENTRY_POINT_GROUP in msg


# ---------------------------------------------------------------- (b) a dotted path


def test_dotted_path(tmp_path, monkeypatch, forget_modules):
    _write(tmp_path / "rlpf_t_dotpkg" / "__init__.py", "")
    _write(tmp_path / "rlpf_t_dotpkg" / "mod.py", '''
        def reward(clips, **kwargs):
            """Two per clip."""
            return [2.0 for _ in clips]

        class Holder:
            @staticmethod
            def nested(clips, **kwargs):
                return [3.0 for _ in clips]

        NOT_CALLABLE = 42
    ''')
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_modules("rlpf_t_dotpkg")

    info = get_reward("rlpf_t_dotpkg.mod:reward")
    import rlpf_t_dotpkg.mod as mod

    assert info.fn is mod.reward
    assert info.name == "rlpf_t_dotpkg.mod:reward"
    assert info.doc == "Two per clip."
    assert call_reward(info, _clips(3)) == [2.0, 2.0, 2.0]

    nested = get_reward("rlpf_t_dotpkg.mod:Holder.nested")
    assert call_reward(nested, _clips(1)) == [3.0]

    with pytest.raises(RewardError, match="has no attribute") as ei:
        get_reward("rlpf_t_dotpkg.mod:missing")
    assert "rlpf_t_dotpkg.mod:missing" in str(ei.value)
    with pytest.raises(RewardError, match="not callable"):
        get_reward("rlpf_t_dotpkg.mod:NOT_CALLABLE")
    with pytest.raises(RewardError, match="cannot import module") as ei:
        get_reward("rlpf_t_no_such_pkg.mod:reward")
    assert "rlpf_t_no_such_pkg" in str(ei.value)


def test_dotted_path_to_self_registering_object_keeps_its_metadata(tmp_path, monkeypatch, forget_modules):
    _write(tmp_path / "rlpf_t_selfreg.py", '''
        from rlpf.rewards import register

        @register("t_selfreg_name", threshold=0.7, unit="m/s")
        def reward(clips, **kwargs):
            return [0.0 for _ in clips]
    ''')
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_modules("rlpf_t_selfreg")
    try:
        info = get_reward("rlpf_t_selfreg:reward")
        assert info.name == "t_selfreg_name"
        assert info.threshold == 0.7 and info.unit == "m/s"
    finally:
        unregister("t_selfreg_name")


# ---------------------------------------------------------------- (c) an entry point


def test_entry_point_plugin(tmp_path, monkeypatch, forget_modules):
    _fake_distribution(
        tmp_path, "fakeplug",
        "[rlpf.rewards]\nmy_ep = fakeplug_mod:reward\n",
        {"fakeplug_mod": '''
            def reward(clips, **kwargs):
                """Entry-point test reward."""
                return [float(i) for i in range(len(clips))]
        '''},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_modules("fakeplug_mod")
    # the distribution is really visible to importlib.metadata (no mocking)
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps["my_ep"].value == "fakeplug_mod:reward"
    assert eps["my_ep"].dist.name == "fakeplug"
    assert "fakeplug_mod" not in sys.modules  # looked up lazily, on a registry miss

    try:
        assert "my_ep" not in registered()
        info = get_reward("my_ep")
        import fakeplug_mod

        assert info.fn is fakeplug_mod.reward
        assert info.name == "my_ep"
        assert info.doc == "Entry-point test reward."
        assert call_reward(info, _clips(3)) == [0.0, 1.0, 2.0]
        assert "my_ep" in registered()  # cached after first use
        table = evaluate_rewards(_clips(2), {"my_ep": 2.0})
        assert table.total == [0.0, 2.0]
    finally:
        unregister("my_ep")


BROKEN_MODULE = '''
    raise ImportError("broken on purpose: needs libfoo")

    def reward(clips, **kwargs):
        return [0.0 for _ in clips]
'''


def test_broken_entry_point_warns_and_raises(tmp_path, monkeypatch, forget_modules):
    _fake_distribution(tmp_path, "brokenplug", "[rlpf.rewards]\nbroken_ep = brokenplug_mod:reward\n",
                       {"brokenplug_mod": BROKEN_MODULE})
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_modules("brokenplug_mod")
    assert "broken_ep" in {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}

    with pytest.warns(UserWarning, match="broken_ep") as rec:
        with pytest.raises(RewardError) as ei:
            get_reward("broken_ep")
    e = ei.value
    assert e.name == "broken_ep"
    assert "'broken_ep'" in str(e)
    assert "ImportError" in str(e) and "needs libfoo" in str(e)
    assert "brokenplug_mod:reward" in str(e)
    assert any("needs libfoo" in str(w.message) for w in rec)
    assert "broken_ep" not in registered()
    # other plugins still work with the broken distribution on the path
    assert get_reward("skate_mps").name == "skate_mps"
    with pytest.raises(RewardError, match="no such reward"):
        get_reward("t_other_missing")


def test_broken_entry_point_does_not_break_import(tmp_path):
    _fake_distribution(tmp_path, "brokenplug", "[rlpf.rewards]\nbroken_ep = brokenplug_mod:reward\n",
                       {"brokenplug_mod": BROKEN_MODULE})
    code = textwrap.dedent('''
        import importlib.metadata
        import rlpf
        import rlpf.rewards
        from rlpf.rewards import registered
        names = {ep.name for ep in importlib.metadata.entry_points(group="rlpf.rewards")}
        assert "broken_ep" in names, names   # the broken plugin is installed and visible...
        assert "skate_mps" in registered()   # ...and the package still imports and works
        print("IMPORT-OK")
    ''')
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp_path) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "IMPORT-OK" in r.stdout


# ---------------------------------------------------------------- output validation


@pytest.mark.parametrize("name,returns,fragment", [
    ("t_bad_len", lambda n: [1.0] * (n + 1), "returned 4 values for 3 clips"),
    ("t_bad_short", lambda n: [], "returned 0 values for 3 clips"),
    ("t_bad_nan", lambda n: [1.0, float("nan"), 1.0], "value 1 is nan"),
    ("t_bad_inf", lambda n: [1.0, 1.0, float("inf")], "value 2 is inf"),
    ("t_bad_npnan", lambda n: np.array([np.nan, 0.0, 0.0]), "value 0 is nan"),
    ("t_bad_str", lambda n: [1.0, "abc", 1.0], "not a float or None"),
    ("t_bad_obj", lambda n: [object(), 1.0, 1.0], "not a float or None"),
    ("t_bad_list", lambda n: [[1.0], 1.0, 1.0], "not a float or None"),
    ("t_bad_scalar", lambda n: 3.0, "must return a sequence"),
])
def test_bad_plugin_output(plugins, name, returns, fragment):
    info = plugins(name, lambda clips, **kw: returns(len(clips)))
    with pytest.raises(RewardError) as ei:
        call_reward(info, _clips(3))
    assert name in str(ei.value)
    assert fragment in str(ei.value)
    assert ei.value.name == name
    # the batch evaluator without isolation reports it the same way
    with pytest.raises(RewardError, match=name):
        evaluate_rewards(_clips(3), {name: 1.0}, isolate=False)


def test_plugin_exception_becomes_reward_error(plugins):
    def boom(clips, **kw):
        raise ZeroDivisionError("division by zero in plugin")

    info = plugins("t_raises", boom)
    with pytest.raises(RewardError) as ei:
        call_reward(info, _clips(2))
    assert "t_raises" in str(ei.value)
    assert "ZeroDivisionError" in str(ei.value) and "division by zero in plugin" in str(ei.value)
    assert isinstance(ei.value.__cause__, ZeroDivisionError)


def test_none_values_are_allowed(plugins):
    info = plugins("t_nones", lambda clips, **kw: [None, 1, np.float32(2.5)])
    out = call_reward(info, _clips(3))
    assert out == [None, 1.0, 2.5]
    assert all(v is None or type(v) is float for v in out)
    table = evaluate_rewards(_clips(3), {"t_nones": 2.0})
    assert table.terms["t_nones"] == [None, 1.0, 2.5]
    assert table.total == [0.0, 2.0, 5.0]
    assert table.errors == {}


# ---------------------------------------------------------------- evaluate_rewards


def test_total_is_weighted_sum_over_applicable_terms(plugins):
    a = [1.5, None, -2.0, 0.25]
    b = [0.5, 4.0, None, 10.0]
    plugins("t_sum_a", lambda clips, **kw: list(a))
    plugins("t_sum_b", lambda clips, **kw: list(b))
    weights = {"t_sum_a": 2.0, "t_sum_b": -0.5}
    table = evaluate_rewards(_clips(4), weights)
    assert table.terms == {"t_sum_a": a, "t_sum_b": b}
    assert table.weights == weights
    assert table.errors == {}
    expected = [sum(w * v for w, v in ((2.0, x), (-0.5, y)) if v is not None) for x, y in zip(a, b)]
    assert expected == [2.75, -2.0, -4.0, -4.5]
    np.testing.assert_allclose(table.total, expected, rtol=0, atol=1e-12)


def test_weight_zero_reports_without_scoring(plugins):
    plugins("t_w0", lambda clips, **kw: [100.0] * len(clips))
    plugins("t_w1", lambda clips, **kw: [1.0] * len(clips))
    table = evaluate_rewards(_clips(2), {"t_w0": 0.0, "t_w1": 3.0})
    assert table.terms["t_w0"] == [100.0, 100.0]
    assert table.total == [3.0, 3.0]


def test_unknown_reward_fails_before_any_plugin_runs(plugins):
    calls = []
    plugins("t_counted", lambda clips, **kw: calls.append(1) or [0.0] * len(clips))
    with pytest.raises(RewardError, match="t_not_there"):
        evaluate_rewards(_clips(2), {"t_counted": 1.0, "t_not_there": 1.0})
    assert calls == []


def test_isolate_one_bad_clip(plugins):
    seen_prompts = []

    def picky(clips, *, prompts, **kw):
        assert len(prompts) == len(clips)
        seen_prompts.append(list(prompts))
        for c, p in zip(clips, prompts):
            assert c.prompt == p  # per-clip context is sliced along with the clips
            if p == "bad":
                raise ValueError("cannot handle this clip")
        return [len(p) * 1.0 for p in prompts]

    plugins("t_picky", picky)
    plugins("t_steady", lambda clips, **kw: [1.0] * len(clips))
    clips = _clips(4, prompts=["a", "bad", "ccc", "dd"])
    weights = {"t_picky": 1.0, "t_steady": 10.0}

    table = evaluate_rewards(clips, weights, isolate=True, prompts=[c.prompt for c in clips])
    assert set(table.errors) == {1}
    assert "t_picky" in table.errors[1] and "cannot handle this clip" in table.errors[1]
    assert table.terms["t_picky"] == [1.0, None, 3.0, 2.0]
    assert table.terms["t_steady"] == [1.0, 1.0, 1.0, 1.0]
    assert math.isnan(table.total[1])
    assert table.total[0] == 11.0 and table.total[2] == 13.0 and table.total[3] == 12.0
    # the batch call failed, then each clip was retried alone with its own prompt
    assert seen_prompts[0] == ["a", "bad", "ccc", "dd"]
    assert seen_prompts[1:] == [["a"], ["bad"], ["ccc"], ["dd"]]

    with pytest.raises(RewardError, match="t_picky"):
        evaluate_rewards(clips, weights, isolate=False, prompts=[c.prompt for c in clips])


def test_isolate_single_clip(plugins):
    def always_fails(clips, **kw):
        raise RuntimeError("nope")

    plugins("t_fails", always_fails)
    table = evaluate_rewards(_clips(1), {"t_fails": 1.0})
    assert set(table.errors) == {0}
    assert "t_fails" in table.errors[0]
    assert math.isnan(table.total[0])


def test_context_reaches_plugin(plugins):
    cw = compile_world("ant")
    got = {}

    def spy(clips, **kwargs):
        got.update(kwargs)
        return [0.0] * len(clips)

    plugins("t_spy", spy)
    clips = _clips(2, prompts=["walk", "run"])
    evaluate_rewards(clips, {"t_spy": 1.0}, world=cw, prompts=["walk", "run"], step=17)
    assert got["world"] is cw
    assert got["prompts"] == ["walk", "run"]
    assert got["step"] == 17
    assert set(got) == {"world", "prompts", "step"}


def test_per_clip_adapter_accepts_world_name_or_compiled(plugins):
    @per_clip
    def nq_term(clip, world):
        """Width of the world."""
        return float(world.nq + clip.n_frames)

    plugins("t_per_clip", nq_term)
    info = get_reward("t_per_clip")
    assert info.doc == "Width of the world."
    clips = _clips(2)
    assert call_reward(info, clips, world="ant") == [18.0, 18.0]
    assert call_reward(info, clips, world=compile_world("humanoid"), prompts=["x", "y"]) == [27.0, 27.0]


def test_terms_declare_the_scene_parts_they_judge():
    """A term that needs objects says nothing about the ant, so training does not log it there."""
    from rlpf.envs.worlds import compile_world
    from rlpf.finetune.feedback import logged_terms
    from rlpf.rewards.registry import RewardError, applies, get_reward, register

    assert not applies(get_reward("object_levitation_mps"), compile_world("ant"))
    assert applies(get_reward("object_levitation_mps"), compile_world("metaworld/push-v3"))
    assert applies(get_reward("object_teleport_m"), compile_world("metaworld/drawer-open-v3"))   # either part
    assert not applies(get_reward("articulation_unexplained_mps"), compile_world("metaworld/push-v3"))
    ant = logged_terms({"tracking_success": 1.0}, "ant")
    assert "skate_mps" in ant and not any(t.startswith(("object_", "articulation_", "robot_object")) for t in ant)
    assert "object_levitation_mps" in logged_terms({"tracking_success": 1.0}, "metaworld/push-v3")
    with pytest.raises(RewardError, match="needs \\['wheels'\\]"):
        register("t_bad_needs", needs=("wheels",))(lambda clips, world: [0.0] * len(clips))
