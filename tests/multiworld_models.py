"""Tiny multi-world world models for the tests (``rlpf.worldmodel.multiworld``), built in seconds."""
import torch

from rlpf.worldmodel.model import LMConfig
from rlpf.worldmodel.multiworld import MultiWorldModel
from rlpf.worldmodel.tokenizer import MotionTokenizer, TokenizerConfig

PUSH, DRAWER, WIN_OPEN, WIN_CLOSE = ("metaworld/push-v3", "metaworld/drawer-open-v3", "metaworld/window-open-v3",
                                     "metaworld/window-close-v3")
SHARED = "move the arm without moving the window"   # window-open's and window-close's "not at all"


def tiny_multiworld(path=None, worlds=(PUSH, DRAWER, WIN_OPEN, WIN_CLOSE), levels=(4, 4)):
    """An untrained multi-world model over ``worlds`` with their real prompts (seconds to build)."""
    from rlpf.envs.worlds import data_source

    torch.manual_seed(0)
    toks = {w: MotionTokenizer(w, TokenizerConfig(hidden=16, depth=1, levels=list(levels))) for w in worlds}
    prompts = {w: list(data_source(w).prompts) for w in worlds}
    wm = MultiWorldModel.create(toks, prompts, 16, 40.0, LMConfig(32, 1, 2, 64),
                                task_prompts={w: data_source(w).task_prompts[0] for w in worlds})
    if path is not None:
        wm.save_pretrained(str(path))
    return wm


TINY_PRETRAIN = ["worlds=[metaworld/push-v3, metaworld/drawer-open-v3]", "data_n=12", "frames=64", "val_fraction=0.25",
                 "artifact_kinds=[]", "tokenizer_steps=8", "tokenizer_window=32", "tokenizer_batch=8",
                 "tokenizer.hidden=16", "tokenizer.depth=1", "tokenizer.levels=[4,4]", "lm_steps=30", "lm_batch=16",
                 "lm_lr=0.01", "lm.hidden=32", "lm.layers=1", "lm.heads=2", "lm.intermediate=64", "evaluator.steps=4",
                 "evaluator.hidden=16", "evaluator.batch=8", "log_every=4", "ckpt_every=8", "threads=1"]
"""`rlpf pretrain` overrides of a tiny multi-world run on push and drawer-open (real expert clips)."""
