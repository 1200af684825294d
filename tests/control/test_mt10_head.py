"""The MT10 control head: ONE multi-task head on a (tiny, untrained) multi-world Meta-World world model.

It trains on real multi-task expert demonstrations (its own parameters change, the frozen backbone's
do not), acts in two tasks of different worlds through the batched evaluation, reloads to the same
actions, reads the motion codes at evaluation exactly as it was trained on them, and refuses
backbones that cannot carry it (one world, a task without its world) with errors naming them."""

import numpy as np
import pytest
import torch

from rlpf.control.head import BCSpec, ControlHeadConfig
from rlpf.control.mt10 import ExpertPolicy, _rollout, collect_mt_demos, evaluate_mt
from rlpf.control.mt10_head import (STAND_INS, MT10BackboneError, check_backbone, demo_code_ids, load_mt_head,
                                    train_mt_head)
from rlpf.control.tasks import PolicyLoadError

from multiworld_models import tiny_multiworld

TASKS = ["push-v3", "drawer-open-v3", "reach-v3"]   # reach: no world of its own, read through push's
WORLDS = ("metaworld/push-v3", "metaworld/drawer-open-v3")
CFG = ControlHeadConfig(n_queries=2, chunk=4, execute=2, head_hidden=32, history=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread, as `rlpf control` runs (threads: 1): tiny LM calls on a shared 2-core box are
    ~20x slower with more threads than cores free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt10_head")
    tiny_multiworld(root / "wm", worlds=WORLDS)
    demos = collect_mt_demos(TASKS, 2, seed=0, n_envs=2, progress=False)
    return root, str(root / "wm"), demos


def test_head_trains_acts_in_two_worlds_and_reloads(setup):
    from rlpf.worldmodel.multiworld import MultiWorldModel

    root, backbone, demos = setup
    fresh = MultiWorldModel.from_pretrained(backbone)
    policy = train_mt_head(backbone, demos, CFG, str(root / "head"), BCSpec(steps=12, batch=16, log_every=4,
                                                                             ckpt_every=6), progress=False)
    assert policy.tasks == tuple(TASKS)
    assert policy.inputs == {"push-v3": ("metaworld/push-v3", "push the puck to a new spot"),
                             "drawer-open-v3": ("metaworld/drawer-open-v3", "open the drawer"),
                             "reach-v3": ("metaworld/push-v3", "move the arm without moving the puck")}
    for (name, a), b in zip(fresh.lm.named_parameters(), policy.head.encoder.lm.parameters()):
        assert torch.equal(a, b), f"frozen backbone parameter {name} changed"
    report = evaluate_mt(policy, TASKS, episodes=2, seed=1000, n_envs=2, progress=False)
    assert set(report["tasks"]) == set(TASKS) and report["eval_steps"] > 0
    again = evaluate_mt(load_mt_head(str(root / "head" / "policy.pt")), TASKS, episodes=2, seed=1000, n_envs=2,
                        progress=False)
    assert [report["tasks"][t]["return_mean"] for t in TASKS] == [again["tasks"][t]["return_mean"] for t in TASKS]
    # a policy of the same kind on another task is refused at evaluation
    from rlpf.control.tasks import PolicyMismatchError

    with pytest.raises(PolicyMismatchError, match="door-open-v3"):
        evaluate_mt(policy, ["door-open-v3"], episodes=1, progress=False)


def test_evaluation_reads_the_motion_codes_it_was_trained_on(setup):
    """Replay the noiseless expert's demonstration seeds: the codes the policy makes from the live
    vector env equal demo_code_ids' codes of the recorded demonstration, step for step."""
    root, _, _ = setup
    demos = collect_mt_demos(["drawer-open-v3"], 1, seed=5, noise=(0.0, 0.0), n_envs=1, progress=False)
    wm = tiny_multiworld(worlds=WORLDS, levels=(8, 5, 5, 5))
    tok = wm.motion_tokenizers["metaworld/drawer-open-v3"]   # scaled to the data, so the codes follow the motion
    tok.fit_normalizer(tok.features.encode(demos["qpos__drawer-open-v3"][None], wm.fps))
    wm.save_pretrained(str(root / "wm-fit"))
    policy = train_mt_head(str(root / "wm-fit"), demos, CFG, str(root / "head-drawer"), BCSpec(steps=2, batch=4),
                           progress=False)
    expected = demo_code_ids(policy.wm, demos, ["drawer-open-v3"], CFG.history)
    expert, seen = ExpertPolicy(), []

    class Probe:
        def reset(self, task, mask, seeds):
            policy.reset(task, mask, seeds)
            expert.reset(task, mask, seeds)

        def observe(self, venv):
            policy.observe(venv)

        def act(self, obs, task):
            seen.append(policy.code_ids(task, [0])[0])
            return expert.act(obs, task)

    _rollout(Probe(), "drawer-open-v3", [5], 1)
    assert len(seen) == len(expected) > CFG.history * 2
    assert np.array_equal(np.stack(seen), expected)
    assert len(set(map(tuple, expected))) > 1   # the window moves


def test_reachs_stand_in_world_has_its_scene():
    """reach-v3 reads through push-v3's tokenizer: the two models have the same joints and qpos layout."""
    import mujoco

    from rlpf.envs.worlds import compile_world

    def layout(world):
        m = compile_world(world).model
        return [(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j), int(m.jnt_type[j]), int(m.jnt_qposadr[j]))
                for j in range(m.njnt)]

    for task, (world, _) in STAND_INS.items():
        assert layout(f"metaworld/{task}") == layout(world)


def test_backbones_that_cannot_carry_the_head_are_refused(setup, tmp_path):
    root, backbone, demos = setup
    with pytest.raises(MT10BackboneError, match=r"no world for task\(s\) \['door-open-v3'\]"):
        check_backbone(backbone, ["push-v3", "door-open-v3"])
    no_push = tiny_multiworld(tmp_path / "drawer-only", worlds=("metaworld/drawer-open-v3",))
    assert no_push.worlds == ["metaworld/drawer-open-v3"]
    with pytest.raises(MT10BackboneError, match=r"no world for task\(s\) \['reach-v3'\]"):   # nor its stand-in
        check_backbone(str(tmp_path / "drawer-only"), ["drawer-open-v3", "reach-v3"])
    from test_control_head import tiny_world_model

    one = tiny_world_model(tmp_path / "pusher")
    with pytest.raises(MT10BackboneError, match="one-world model"):
        check_backbone(one, TASKS)
    with pytest.raises(MT10BackboneError, match="no world model"):
        check_backbone(str(tmp_path / "nothing"), TASKS)
    import shutil   # a policy whose backbone is gone names it

    moved = tmp_path / "moved"
    shutil.copytree(backbone, moved)
    p = train_mt_head(str(moved), demos, CFG, str(tmp_path / "h"), BCSpec(steps=1, batch=4), progress=False)
    assert p.backbone == str(moved)
    shutil.rmtree(moved)
    with pytest.raises(PolicyLoadError, match="backbone"):
        load_mt_head(str(tmp_path / "h" / "policy.pt"))
