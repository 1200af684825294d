"""Learned MT10 policies: one multi-task MLP cloned from the experts, and SB3 SAC / PPO per task.

``MTMLPPolicy`` (``train_mt_bc``): ONE policy for all ten tasks, an MLP from the normalized observation
vector and the task's one-hot (``rlpf.control.mt10.one_hot``) to the expert's action, behaviour-cloned
(MSE on normalized actions) on the multi-task demonstrations of ``rlpf.control.mt10.collect_mt_demos``.
It is the raw-state baseline of the control head, which reads the same demonstrations through a world
model. Its file (``policy.pt``) holds tensors and plain data only (``rlpf.core.safe_load.load_tensors``).

``SB3MTPolicy`` (``train_sb3_mt``): SB3 SAC (or PPO) from scratch on each task's own env
(``make_task_env``: seeded scenes, 500-step episodes, the env's dense reward), one model per task at a
stated env-step budget, loaded without unpickling (``rlpf.control.evaluate.load_sb3``).

Both follow the batched policy protocol of ``rlpf.control.mt10`` (``reset(task, mask, seeds)``,
``act(obs [n, 39], task) -> [n, 4]``) and carry ``tasks``, the tasks they were trained for.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlpf.control.head import Normalizer, _mlp, _save
from rlpf.control.mt10 import MT10, check_tasks, make_task_env, one_hot
from rlpf.control.tasks import PolicyLoadError

POLICY_KIND = "mt_mlp_bc"


class MTMLPNet(nn.Module):
    """[normalized obs, one-hot task] -> normalized action (two hidden layers of ``hidden``)."""

    def __init__(self, obs_norm: Normalizer, act_norm: Normalizer, hidden: int = 256):
        super().__init__()
        self.obs_norm, self.act_norm = obs_norm, act_norm
        self.obs_size, self.act_size = len(obs_norm.mean), len(act_norm.mean)
        self.net = _mlp(self.obs_size + len(MT10), hidden, self.act_size)

    def forward(self, obs: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.obs_norm(obs), onehot], 1))


class MTMLPPolicy:
    tasks: tuple[str, ...]

    def __init__(self, net: MTMLPNet, tasks):
        self.net, self.tasks = net.eval(), tuple(tasks)

    def reset(self, task, mask, seeds) -> None:
        pass

    @torch.no_grad()
    def act(self, obs, task):
        x = torch.as_tensor(np.asarray(obs, np.float32))
        out = self.net(x, torch.as_tensor(one_hot(task, len(x))))
        return self.net.act_norm.inverse(out).numpy()


@dataclass
class MTBCSpec:
    steps: int = 5000
    batch: int = 256
    lr: float = 1e-3
    hidden: int = 256
    seed: int = 0


def train_mt_bc(demos: dict, out_dir: str, spec: MTBCSpec, progress: bool = True) -> MTMLPPolicy:
    """Behaviour-clone one multi-task MLP on ``demos``; ``out_dir/policy.pt`` (reused when present).

    AdamW (weight decay 1e-4), linear warm-up over the first 5 % of steps then cosine decay to 0,
    batches drawn uniformly over all demonstration steps with a generator seeded by ``spec.seed``
    (the same seed initialises the network), so a seed repeats exactly on one thread."""
    from tqdm import tqdm

    path = os.path.join(out_dir, "policy.pt")
    if os.path.isfile(path):
        return load_mt_policy(path)
    tasks = [str(t) for t in demos["tasks"]]
    obs = torch.as_tensor(demos["obs"], dtype=torch.float32)
    actions = torch.as_tensor(demos["actions"], dtype=torch.float32)
    onehot = torch.as_tensor(demos["task_onehot"], dtype=torch.float32)
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        net = MTMLPNet(Normalizer(demos["obs"]), Normalizer(demos["actions"]), spec.hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=1e-4)
    warm = max(1, spec.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: (k + 1) / warm if k < warm else 0.5 * (1 + math.cos(math.pi * (k - warm) / max(1, spec.steps - warm))))
    gen = torch.Generator().manual_seed(spec.seed)
    target = net.act_norm(actions)
    losses = []
    net.train()
    for k in tqdm(range(spec.steps), desc="mt-bc", unit="step", disable=not progress, file=sys.stderr,
                  dynamic_ncols=True, mininterval=2):
        idx = torch.randint(len(obs), (spec.batch,), generator=gen)
        loss = ((net(obs[idx], onehot[idx]) - target[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if k % 100 == 0 or k == spec.steps - 1:
            losses.append([k, loss.item()])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "losses.json"), "w") as f:
        json.dump(losses, f)
    _save(path, {"kind": POLICY_KIND, "tasks": tasks, "obs_size": net.obs_size, "act_size": net.act_size,
                 "hidden": spec.hidden, "state": net.state_dict()})
    return MTMLPPolicy(net, tasks)


def load_mt_policy(path: str) -> MTMLPPolicy:
    """A ``policy.pt`` of ``train_mt_bc``; PolicyLoadError naming the file otherwise."""
    from rlpf.control.head import read_policy_file

    p = read_policy_file(path)
    kind = p["kind"]
    if kind != POLICY_KIND:
        raise PolicyLoadError(f"policy {path}: a {kind!r} policy, not a multi-task Meta-World policy ({POLICY_KIND})")
    net = MTMLPNet(Normalizer(p["obs_size"]), Normalizer(p["act_size"]), p["hidden"])
    net.load_state_dict(p["state"])
    return MTMLPPolicy(net, check_tasks(p["tasks"]))


# ---------------------------------------------------------------------------------------------------
# SB3 from scratch, one model per task


class SB3MTPolicy:
    """Per-task SB3 models (``rlpf.control.evaluate.SB3Policy``), deterministic, batched."""

    def __init__(self, models: dict):
        self.models, self.tasks = models, tuple(models)

    def reset(self, task, mask, seeds) -> None:
        pass

    def act(self, obs, task):
        m = self.models[task]
        x = m.vecnormalize.normalize_obs(obs) if m.vecnormalize is not None else obs
        return m.model.predict(np.asarray(x, np.float32), deterministic=True)[0]


def train_sb3_task(task: str, algo: str, steps: int, seed: int, out_dir: str, progress: bool = True):
    """SB3 SAC (defaults) or PPO (defaults, VecNormalize) from scratch on ``task``; ``out_dir/model.zip``
    (reused when present). Training episodes draw their scenes from the env's generator seeded with
    ``seed`` (SB3 seeds the first reset), a stream apart from the evaluation's per-episode seeds."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlpf.control.evaluate import learn_sb3, load_sb3

    if os.path.isfile(os.path.join(out_dir, "model.zip")):
        return load_sb3(out_dir)
    venv = DummyVecEnv([lambda: Monitor(make_task_env(task))])
    venv.seed(seed)
    return learn_sb3(venv, algo, steps, seed, out_dir, task, progress)
