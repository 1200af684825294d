"""The control head: a tiny one trains (its parameters change, the frozen backbone does not), acts in
Pusher-v5 deterministically, saves and loads, and refuses the wrong task, backbone or world."""
import shutil

import numpy as np
import pytest
import torch

from rlpf.control.demos import collect_demos
from rlpf.control.evaluate import PolicyLoadError, PolicyMismatchError, evaluate, load_policy
from rlpf.control.head import (BCSpec, ControlHead, ControlHeadConfig, Normalizer, train_control_head,
                               train_mlp_bc)


def tiny_world_model(path, world="pusher"):
    from rlpf.data.motion_data import PROMPTS
    from rlpf.worldmodel.tokenizer import MotionTokenizer, TokenizerConfig
    from rlpf.worldmodel.model import LMConfig, WorldModel

    torch.manual_seed(0)
    tok = MotionTokenizer(world, TokenizerConfig(hidden=16, depth=1, levels=[4, 4]))
    wm = WorldModel.create(tok, list(PROMPTS[world]), 16, 20.0, LMConfig(32, 1, 2, 64))
    wm.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("control_head")
    backbone = tiny_world_model(root / "wm")
    demos = collect_demos("Pusher-v5", episodes=2, seed=0, noise=0.1, progress=False)
    return root, backbone, demos


SPEC = BCSpec(steps=6, batch=8, log_every=2, ckpt_every=3)


def test_demos_are_seeded():
    a = collect_demos("Reacher-v5", episodes=1, seed=5, progress=False)
    b = collect_demos("Reacher-v5", episodes=1, seed=5, progress=False)
    assert np.array_equal(a["obs"], b["obs"]) and np.array_equal(a["actions"], b["actions"])
    assert a["obs"].shape == (1, 50, 10) and a["qpos"].shape == (1, 50, 4)


@pytest.mark.parametrize("head", ["mlp", "flow"])
def test_head_trains_acts_and_reloads(setup, head):
    from rlpf.worldmodel.model import WorldModel

    root, backbone, demos = setup
    cfg = ControlHeadConfig(head=head, n_queries=2, chunk=4, execute=2, head_hidden=32)
    wm = WorldModel.from_pretrained(backbone)
    torch.manual_seed(0)
    fresh = ControlHead(wm.lm, cfg, 23, 7, Normalizer(23), Normalizer(7))
    policy = train_control_head(backbone, demos, cfg, str(root / head), SPEC, progress=False)
    trained = dict(policy.head.named_parameters())
    for name, p in fresh.named_parameters():
        if name.startswith("encoder.lm."):
            assert torch.equal(p, trained[name]), f"frozen backbone parameter {name} changed"
        else:
            assert not torch.equal(p, trained[name]), f"parameter {name} did not change"
    assert (root / head / "tb" / "control_head").is_dir()
    a = evaluate(policy, "Pusher-v5", episodes=1, seed=3, progress=False)
    b = evaluate(load_policy(str(root / head), "Pusher-v5"), "Pusher-v5", episodes=1, seed=3, progress=False)
    assert a["per_episode"] == b["per_episode"] and a["eval_steps"] == 100


def test_finetuned_backbone_changes_and_is_saved(setup):
    root, backbone, demos = setup
    cfg = ControlHeadConfig(n_queries=1, head_hidden=16, finetune_backbone=True, history=0)
    policy = train_control_head(backbone, demos, cfg, str(root / "ft"), SPEC, progress=False)
    from rlpf.worldmodel.model import WorldModel

    base = WorldModel.from_pretrained(backbone).lm.state_dict()
    tuned = policy.head.encoder.lm.state_dict()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    again = load_policy(str(root / "ft" / "policy.pt"), "Pusher-v5")
    assert all(torch.equal(v, again.head.encoder.lm.state_dict()[k]) for k, v in tuned.items())


def test_mlp_bc_trains(setup):
    root, _, demos = setup
    policy = train_mlp_bc(demos, str(root / "mlp"), SPEC, hidden=16, progress=False)
    r = evaluate(policy, "Pusher-v5", episodes=1, progress=False)
    assert np.isfinite(r["return_mean"])


def test_wrong_task_missing_backbone_and_other_world(setup, tmp_path):
    root, backbone, demos = setup
    cfg = ControlHeadConfig(n_queries=1, head_hidden=16)
    moved = tiny_world_model(tmp_path / "wm")
    train_control_head(moved, demos, cfg, str(tmp_path / "head"), SPEC, progress=False)
    with pytest.raises(PolicyMismatchError, match="Pusher-v5.*cannot act in Reacher-v5"):
        evaluate(load_policy(str(tmp_path / "head"), "Reacher-v5"), "Reacher-v5", episodes=1, progress=False)
    shutil.rmtree(moved)
    with pytest.raises(PolicyLoadError, match="backbone world model.*no such file"):
        load_policy(str(tmp_path / "head"), "Pusher-v5")
    tiny_world_model(tmp_path / "wm", world="ant")
    with pytest.raises(PolicyLoadError, match="trained for world 'ant'"):
        load_policy(str(tmp_path / "head"), "Pusher-v5")


def test_world_model_as_sb3_features_extractor(setup):
    from stable_baselines3 import PPO

    from rlpf.control.evaluate import make_env
    from rlpf.control.head import WorldModelFeaturesExtractor

    _, backbone, _ = setup
    model = PPO("MlpPolicy", make_env("Reacher-v5"), n_steps=16, batch_size=8, n_epochs=1, seed=0, device="cpu",
                policy_kwargs=dict(features_extractor_class=WorldModelFeaturesExtractor,
                                   features_extractor_kwargs=dict(backbone=backbone, prompt="reach without pushing")))
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(16)
    after = model.policy.state_dict()
    assert not torch.equal(before["features_extractor.encoder.queries"], after["features_extractor.encoder.queries"])
    lm_keys = [k for k in before if ".encoder.lm." in k]
    assert lm_keys and all(torch.equal(before[k], after[k]) for k in lm_keys)


def test_training_repeats_for_a_seed(setup, tmp_path):
    _, backbone, demos = setup
    cfg = ControlHeadConfig(n_queries=1, head_hidden=16)
    a = train_control_head(backbone, demos, cfg, str(tmp_path / "a"), SPEC, progress=False)
    torch.manual_seed(123)   # the global RNG must not matter
    b = train_control_head(backbone, demos, cfg, str(tmp_path / "b"), SPEC, progress=False)
    for (name, p), q in zip(a.head.named_parameters(), b.head.parameters()):
        assert torch.equal(p, q), name
    m1 = train_mlp_bc(demos, str(tmp_path / "m1"), SPEC, hidden=16, progress=False)
    m2 = train_mlp_bc(demos, str(tmp_path / "m2"), SPEC, hidden=16, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(m1.net.parameters(), m2.net.parameters()))


def test_a_payload_policy_file_never_runs(setup, tmp_path, capsys):
    """policy.pt of a control head carrying a pickled object that would run code: `rlpf eval-control` and
    load_policy refuse it by name; the genuine file (plain data + tensors) still loads."""
    from payloads import torch_file

    from rlpf.cli import main

    root, backbone, demos = setup
    cfg = ControlHeadConfig(n_queries=1, head_hidden=16)
    train_control_head(backbone, demos, cfg, str(tmp_path / "head"), SPEC, progress=False)
    real = torch.load(tmp_path / "head" / "policy.pt", weights_only=True)
    assert real["kind"] == "control_head" and load_policy(str(tmp_path / "head"), "Pusher-v5").env_id == "Pusher-v5"
    marker = tmp_path / "payload-ran"
    shared = tmp_path / "shared"
    shared.mkdir()
    torch_file(shared / "policy.pt", marker, around=lambda p: {**real, "config": p})
    with pytest.raises(PolicyLoadError, match=r"shared/policy\.pt: refused: .*names [\w.]*open\)"):
        load_policy(str(shared), "Pusher-v5")
    assert main(["eval-control", "--env", "Pusher-v5", "--policy", str(shared), "--episodes", "1", "--quiet"]) == 2
    assert "shared/policy.pt: refused" in capsys.readouterr().err
    assert not marker.exists()
