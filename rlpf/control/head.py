"""A PhysBrain-style control head on the world model: action query tokens -> hidden states -> actions.

The causal LM of a world model reads, as one sequence of input embeddings,

    <bos> push the object away <motion> | m412 m77 m9 m530 | [obs] | [q1] [q2] [q3] [q4]
    ---------- prompt ---------------------  recent motion   state   action query tokens

* the task prompt (``rlpf.control.demos.task_prompt``: on Pusher-v5 the direction from the object to
  the goal in the pusher world's prompt words; on Reacher-v5 "reach without pushing"),
* observed-state tokens: the last ``history`` frames of the simulator's qpos as the world model's own
  motion codes (one per 4 frames, through its motion tokenizer) when the task runs the backbone's
  world (Pusher-v5 on a pusher model), and ``obs_tokens`` learned projections of the observation
  vector (any task: this is how a world model sees a robot it was not trained on, e.g. Reacher-v5),
* ``n_queries`` learned action query tokens. Their last-layer hidden states (the causal LM's
  ``model`` output, after the final norm) are concatenated -- with the normalized observation when
  ``state_to_head`` (GR00T's state path) -- and fed to the action head, which predicts a chunk of
  ``chunk`` actions; the policy executes the first ``execute`` of them, then re-plans.

Heads: ``mlp`` (regression, MSE on normalized actions) or ``flow`` (flow matching as in PhysBrain /
GR00T / pi0: a velocity network v(x_t, t | hidden states) trained on x_t = (1 - t) noise + t actions
toward actions - noise, sampled with ``flow_steps`` Euler steps from seeded noise, so evaluation stays
deterministic). The backbone is frozen by default (``finetune_backbone=True`` trains it too, and the
policy file then carries its weights).

Training is behaviour cloning on scripted demonstrations (``rlpf.control.demos``) with
``rlpf.worldmodel.training.run_stage`` (resumable, TensorBoard ``<name>/loss``, progress bar). ``MLPPolicy`` is
the baseline without a world model: an MLP from the raw observation to one action, trained on the same
demonstrations. ``WorldModelFeaturesExtractor`` puts the same query-token encoder into SB3
(``policy_kwargs=dict(features_extractor_class=WorldModelFeaturesExtractor, features_extractor_kwargs=
dict(backbone=PATH, prompt=...))``) for RL fine-tuning with the world model as the features extractor.

Policy files (``policy.pt``) hold the kind, the task, observation / action sizes, the config, the
trained weights and (control head) the backbone's path and world; ``load_policy_file`` refuses a
missing file, a missing backbone, or a backbone of another world with an error that names them.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

POLICY_FORMAT = 1


@dataclass
class ControlHeadConfig:
    """The control head's architecture."""

    n_queries: int = 4
    """Action query tokens appended after the prompt and the observed-state tokens."""
    obs_tokens: int = 1
    """Input tokens made from the observation vector by a learned linear projection."""
    history: int = 16
    """Frames of qpos history given as motion codes (a multiple of the tokenizer's 4 frames; 0: none).
    Used only when the task runs the backbone's world (Pusher-v5 on a pusher world model)."""
    chunk: int = 1
    """Actions predicted per query pass (an action chunk; PhysBrain / GR00T use 4-16)."""
    execute: int = 1
    """Actions of each chunk executed before the head re-plans (1..chunk)."""
    head: str = "mlp"
    """Action head: mlp (regression) or flow (flow matching)."""
    head_hidden: int = 256
    """Width of the action head's two hidden layers."""
    flow_steps: int = 10
    """Euler steps of the flow-matching sampler."""
    finetune_backbone: bool = False
    """Train the backbone's weights too (default: frozen, only queries, projections and head learn)."""
    state_to_head: bool = True
    """Also give the normalized observation straight to the action head (as GR00T gives robot state to its
    action head); false: the head sees only the query tokens' hidden states."""

    def __post_init__(self):
        from rlpf.core.config import check

        check(self, self.head in ("mlp", "flow"), "head", self.head, "'mlp' or 'flow'")
        for name in ("n_queries", "obs_tokens", "chunk", "execute", "head_hidden", "flow_steps"):
            check(self, getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        check(self, self.execute <= self.chunk, "execute", self.execute, f"at most chunk ({self.chunk})")
        check(self, self.history >= 0 and self.history % 4 == 0, "history", self.history,
              "a non-negative multiple of 4 frames")


class Normalizer(nn.Module):
    """Fixed per-dimension mean / std from the demonstrations (constant dimensions keep std 1)."""

    def __init__(self, data: np.ndarray | int):
        super().__init__()
        if isinstance(data, int):
            mean, std = np.zeros(data), np.ones(data)
        else:
            flat = np.asarray(data, np.float64).reshape(-1, np.shape(data)[-1])
            mean, std = flat.mean(0), flat.std(0)
            std = np.where(std < 1e-6, 1.0, std)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.std

    def inverse(self, x):
        return x * self.std + self.mean


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, n_out))


class QueryEncoder(nn.Module):
    """Prompt ids + motion-code ids + normalized observation -> hidden states of the query tokens."""

    def __init__(self, lm, obs_size: int, n_queries: int, obs_tokens: int, finetune: bool):
        super().__init__()
        self.lm = lm
        hidden = lm.config.hidden_size
        self.hidden, self.n_queries, self.obs_tokens = hidden, n_queries, obs_tokens
        emb = lm.get_input_embeddings().weight
        scale = float(emb.detach().std())   # new tokens start at the size of the backbone's own embeddings
        gen = torch.Generator().manual_seed(0)
        self.queries = nn.Parameter(torch.randn(n_queries, hidden, generator=gen) * scale)
        self.obs_proj = nn.Linear(obs_size, hidden * obs_tokens)
        self.register_buffer("embed_scale", torch.tensor(scale))
        lm.requires_grad_(finetune)

    @property
    def out_dim(self) -> int:
        return self.n_queries * self.hidden

    def forward(self, prompt_ids, prompt_mask, code_ids, obs):
        emb = self.lm.get_input_embeddings()
        b = obs.shape[0]
        prefix, masks = [emb(prompt_ids)], [prompt_mask]
        if code_ids is not None and code_ids.shape[1]:
            prefix.append(emb(code_ids))
            masks.append(torch.ones(code_ids.shape, dtype=prompt_mask.dtype))
        suffix = torch.cat([self.obs_proj(obs).view(b, self.obs_tokens, self.hidden) * self.embed_scale,
                            self.queries.expand(b, -1, -1)], 1)
        masks.append(torch.ones(b, suffix.shape[1], dtype=prompt_mask.dtype))
        mask = torch.cat(masks, 1)
        position_ids = (mask.cumsum(1) - 1).clamp(min=0)   # prompts are left-padded
        prefix = torch.cat(prefix, 1)
        n = prefix.shape[1]
        if any(p.requires_grad for p in self.lm.parameters()):
            out = self.lm.model(inputs_embeds=torch.cat([prefix, suffix], 1), attention_mask=mask,
                                position_ids=position_ids).last_hidden_state
        else:
            # frozen backbone: the prompt and motion codes hold nothing trainable, so their keys and values
            # are computed once without gradients and only the observation + query tokens are backpropagated
            # (same numbers, ~2x faster training)
            with torch.no_grad():
                cache = self.lm.model(inputs_embeds=prefix, attention_mask=mask[:, :n],
                                      position_ids=position_ids[:, :n], use_cache=True).past_key_values
            out = self.lm.model(inputs_embeds=suffix, attention_mask=mask, position_ids=position_ids[:, n:],
                                past_key_values=cache, use_cache=True).last_hidden_state
        return out[:, -self.n_queries:].reshape(b, -1)


class ControlHead(nn.Module):
    """QueryEncoder + action head (mlp or flow) with the demonstrations' normalizers."""

    def __init__(self, lm, cfg: ControlHeadConfig, obs_size: int, act_size: int, obs_norm: Normalizer,
                 act_norm: Normalizer):
        super().__init__()
        self.cfg, self.obs_size, self.act_size = cfg, obs_size, act_size
        self.encoder = QueryEncoder(lm, obs_size, cfg.n_queries, cfg.obs_tokens, cfg.finetune_backbone)
        self.obs_norm, self.act_norm = obs_norm, act_norm
        n_out = cfg.chunk * act_size
        n_cond = self.encoder.out_dim + (obs_size if cfg.state_to_head else 0)
        if cfg.head == "mlp":
            self.head = _mlp(n_cond, cfg.head_hidden, n_out)
        else:
            self.head = _mlp(n_cond + n_out + 32, cfg.head_hidden, n_out)

    def condition(self, batch: dict) -> torch.Tensor:
        obs = self.obs_norm(batch["obs"])
        hidden = self.encoder(batch["prompt_ids"], batch["prompt_mask"], batch.get("code_ids"), obs)
        return torch.cat([hidden, obs], 1) if self.cfg.state_to_head else hidden

    def _velocity(self, x, t, cond):
        freqs = torch.exp(torch.arange(16) * (-math.log(1000.0) / 16))
        ang = t[:, None] * 1000.0 * freqs[None]
        return self.head(torch.cat([x, cond, torch.sin(ang), torch.cos(ang)], 1))

    def loss(self, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        cond = self.condition(batch)
        target = self.act_norm(batch["actions"]).flatten(1)
        if self.cfg.head == "mlp":
            loss = ((self.head(cond) - target) ** 2).mean()
            return loss, {}
        noise = torch.randn(target.shape, generator=gen)
        t = torch.rand(target.shape[0], generator=gen)
        x_t = (1 - t[:, None]) * noise + t[:, None] * target
        loss = ((self._velocity(x_t, t, cond) - (target - noise)) ** 2).mean()
        return loss, {}

    @torch.no_grad()
    def predict(self, batch: dict, gen: torch.Generator | None = None) -> torch.Tensor:
        """Action chunks [B, chunk, act] in the env's units."""
        cond = self.condition(batch)
        b, n = cond.shape[0], self.cfg.chunk * self.act_size
        if self.cfg.head == "mlp":
            out = self.head(cond)
        else:
            out = torch.randn(b, n, generator=gen)
            for k in range(self.cfg.flow_steps):
                t = torch.full((b,), k / self.cfg.flow_steps)
                out = out + self._velocity(out, t, cond) / self.cfg.flow_steps
        return self.act_norm.inverse(out.view(b, self.cfg.chunk, self.act_size))


# ---------------------------------------------------------------------------------------------------
# inputs from demonstrations and from a running env


def history_windows(qpos: np.ndarray, t: np.ndarray | int, frames: int) -> np.ndarray:
    """qpos [T, nq] -> the ``frames`` frames ending at step ``t`` (the start repeated before frame 0)."""
    t = np.atleast_1d(t)
    idx = np.clip(t[:, None] + np.arange(-frames + 1, 1)[None], 0, None)
    return qpos[idx]


def prompt_batch(wm, prompts) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and attention mask for a list of prompts."""
    ids = [wm.prompt_ids(p) for p in prompts]
    width = max(len(i) for i in ids)
    pad = wm.text_tokenizer.pad_token_id
    out = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for k, i in enumerate(ids):
        out[k, width - len(i):], mask[k, width - len(i):] = torch.tensor(i), 1
    return out, mask


def uses_codes(wm, env_id: str, cfg: ControlHeadConfig) -> bool:
    from rlpf.control.tasks import get_task

    return cfg.history > 0 and get_task(env_id).world == wm.world


def demo_codes(wm, qpos: np.ndarray, frames: int, batch: int = 4096) -> np.ndarray:
    """Motion-code token ids [E, T, frames/4] of the history window before every demonstration step."""
    e, t, nq = qpos.shape
    windows = np.concatenate([history_windows(q, np.arange(t), frames) for q in qpos])   # [E*T, frames, nq]
    codes = np.concatenate([wm.motion_tokenizer.encode_qpos(windows[i:i + batch], wm.fps)
                            for i in range(0, len(windows), batch)])
    return (codes + wm.code_offset).reshape(e, t, -1)


class ControlHeadPolicy:
    """A trained control head acting in a gymnasium env (``rlpf.control.evaluate`` policy protocol)."""

    def __init__(self, head: ControlHead, wm, env_id: str, backbone: str = ""):
        self.head, self.wm, self.env_id, self.backbone = head.eval(), wm, env_id, backbone
        self.obs_size, self.act_size = head.obs_size, head.act_size
        self.codes = uses_codes(wm, env_id, head.cfg)

    def reset(self, env, seed: int) -> None:
        from rlpf.control.demos import task_prompt

        self.prompt_ids, self.prompt_mask = prompt_batch(self.wm, [task_prompt(self.env_id, env)])
        self.history: list[np.ndarray] = []
        self.queue: list[np.ndarray] = []
        self.gen = torch.Generator().manual_seed(int(seed))

    def act(self, obs, env):
        self.history.append(env.unwrapped.data.qpos.copy())
        if not self.queue:
            batch = {"prompt_ids": self.prompt_ids, "prompt_mask": self.prompt_mask,
                     "obs": torch.as_tensor(np.asarray(obs, np.float32))[None]}
            if self.codes:
                window = history_windows(np.array(self.history), len(self.history) - 1, self.head.cfg.history)
                codes = self.wm.motion_tokenizer.encode_qpos(window, self.wm.fps) + self.wm.code_offset
                batch["code_ids"] = torch.as_tensor(codes, dtype=torch.long)
            chunk = self.head.predict(batch, self.gen)[0].numpy()
            self.queue = list(chunk[: self.head.cfg.execute])
        return self.queue.pop(0)


class MLPNet(nn.Module):
    def __init__(self, obs_norm: Normalizer, act_norm: Normalizer, hidden: int = 256):
        super().__init__()
        self.obs_norm, self.act_norm = obs_norm, act_norm
        self.obs_size, self.act_size = len(obs_norm.mean), len(act_norm.mean)
        self.net = _mlp(self.obs_size, hidden, self.act_size)

    def loss(self, batch: dict, gen=None):
        pred = self.net(self.obs_norm(batch["obs"]))
        return ((pred - self.act_norm(batch["actions"][:, 0])) ** 2).mean(), {}


class MLPPolicy:
    """Behaviour cloning on the raw observation (no world model): obs -> action."""

    def __init__(self, net: MLPNet, env_id: str):
        self.net, self.env_id = net.eval(), env_id
        self.obs_size, self.act_size = net.obs_size, net.act_size

    def reset(self, env, seed: int) -> None:
        pass

    @torch.no_grad()
    def act(self, obs, env):
        x = torch.as_tensor(np.asarray(obs, np.float32))[None]
        return self.net.act_norm.inverse(self.net.net(self.net.obs_norm(x)))[0].numpy()


# ---------------------------------------------------------------------------------------------------
# training


@dataclass
class BCSpec:
    """Optimisation of one behaviour-cloning run."""

    steps: int = 2000
    batch: int = 128
    lr: float = 1e-3
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500


def _demo_tensors(demos: dict):
    obs = torch.as_tensor(demos["obs"], dtype=torch.float32)
    actions = torch.as_tensor(demos["actions"], dtype=torch.float32)
    return obs, actions


def _sample(gen, n_ep: int, n_t: int, batch: int):
    e = torch.randint(n_ep, (batch,), generator=gen)
    t = torch.randint(n_t, (batch,), generator=gen)
    return e, t


def train_control_head(backbone: str, demos: dict, cfg: ControlHeadConfig, out_dir: str, spec: BCSpec,
                       progress: bool = True) -> ControlHeadPolicy:
    """Behaviour-clone a control head on ``demos``; ``out_dir/policy.pt`` (reused when present)."""
    from rlpf.worldmodel.training import StageSpec, run_stage
    from rlpf.worldmodel.model import WorldModel, resolve_checkpoint

    env_id = str(demos["env_id"])
    path = os.path.join(out_dir, "policy.pt")
    if os.path.isfile(path):
        return load_policy_file(path)
    backbone = os.path.abspath(resolve_checkpoint(backbone))
    wm = WorldModel.from_pretrained(backbone)
    obs, actions = _demo_tensors(demos)
    n_ep, n_t = obs.shape[:2]
    if n_t < cfg.chunk:
        raise ValueError(f"demonstrations of {n_t} steps are shorter than one action chunk ({cfg.chunk})")
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        head = ControlHead(wm.lm, cfg, obs.shape[-1], actions.shape[-1], Normalizer(demos["obs"]),
                           Normalizer(demos["actions"]))
    prompt_ids, prompt_mask = prompt_batch(wm, [str(p) for p in demos["prompt"]])
    codes = (torch.as_tensor(demo_codes(wm, demos["qpos"], cfg.history), dtype=torch.long)
             if uses_codes(wm, env_id, cfg) else None)
    offsets = torch.arange(cfg.chunk)

    def batch_fn(gen):
        e, t = _sample(gen, n_ep, n_t - cfg.chunk + 1, spec.batch)
        b = {"prompt_ids": prompt_ids[e], "prompt_mask": prompt_mask[e], "obs": obs[e, t],
             "actions": actions[e[:, None], t[:, None] + offsets[None]], "gen": gen}
        if codes is not None:
            b["code_ids"] = codes[e, t]
        return b

    run_stage(StageSpec("control_head", spec.steps, spec.lr, warmup=min(100, spec.steps // 10),
                        weight_decay=1e-4, log_every=spec.log_every, ckpt_every=spec.ckpt_every, seed=spec.seed),
              out_dir, head, batch_fn, lambda b: head.loss(b, b["gen"]), progress=progress)
    state = {k: v for k, v in head.state_dict().items()
             if cfg.finetune_backbone or not k.startswith("encoder.lm.")}
    _save(path, {"kind": "control_head", "env_id": env_id, "obs_size": head.obs_size, "act_size": head.act_size,
                 "config": dataclasses.asdict(cfg), "backbone": backbone, "world": wm.world, "state": state})
    return ControlHeadPolicy(head.eval(), wm, env_id, backbone)


def train_mlp_bc(demos: dict, out_dir: str, spec: BCSpec, hidden: int = 256, progress: bool = True) -> MLPPolicy:
    """Behaviour-clone an MLP on the raw observations of ``demos``; ``out_dir/policy.pt`` (reused when present)."""
    from rlpf.worldmodel.training import StageSpec, run_stage

    env_id = str(demos["env_id"])
    path = os.path.join(out_dir, "policy.pt")
    if os.path.isfile(path):
        return load_policy_file(path)
    obs, actions = _demo_tensors(demos)
    n_ep, n_t = obs.shape[:2]
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        net = MLPNet(Normalizer(demos["obs"]), Normalizer(demos["actions"]), hidden)

    def batch_fn(gen):
        e, t = _sample(gen, n_ep, n_t, spec.batch)
        return {"obs": obs[e, t], "actions": actions[e, t][:, None]}

    run_stage(StageSpec("mlp_bc", spec.steps, spec.lr, warmup=min(100, spec.steps // 10), weight_decay=1e-4,
                        log_every=spec.log_every, ckpt_every=spec.ckpt_every, seed=spec.seed),
              out_dir, net, batch_fn, net.loss, progress=progress)
    _save(path, {"kind": "mlp_bc", "env_id": env_id, "obs_size": net.obs_size, "act_size": net.act_size,
                 "hidden": hidden, "state": net.state_dict()})
    return MLPPolicy(net, env_id)


def _save(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save({"format": POLICY_FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def read_policy_file(path: str) -> dict:
    """The dict in a ``policy.pt`` (with its ``kind``), read as tensors and plain data only: a policy
    file someone shares must not run code when it is opened. PolicyLoadError naming the file otherwise."""
    from rlpf.control.tasks import PolicyLoadError
    from rlpf.core.safe_load import UnsafeFileError, load_tensors

    if not os.path.isfile(path):
        raise PolicyLoadError(f"policy {path}: no such file")
    try:
        p = load_tensors(path, what="policy file")
        p["kind"]
    except UnsafeFileError as e:
        raise PolicyLoadError(f"policy {path}: {e.problem}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged files
        raise PolicyLoadError(f"policy {path}: not a readable rlpf policy file ({type(e).__name__}: {e})") from None
    return p


def load_policy_file(path: str):
    """A ``policy.pt`` written by ``train_control_head`` or ``train_mlp_bc``, ready to act."""
    from rlpf.control.tasks import PolicyLoadError
    from rlpf.core.errors import CheckpointError
    from rlpf.worldmodel.model import WorldModel

    p = read_policy_file(path)
    kind = p["kind"]
    if kind == "mlp_bc":
        net = MLPNet(Normalizer(p["obs_size"]), Normalizer(p["act_size"]), p["hidden"])
        net.load_state_dict(p["state"])
        return MLPPolicy(net, p["env_id"])
    if kind != "control_head":
        raise PolicyLoadError(f"policy {path}: unknown policy kind {kind!r}")
    try:
        wm = WorldModel.from_pretrained(p["backbone"], world=p["world"])
    except (FileNotFoundError, CheckpointError) as e:
        raise PolicyLoadError(f"policy {path}: its backbone world model ({p['world']}) cannot be loaded: {e}") from None
    cfg = ControlHeadConfig(**p["config"])
    head = ControlHead(wm.lm, cfg, p["obs_size"], p["act_size"], Normalizer(p["obs_size"]), Normalizer(p["act_size"]))
    missing, unexpected = head.load_state_dict(p["state"], strict=False)
    bad = [k for k in missing if not k.startswith("encoder.lm.")] + list(unexpected)
    if bad:
        raise PolicyLoadError(f"policy {path}: weights do not fit the control head ({bad[:5]})")
    return ControlHeadPolicy(head.eval(), wm, p["env_id"], p["backbone"])


# ---------------------------------------------------------------------------------------------------
# SB3: the world model as a features extractor


def _features_extractor_base():
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    return BaseFeaturesExtractor


class WorldModelFeaturesExtractor(_features_extractor_base()):
    """SB3 features extractor: observation -> prompt + observation tokens + query tokens -> hidden states.

    ``backbone`` is a world model (run) directory, ``prompt`` the fixed task prompt; the backbone is
    frozen unless ``finetune=True``. Observations are normalized by SB3 (VecNormalize) or not at all.
    """

    def __init__(self, observation_space, backbone: str, prompt: str, n_queries: int = 2, obs_tokens: int = 1,
                 finetune: bool = False):
        from rlpf.worldmodel.model import WorldModel

        wm = WorldModel.from_pretrained(backbone)
        obs_size = int(np.prod(observation_space.shape))
        encoder = QueryEncoder(wm.lm, obs_size, n_queries, obs_tokens, finetune)
        super().__init__(observation_space, encoder.out_dim)
        self.encoder = encoder
        ids, mask = prompt_batch(wm, [prompt])
        self.register_buffer("prompt_ids", ids)
        self.register_buffer("prompt_mask", mask)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        b = observations.shape[0]
        return self.encoder(self.prompt_ids.expand(b, -1), self.prompt_mask.expand(b, -1), None,
                            observations.flatten(1).float())
