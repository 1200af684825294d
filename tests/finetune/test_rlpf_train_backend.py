"""A tiny `rlpf train` with its reward scored on Ray actors gives the rewards of the local pool."""
import pytest

from rlpf.core.config import load_config
from rlpf.finetune.grpo import log_history
from rlpf.finetune.pipeline import RLPFConfig, train_rlpf

from test_rlpf_train import base, rlpf_overrides  # noqa: F401 - the tiny base model fixture

ray = pytest.importorskip("ray")


@pytest.mark.slow  # two end-to-end `rlpf train` runs
def test_rlpf_train_with_backend_ray_logs_the_local_rewards(base, tmp_path):  # noqa: F811
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rewards = {}
        for backend in ("local", "ray"):
            cfg = load_config(RLPFConfig, None, rlpf_overrides(base, [f"backend={backend}"]))
            out = tmp_path / backend
            train_rlpf(cfg, str(out), progress=False)
            rewards[backend] = [{k: v for k, v in entry.items() if k.startswith("rewards/") or k == "reward"}
                                for entry in log_history(str(out))]
    finally:
        ray.shutdown()
    assert any(entry for entry in rewards["local"]), "no rewards logged"
    assert rewards["ray"] == rewards["local"]
