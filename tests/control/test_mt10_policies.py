"""The multi-task MLP behaviour-cloning policy and the per-task SB3 models on Meta-World."""
import numpy as np
import pytest
import torch

from rlpf.control.mt10 import collect_mt_demos, evaluate_mt
from rlpf.control.mt10_policies import MTBCSpec, load_mt_policy, train_mt_bc
from rlpf.control.tasks import PolicyLoadError, PolicyMismatchError


@pytest.fixture(scope="module")
def demos():
    return collect_mt_demos(["reach-v3", "button-press-topdown-v3"], episodes=2, seed=0, n_envs=2, progress=False)


def test_bc_trains_evaluates_and_reloads(demos, tmp_path):
    pol = train_mt_bc(demos, str(tmp_path / "bc"), MTBCSpec(steps=300, batch=64, hidden=32, seed=0), progress=False)
    losses = __import__("json").loads((tmp_path / "bc" / "losses.json").read_text())
    assert losses[-1][1] < losses[0][1]                                   # it learned something
    r = evaluate_mt(pol, ["reach-v3"], episodes=2, seed=1000, n_envs=2, progress=False)
    assert 0.0 <= r["tasks"]["reach-v3"]["success_rate"] <= 1.0 and r["eval_steps"] > 0
    again = load_mt_policy(str(tmp_path / "bc" / "policy.pt"))
    obs = demos["obs"][:5]
    assert np.allclose(pol.act(obs, "reach-v3"), again.act(obs, "reach-v3"))
    # the one-hot matters: the same observation asks for another task's action
    assert not np.allclose(pol.act(obs, "reach-v3"), pol.act(obs, "button-press-topdown-v3"))
    with pytest.raises(PolicyMismatchError, match="push-v3"):
        evaluate_mt(pol, ["push-v3"], episodes=1, progress=False)


def test_bc_repeats_for_a_seed(demos, tmp_path):
    a = train_mt_bc(demos, str(tmp_path / "a"), MTBCSpec(steps=20, batch=16, hidden=16, seed=3), progress=False)
    b = train_mt_bc(demos, str(tmp_path / "b"), MTBCSpec(steps=20, batch=16, hidden=16, seed=3), progress=False)
    c = train_mt_bc(demos, str(tmp_path / "c"), MTBCSpec(steps=20, batch=16, hidden=16, seed=4), progress=False)
    obs = demos["obs"][:4]
    assert np.array_equal(a.act(obs, "reach-v3"), b.act(obs, "reach-v3"))
    assert not np.allclose(a.act(obs, "reach-v3"), c.act(obs, "reach-v3"))


def test_bad_policy_files_are_named(tmp_path):
    with pytest.raises(PolicyLoadError, match="no such file"):
        load_mt_policy(str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(PolicyLoadError, match="junk.pt"):
        load_mt_policy(str(tmp_path / "junk.pt"))
    torch.save({"format": 1, "kind": "mlp_bc"}, tmp_path / "other.pt")
    with pytest.raises(PolicyLoadError, match="not a multi-task"):
        load_mt_policy(str(tmp_path / "other.pt"))
