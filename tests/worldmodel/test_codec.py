"""rlpf.worldmodel.codec (MotionCodec, WorldModelCodec) and the RLPFTrainer / PhysicalFeedback checks of codecs,
GRPOConfigs and prompts; a world registered in this process scored in worker processes."""
import dataclasses
import os
import sys

import numpy as np
import pytest

import rlpf
from rlpf.worldmodel.codec import CodecError, MotionCodec, as_codec


class Tok:
    """Stands for a tokenizer where only its length matters (the checks before any training)."""

    def __len__(self):
        return 10


class Codec(MotionCodec):
    world = "ant"
    tokenizer = Tok()
    allowed_token_ids = (4, 5, 6)
    max_completion_length = 3

    def decode(self, completion_ids, prompt):
        if 9 in completion_ids:
            raise ValueError("token 9 is a rest")
        if 8 in completion_ids:
            return None
        if 7 in completion_ids:
            return "a string"
        return rlpf.Clip(qpos=np.zeros((len(completion_ids), 15)), fps=20.0, world="ant", prompt=prompt)


def test_decode_batch_says_why_a_completion_is_not_a_clip():
    out = Codec().decode_batch([[4, 5, 6], [4, 9, 5], [8, 4, 4]], ["walk forward"] * 3)
    assert isinstance(out[0], rlpf.Clip) and out[0].prompt == "walk forward"
    assert out[1] == "completion is not a clip: token 9 is a rest"
    assert "Codec.decode returned None" in out[2]
    with pytest.raises(CodecError, match="returned a str, not a rlpf.Clip"):
        Codec().decode_batch([[7, 4, 4]], ["x"])


def test_suppress_tokens_are_the_rest_of_the_vocabulary():
    assert Codec().suppress_tokens() == [0, 1, 2, 3, 7, 8, 9]
    assert Codec().prompt_text("walk forward") == "walk forward" == Codec().command("walk forward")


@pytest.mark.parametrize("attr,value,match", [
    ("tokenizer", None, "no tokenizer"),
    ("allowed_token_ids", (), "allowed_token_ids is empty"),
    ("allowed_token_ids", (3, 12), r"allowed_token_ids \[12\] are outside the tokenizer's 10 tokens"),
    ("max_completion_length", 0, "max_completion_length is 0"),
    ("world", None, "no world"),
])
def test_a_codec_that_cannot_train_is_refused(attr, value, match):
    c = Codec()
    setattr(c, attr, value)
    with pytest.raises(CodecError, match=match):
        c.check()


def test_as_codec_refuses_what_is_not_a_codec():
    c = Codec()
    assert as_codec(c) is c
    with pytest.raises(CodecError, match="a dict is not a rlpf.MotionCodec"):
        as_codec({})
    with pytest.raises(NotImplementedError, match="decode"):
        MotionCodec().decode([1], "x")


def test_the_public_names_are_lazy_and_the_right_objects():
    from rlpf.worldmodel.codec import WorldModelCodec
    from rlpf.finetune.feedback import PhysicalFeedback

    assert rlpf.MotionCodec is MotionCodec and rlpf.WorldModelCodec is WorldModelCodec
    assert rlpf.PhysicalFeedback is PhysicalFeedback
    from trl import GRPOTrainer

    assert issubclass(rlpf.RLPFTrainer, GRPOTrainer)


def test_feedback_refuses_a_codec_of_another_world():
    from rlpf.finetune.feedback import FeedbackError

    c = Codec()
    c.world = "pusher"
    with rlpf.PhysicalFeedback("ant", workers=0) as fb:
        with pytest.raises(FeedbackError, match="codec Codec makes clips of world 'pusher'.*scores world 'ant'"):
            fb.reward_functions(c)


def test_rlpf_trainer_refuses_bad_args_prompts_and_feedback(tmp_path):
    from trl import GRPOConfig

    from rlpf.finetune.grpo import TrainerConfigError, precision_kwargs

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "experiments"))
    import custom_generator

    model, codec, prompts = custom_generator.build(n_poses=4, n_tokens=3)
    def config(**kw):
        return GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
                          report_to="none", **precision_kwargs(), **kw)

    cfg = config()
    with rlpf.PhysicalFeedback("ant", {"tracking_success": 10.0}, workers=0) as fb:
        with pytest.raises(TrainerConfigError, match="args: a dict, not a trl.GRPOConfig"):
            rlpf.RLPFTrainer(model, codec, fb, {}, prompts)
        with pytest.raises(TrainerConfigError, match="prompts: .* not a non-empty list"):
            rlpf.RLPFTrainer(model, codec, fb, cfg, [])
        with pytest.raises(TrainerConfigError, match="feedback: a str, not a rlpf.PhysicalFeedback"):
            rlpf.RLPFTrainer(model, codec, "ant", cfg, prompts)
        with pytest.raises(TrainerConfigError, match=r"args.reward_weights \[1.0\]: the weights are the PhysicalFeedback's"):
            rlpf.RLPFTrainer(model, codec, fb, config(reward_weights=[1.0]), prompts)
        t = rlpf.RLPFTrainer(model, codec, fb, cfg, prompts)
        # rlpf fills only what it must; the caller's config is left as given
        assert t.args.max_completion_length == 3 and cfg.max_completion_length != 3
        assert t.args.reward_weights[0] == 10.0 and cfg.reward_weights is None
        assert t.args.generation_kwargs["suppress_tokens"] == codec.suppress_tokens()
        assert t.processing_class is codec.tokenizer and t.overlap_scoring


def test_a_world_registered_in_this_process_is_scored_in_the_workers():
    from rlpf.envs.worlds import BUILTIN_WORLDS, unregister_world
    from rlpf.policies.scripted import AntGait
    from rlpf.data.simulate import simulate

    rlpf.register_world("codec_test_ant", dataclasses.replace(BUILTIN_WORLDS["ant"], name="codec_test_ant"))
    try:
        clip = simulate("codec_test_ant", AntGait(), n_frames=24, seed=1, prompt="walk forward")
        results = []
        for workers in (0, 1):
            with rlpf.PhysicalFeedback("codec_test_ant", {"tracking_success": 10.0}, workers=workers) as fb:
                results.append(fb.score([clip]))
        assert results[1]["errors"] == {} == results[0]["errors"], results
        assert results[1]["terms"] == results[0]["terms"]
    finally:
        unregister_world("codec_test_ant")
