"""Clip file format: save/load round trips, validation against a world, and the error messages."""
from __future__ import annotations

import os

import numpy as np
import pytest

from rlpf.core.clips import Clip, ClipError, load_clips, quaternion_addresses, save_clips, validate
from rlpf.envs.worlds import BUILTIN_WORLDS, UnknownWorldError, compile_world, get_world
from rlpf.policies.scripted import AntGait, PusherScript, SmoothRandom
from rlpf.data.simulate import simulate

N_FRAMES = 30


@pytest.fixture(scope="module")
def ant_clips():
    return [simulate("ant", AntGait(), N_FRAMES, seed=s, prompt=f"ant walk {s}") for s in range(3)]


@pytest.fixture(scope="module")
def ant():
    return compile_world("ant")


def _fresh(clip: Clip) -> Clip:
    """A copy that a test may modify in place (validate normalises quaternions in place)."""
    return Clip(qpos=clip.qpos.copy(), fps=clip.fps, world=clip.world, prompt=clip.prompt,
                actions=None if clip.actions is None else clip.actions.copy(), source=clip.source)


def _load_and_validate(path, world="ant"):
    """What the scorer does with a file: load it, then check every clip against the world."""
    cw = compile_world(world)
    clips = load_clips(str(path))
    for c in clips:
        validate(c, cw.model, cw.name)
    return clips


# ---------------------------------------------------------------- worlds


@pytest.mark.parametrize("name,nq", [("ant", 15), ("humanoid", 24), ("pusher", 11)])
def test_builtin_world_nq(name, nq):
    cw = compile_world(name)
    assert cw.nq == nq
    assert cw.name == name
    assert get_world(name) is BUILTIN_WORLDS[name]


def test_unknown_world_lists_builtins():
    with pytest.raises(UnknownWorldError) as ei:
        get_world("nope")
    msg = str(ei.value)
    assert "nope" in msg
    for name in ("ant", "humanoid", "pusher"):
        assert name in msg


def test_missing_xml_world_errors(tmp_path):
    missing = str(tmp_path / "no_such_robot.xml")
    with pytest.raises(UnknownWorldError) as ei:
        get_world(missing)
    assert missing in str(ei.value)
    assert "not found" in str(ei.value)
    with pytest.raises(UnknownWorldError):
        compile_world(missing)


# ---------------------------------------------------------------- simulated clips are valid


@pytest.mark.parametrize("world,controller", [("ant", AntGait), ("pusher", PusherScript), ("humanoid", SmoothRandom)])
def test_simulated_clip_is_valid(world, controller):
    clip = simulate(world, controller(), N_FRAMES, seed=1)
    cw = compile_world(world)
    assert clip.qpos.shape == (N_FRAMES, cw.nq)
    assert clip.actions.shape == (N_FRAMES, cw.model.nu)
    assert clip.world == world
    assert clip.fps == pytest.approx(cw.world.fps)
    validate(clip, cw.model, cw.name)  # raises on any problem
    for adr in quaternion_addresses(cw.model):
        np.testing.assert_allclose(np.linalg.norm(clip.qpos[:, adr:adr + 4], axis=1), 1.0, atol=1e-9)


# ---------------------------------------------------------------- round trips


def test_round_trip_single_clip(tmp_path, ant_clips):
    clip = ant_clips[0]
    path = str(tmp_path / "one.npz")
    assert save_clips(path, clip) == path
    assert not [f for f in os.listdir(tmp_path) if f != "one.npz"], "temporary file left behind"
    with np.load(path) as z:
        assert z["qpos"].shape == (N_FRAMES, 15)  # a single clip is stored as [T, nq], not a batch
    (back,) = load_clips(path)
    np.testing.assert_array_equal(back.qpos, clip.qpos)
    np.testing.assert_array_equal(back.actions, clip.actions)
    assert back.qpos.dtype == np.float64
    assert back.fps == clip.fps
    assert back.world == "ant"
    assert back.prompt == "ant walk 0"
    assert back.source == path
    assert back.n_frames == N_FRAMES
    assert back.duration == pytest.approx((N_FRAMES - 1) / clip.fps)


def test_round_trip_batch(tmp_path, ant_clips):
    path = str(tmp_path / "batch.npz")
    save_clips(path, ant_clips)
    with np.load(path) as z:
        assert z["qpos"].shape == (3, N_FRAMES, 15)
        assert z["actions"].shape == (3, N_FRAMES, 8)
    back = load_clips(path)
    assert len(back) == 3
    assert [c.source for c in back] == [f"{path}#{i}" for i in range(3)]
    assert [c.prompt for c in back] == ["ant walk 0", "ant walk 1", "ant walk 2"]
    for orig, b in zip(ant_clips, back):
        np.testing.assert_array_equal(b.qpos, orig.qpos)
        np.testing.assert_array_equal(b.actions, orig.actions)
        assert b.fps == orig.fps
        assert b.world == "ant"
    # and the loaded batch validates against the world
    _load_and_validate(path)


def test_save_world_argument_and_no_optional_keys(tmp_path):
    clip = Clip(qpos=np.zeros((4, 11)), fps=10.0)
    path = str(tmp_path / "bare.npz")
    save_clips(path, clip, world="pusher")
    with np.load(path) as z:
        assert set(z.files) == {"qpos", "fps", "world"}
    (back,) = load_clips(path)
    assert back.world == "pusher"
    assert back.prompt is None and back.actions is None


def test_save_rejects_mixed_batches(tmp_path):
    a = Clip(qpos=np.zeros((4, 15)), fps=20.0)
    b = Clip(qpos=np.zeros((5, 15)), fps=20.0)
    c = Clip(qpos=np.zeros((4, 15)), fps=10.0)
    with pytest.raises(ValueError):
        save_clips(str(tmp_path / "x.npz"), [a, b])
    with pytest.raises(ValueError):
        save_clips(str(tmp_path / "y.npz"), [a, c])
    with pytest.raises(ValueError):
        save_clips(str(tmp_path / "z.npz"), [])
    assert not os.listdir(tmp_path)


def test_prompt_scalar_applies_to_every_clip_of_a_batch(tmp_path):
    path = str(tmp_path / "p.npz")
    np.savez(path, qpos=np.zeros((2, 3, 15)), fps=20.0, prompt=np.str_("same"))
    assert [c.prompt for c in load_clips(path)] == ["same", "same"]


# ---------------------------------------------------------------- quaternion normalisation


def test_validate_normalises_quaternions(ant, ant_clips):
    clip = _fresh(ant_clips[0])
    (adr,) = quaternion_addresses(ant.model)
    assert adr == 3  # ant's free joint: x y z, then the quaternion
    unit = clip.qpos[:, adr:adr + 4].copy()
    scale = np.linspace(0.5, 3.0, N_FRAMES)[:, None]
    clip.qpos[:, adr:adr + 4] *= scale
    other = clip.qpos[:, [0, 1, 2, 7, 8]].copy()
    out = validate(clip, ant.model, "ant")
    assert out is clip
    np.testing.assert_allclose(np.linalg.norm(clip.qpos[:, adr:adr + 4], axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(clip.qpos[:, adr:adr + 4], unit / np.linalg.norm(unit, axis=1, keepdims=True),
                               atol=1e-12)
    np.testing.assert_array_equal(clip.qpos[:, [0, 1, 2, 7, 8]], other)  # nothing else touched


def test_validate_normalises_quaternions_loaded_from_file(tmp_path, ant_clips):
    q = ant_clips[0].qpos.copy()
    q[:, 3:7] *= 7.0
    path = tmp_path / "scaled.npz"
    np.savez(path, qpos=q, fps=20.0)
    (clip,) = _load_and_validate(path)
    np.testing.assert_allclose(np.linalg.norm(clip.qpos[:, 3:7], axis=1), 1.0, atol=1e-12)


def test_zero_quaternion_is_an_error(ant, ant_clips):
    clip = _fresh(ant_clips[0])
    clip.qpos[5, 3:7] = 0.0
    with pytest.raises(ClipError, match=r"zero quaternion at qpos\[3:7\]"):
        validate(clip, ant.model, "ant")


# ---------------------------------------------------------------- malformed inputs


def _expect_clip_error(path, *fragments, world="ant"):
    with pytest.raises(ClipError) as ei:
        _load_and_validate(path, world)
    e = ei.value
    msg = str(e)
    assert str(path) in msg, f"message does not name the file: {msg}"
    assert str(e.source).startswith(str(path))
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return e


def _good_qpos(ant_clips):
    return ant_clips[0].qpos.copy()


def test_nan_in_qpos(tmp_path, ant_clips):
    q = _good_qpos(ant_clips)
    q[4, 9] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, qpos=q, fps=20.0)
    _expect_clip_error(path, "non-finite", "frame 4", "coordinate 9")


def test_inf_in_qpos(tmp_path, ant_clips):
    q = _good_qpos(ant_clips)
    q[7, 2] = np.inf
    q[8, 2] = -np.inf
    path = tmp_path / "inf.npz"
    np.savez(path, qpos=q, fps=20.0)
    _expect_clip_error(path, "2 non-finite", "frame 7", "coordinate 2")


def test_nan_in_one_clip_of_a_batch_names_that_clip(tmp_path, ant_clips):
    q = np.stack([c.qpos for c in ant_clips])
    q[2, 3, 0] = np.nan
    path = tmp_path / "batch_nan.npz"
    np.savez(path, qpos=q, fps=20.0)
    e = _expect_clip_error(path, "non-finite")
    assert e.source == f"{path}#2"


def test_wrong_nq_for_world(tmp_path, ant_clips):
    path = tmp_path / "wide.npz"
    np.savez(path, qpos=np.zeros((N_FRAMES, 10)), fps=20.0)
    _expect_clip_error(path, "width 10", "nq=15", "'ant'")
    # an ant clip is the wrong width for the humanoid too
    path2 = tmp_path / "ant_as_humanoid.npz"
    np.savez(path2, qpos=_good_qpos(ant_clips), fps=20.0)
    _expect_clip_error(path2, "width 15", "nq=24", world="humanoid")


def test_fewer_than_two_frames(tmp_path, ant_clips):
    path = tmp_path / "one_frame.npz"
    np.savez(path, qpos=_good_qpos(ant_clips)[:1], fps=20.0)
    _expect_clip_error(path, "at least 2 frames", "got 1")


def test_missing_fps(tmp_path, ant_clips):
    path = tmp_path / "nofps.npz"
    np.savez(path, qpos=_good_qpos(ant_clips))
    _expect_clip_error(path, "missing 'fps'")


@pytest.mark.parametrize("fps", [0.0, -20.0, np.nan])
def test_nonpositive_fps(tmp_path, ant_clips, fps):
    path = tmp_path / "badfps.npz"
    np.savez(path, qpos=_good_qpos(ant_clips), fps=fps)
    _expect_clip_error(path, "'fps' must be positive")


def test_nonpositive_fps_on_an_in_memory_clip(ant, ant_clips):
    clip = _fresh(ant_clips[0])
    clip.fps = 0.0
    with pytest.raises(ClipError, match="fps must be positive"):
        validate(clip, ant.model, "ant")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"\x00\x01this is not a zip file at all\xff" * 20)
    _expect_clip_error(path, "unreadable")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    _expect_clip_error(path, "unreadable")


def test_missing_file(tmp_path):
    path = tmp_path / "does_not_exist.npz"
    _expect_clip_error(path, "file not found")


def test_missing_qpos_key(tmp_path):
    path = tmp_path / "noqpos.npz"
    np.savez(path, positions=np.zeros((5, 15)), fps=20.0)
    _expect_clip_error(path, "no 'qpos'", "positions")


def test_non_numeric_qpos(tmp_path):
    path = tmp_path / "strq.npz"
    np.savez(path, qpos=np.array([["a", "b"], ["c", "d"]]), fps=20.0)
    _expect_clip_error(path, "'qpos' must be a numeric")


def test_wrong_rank_qpos(tmp_path):
    path = tmp_path / "rank1.npz"
    np.savez(path, qpos=np.zeros(15), fps=20.0)
    _expect_clip_error(path, "'qpos' must be a numeric", "(15,)")


def test_prompt_count_mismatch(tmp_path):
    path = tmp_path / "prompts.npz"
    np.savez(path, qpos=np.zeros((2, 3, 15)), fps=20.0, prompt=np.array(["a", "b", "c"]))
    _expect_clip_error(path, "'prompt'")


def test_actions_wrong_width(tmp_path, ant_clips):
    path = tmp_path / "acts.npz"
    np.savez(path, qpos=_good_qpos(ant_clips), fps=20.0, actions=np.zeros((N_FRAMES, 3)))
    _expect_clip_error(path, "actions must be", "nu=8")


def test_npy_file_named_npz(tmp_path):
    path = tmp_path / "array.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((5, 15)))
    _expect_clip_error(path, "not an .npz archive")


def test_batch_actions_count_mismatch(tmp_path):
    path = tmp_path / "batch_acts.npz"
    np.savez(path, qpos=np.zeros((2, 3, 15)), fps=20.0, actions=np.zeros((1, 3, 8)))
    _expect_clip_error(path, "actions")


# ---- bounded memory and time: limits read before anything is decompressed ----------------------------

def _peak_rss_mb_of(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; its peak resident memory (MB) and stdout."""
    import subprocess
    import sys

    wrapped = code + "\nimport resource; print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=120, check=True).stdout
    return float(out.rsplit("RSS", 1)[1]), out


def test_a_million_frame_clip_is_refused_from_its_header_in_bounded_memory(tmp_path):
    path = tmp_path / "long.npz"
    np.savez_compressed(path, qpos=np.zeros((1_000_000, 15)), fps=20.0, world=np.str_("ant"))  # 120 MB of zeros
    base, _ = _peak_rss_mb_of("import rlpf.core.clips")
    peak, out = _peak_rss_mb_of(
        "from rlpf.core.clips import load_clips, ClipError\n"
        f"try:\n    load_clips({str(path)!r})\nexcept ClipError as e:\n    print('REFUSED', e)")
    assert "REFUSED" in out and "1000000 frames" in out and "at most" in out
    assert peak - base < 60, f"refusing took {peak - base:.0f} MB"


def test_a_compressed_junk_key_is_never_decompressed(tmp_path):
    path = tmp_path / "junk.npz"
    np.savez_compressed(path, qpos=np.zeros((64, 15)), fps=20.0, world=np.str_("ant"),
                        junk=np.zeros(400_000_000, np.uint8))  # 400 MB uncompressed, < 1 MB on disk
    assert path.stat().st_size < 2_000_000
    base, _ = _peak_rss_mb_of("import rlpf.core.clips")
    peak, out = _peak_rss_mb_of(f"from rlpf.core.clips import load_clips\nprint(len(load_clips({str(path)!r})))")
    assert out.startswith("1")
    assert peak - base < 100, f"loading took {peak - base:.0f} MB: the junk key was decompressed"


def test_a_fifo_named_npz_is_refused_not_read(tmp_path):
    fifo = tmp_path / "clip.npz"
    os.mkfifo(fifo)
    _expect_clip_error(fifo, "not a regular file")


@pytest.mark.parametrize("fps, frames, why", [(0.01, 64, "outside"), (5000.0, 64, "outside"),
                                              (10.0, 8000, "at most 600 s")])
def test_absurd_frame_rates_and_durations_are_refused(tmp_path, fps, frames, why):
    path = tmp_path / "c.npz"
    np.savez(path, qpos=np.zeros((frames, 15)), fps=fps, world=np.str_("ant"))
    _expect_clip_error(path, why)


def test_validate_applies_the_same_limits_to_clips_made_in_memory():
    from rlpf.envs.worlds import compile_world

    model = compile_world("ant").model
    clip = Clip(qpos=np.tile(model.qpos0, (64, 1)), fps=0.01, source="mem")
    with pytest.raises(ClipError, match="outside"):
        validate(clip, model, "ant")
