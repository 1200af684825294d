"""rlpf.worldmodel.model: vocabulary, sampling, continuation, save/load and its errors."""
import os

import numpy as np
import pytest

from rlpf.core.clips import validate
from rlpf.envs.worlds import compile_world
from rlpf.worldmodel.tokenizer import CheckpointError, MotionTokenizer, TokenizerConfig
from rlpf.worldmodel.model import LMConfig, UnknownPromptError, WorldModel, resolve_checkpoint

PROMPTS = ["walk forward", "turn left", "stand still"]


@pytest.fixture(scope="module")
def wm():
    tok = MotionTokenizer("ant", TokenizerConfig(hidden=32, depth=1, levels=(5, 5)))
    return WorldModel.create(tok, PROMPTS, n_frames=16, fps=20.0, cfg=LMConfig(hidden=32, layers=1, heads=2, intermediate=64))


def test_motion_codes_are_ordinary_tokens(wm):
    tt = wm.text_tokenizer
    assert wm.n_codes == 25 and wm.n_tokens == 4
    code_ids = set(range(wm.code_offset, wm.code_offset + wm.n_codes))
    assert not code_ids & set(tt.all_special_ids)
    ids = tt("walk forward <motion>")["input_ids"]  # what TRL does with a prompt
    assert ids[0] == tt.bos_token_id and ids == wm.prompt_ids("Walk  forward")
    assert tt.decode([wm.code_offset + 3], skip_special_tokens=True) == "m3"
    assert list(wm.codes_from_ids([wm.code_offset, wm.code_offset + 24])) == [0, 24]
    with pytest.raises(ValueError, match="non-motion tokens"):
        wm.codes_from_ids([tt.eos_token_id])


def test_unknown_prompt_words_list_the_vocabulary(wm):
    with pytest.raises(UnknownPromptError, match=r"unknown word\(s\) \['sideways'\].*'forward'"):
        wm.generate("walk sideways")
    with pytest.raises(UnknownPromptError, match="empty"):
        wm.generate("  ")


def test_generate_gives_valid_clips_and_repeats_with_a_seed(wm):
    clips = wm.generate(PROMPTS, n=3, seed=5)
    again = wm.generate(PROMPTS, n=3, seed=5)
    assert all(np.array_equal(a.qpos, b.qpos) for a, b in zip(clips, again))
    assert [c.prompt for c in clips] == [p for p in PROMPTS for _ in range(3)]
    model = compile_world("ant").model
    for c in clips:
        assert c.qpos.shape == (16, model.nq) and c.world == "ant" and c.fps == 20.0
        validate(c, model, "ant")
        assert np.allclose(c.qpos[0, :2], 0.0)  # text-to-motion starts at the origin
    other = wm.generate(PROMPTS, n=3, seed=6)
    assert not all(np.array_equal(a.qpos, b.qpos) for a, b in zip(clips, other))
    codes = wm.sample_codes(["turn left"] * 50, temperature=2.0, seed=0)
    assert codes.min() >= 0 and codes.max() < wm.n_codes


def test_continuation_keeps_the_given_start(wm, valid_clips):
    ref = valid_clips["ant"][0].qpos[:8].copy()
    ref[:, :2] += [3.0, -2.0]  # anywhere on the floor
    clips = wm.generate("walk forward", n=4, first_frames=ref, seed=1)
    prefix = wm.motion_tokenizer.encode_qpos(ref[None], 20.0)
    for c in clips:
        assert np.allclose(c.qpos[0, :2], ref[0, :2])  # anchored where the given clip starts
    codes = wm.sample_codes(["walk forward"] * 4, prefix=np.repeat(prefix, 4, 0), seed=1)
    assert (codes[:, :2] == prefix).all()  # the given frames' codes are kept, the rest is sampled
    with pytest.raises(ValueError, match="at least 4 frames"):
        wm.generate("walk forward", first_frames=ref[:3])
    with pytest.raises(ValueError, match="nq=15"):
        wm.generate("walk forward", first_frames=ref[:, :10])


def test_save_load_round_trip_and_errors(wm, tmp_path):
    path = str(tmp_path / "model")
    wm.save_pretrained(path)
    wm.save_pretrained(path)  # overwriting an existing model leaves no temporary directories
    assert sorted(os.listdir(tmp_path)) == ["model"]
    loaded = WorldModel.from_pretrained(str(tmp_path / "model"), world="ant")
    assert loaded.prompts == PROMPTS and loaded.n_frames == 16
    a, b = wm.generate("turn left", n=2, seed=3), loaded.generate("turn left", n=2, seed=3)
    assert all(np.array_equal(x.qpos, y.qpos) for x, y in zip(a, b))
    assert resolve_checkpoint(str(tmp_path)) == path  # a run directory holding model/

    with pytest.raises(CheckpointError, match="trained for world 'ant', not 'humanoid'"):
        WorldModel.from_pretrained(path, world="humanoid")
    with pytest.raises(FileNotFoundError, match="no such file"):
        WorldModel.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="world_model.json"):
        WorldModel.from_pretrained(str(tmp_path / "model" / ".."/ ".." ))
    weights = os.path.join(path, "model.safetensors")
    with open(weights, "r+b") as f:
        f.truncate(os.path.getsize(weights) // 2)
    with pytest.raises(CheckpointError, match="cannot load the language model"):
        WorldModel.from_pretrained(path)


def test_generate_never_writes_over_its_first_frames_input(wm, tmp_path, capsys):
    import shutil

    from rlpf.cli import main

    model = str(tmp_path / "model")
    wm.save_pretrained(model)
    out = tmp_path / "out"
    out.mkdir()
    prompt = wm.prompts[0]
    first = out / ("_".join(prompt.split()) + ".npz")  # exactly the file generate would write
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "rlpf", "examples", "ant_valid.npz"), first)
    before = first.read_bytes()
    code = main(["generate", "--checkpoint", model, "--prompt", prompt, "--first-frames", str(first),
                 "--out", str(out), "--n", "2"])
    assert code == 2 and "is one of the inputs" in capsys.readouterr().err
    assert first.read_bytes() == before
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["generate", "--checkpoint", model, "--prompt", prompt, "--out", str(blocker)]) == 2
    assert "not a directory" in capsys.readouterr().err
