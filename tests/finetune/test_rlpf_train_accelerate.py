"""`accelerate launch --num_processes 2 rlpf train` on this CPU (gloo): it completes, writes its report
from the main process only, both processes step the same model, and each step is the batch of a
single-process run of the same config (same prompts, same tokens), sampled with other seeds."""
import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch

from rlpf.core.config import load_config
from rlpf.finetune.grpo import log_history
from rlpf.finetune.pipeline import RLPFConfig, train_rlpf

from test_rlpf_train import base, lm_state, rlpf_overrides  # noqa: F401 - the tiny base model fixture

BIN = os.path.dirname(sys.executable)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two end-to-end `rlpf train` runs, one of them two processes under accelerate
def test_two_process_accelerate_run_completes_and_matches_one_process(base, tmp_path):  # noqa: F811
    overrides = rlpf_overrides(base, ["workers=1", "videos=0"])
    single = tmp_path / "single"
    report1 = train_rlpf(load_config(RLPFConfig, None, overrides), str(single), progress=False)

    double = tmp_path / "double"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}  # the CPU path, gloo, here
    env.pop("ACCELERATE_USE_CPU", None)  # rlpf sets it itself on a machine without CUDA
    cmd = [os.path.join(BIN, "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           os.path.join(BIN, "rlpf"), "train", "--out", str(double), "--quiet", *overrides]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("# rlpf: before / after") == 1  # the report is printed (and written) once

    report2 = json.loads((double / "report.json").read_text())
    t1, t2 = report1["training"], report2["training"]
    assert t1["processes"] == 1 and t2["processes"] == 2
    assert t2["replicas_identical"] is True  # both processes ended with the same parameters, bit for bit
    assert t1["steps"] == t2["steps"] == 4
    before, after = lm_state(base / "base"), lm_state(double / "model")
    assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2, "nothing trained"
    # each process saved its own share of the batch in flight and its RNG
    ckpt = double / "grpo" / "checkpoint-2"
    assert {"pending_batch.pt", "pending_batch_1.pt", "rng_state_0.pth", "rng_state_1.pth",
            "rlpf_checkpoint.json"} <= set(os.listdir(ckpt))
    assert len(os.listdir(double / "tb" / "rlpf")) == 1  # TensorBoard from the main process only

    # the same experiment: every generated step saw the same prompts and tokens in total (the
    # global batch is prompts_per_step x num_generations, split over the processes); the samples
    # themselves differ (TRL seeds each process's sampling with seed + rank), so rewards and losses
    # agree only as two seeds of one run do
    h1, h2 = log_history(str(single)), log_history(str(double))
    assert [h["step"] for h in h1] == [h["step"] for h in h2]
    tokens1 = [h["num_tokens"] for h in h1 if "num_tokens" in h]
    assert tokens1 and tokens1 == [h["num_tokens"] for h in h2 if "num_tokens" in h]
    for h in h2:
        assert all(math.isfinite(float(v)) for k, v in h.items() if k.startswith("rewards/") or k == "loss")
    assert set(report1["after"]) == set(report2["after"])
