"""rlpf.finetune.score_ahead: the batch scored ahead is saved with each checkpoint and read back as data only."""
import os
import shutil

import pytest

from rlpf.core.config import load_config
from rlpf.finetune.pipeline import RLPFConfig, train_rlpf

from test_rlpf_train import base, rlpf_overrides  # noqa: F401  (base: the tiny pretrained model, a fixture)


@pytest.mark.slow
def test_a_payload_in_the_scored_ahead_batch_never_runs(base, tmp_path):  # noqa: F811
    """A shared, unfinished `rlpf train` run whose checkpoint's pending_batch.pt carries a pickled object:
    resuming refuses it by name, the payload never runs; the genuine file is plain data and tensors."""
    import torch

    from payloads import torch_file

    from rlpf.core.safe_load import UnsafeFileError, load_tensors
    from rlpf.finetune.score_ahead import PENDING_FILE

    cfg = load_config(RLPFConfig, None, rlpf_overrides(base, ["videos=0", "eval_per_prompt=1", "workers=0"]))
    run = tmp_path / "run"
    train_rlpf(cfg, str(run), progress=False)
    real = load_tensors(str(run / "grpo" / "checkpoint-2" / PENDING_FILE))
    assert {"inputs", "generated", "step", "logps"} <= set(real) and isinstance(real["logps"], torch.Tensor)

    shared = tmp_path / "shared"
    shutil.copytree(run, shared, ignore=shutil.ignore_patterns("*.lock", "lock"))
    for name in ("model", "grpo/checkpoint-4", "samples", "videos"):
        shutil.rmtree(shared / name, ignore_errors=True)
    for name in ("report.json", "report.md"):
        if (shared / name).exists():
            os.remove(shared / name)
    marker = tmp_path / "payload-ran"
    torch_file(shared / "grpo" / "checkpoint-2" / PENDING_FILE, marker, around=lambda p: {**real, "inputs": p})
    with pytest.raises(UnsafeFileError, match=r"checkpoint-2/pending_batch\.pt: refused: this scored-ahead batch"):
        train_rlpf(cfg, str(shared), progress=False)
    assert not marker.exists()
