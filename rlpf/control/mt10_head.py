"""The control head on Meta-World MT10: ONE multi-task head on a multi-world world model.

``rlpf.control.head``'s query-token head (``ControlHead``: prompt + observed-state tokens + action
query tokens -> the LM's hidden states -> an MLP or flow-matching action head), read through a
``rlpf.worldmodel.multiworld.MultiWorldModel`` whose worlds include every task's ``metaworld/<task>``:

    <bos> <world:metaworld/push-v3> push the puck to a new spot <motion> | m.. m.. m.. m.. | [obs] | [q1]..[qn]
    ------------------ the task's prompt ----------------------------      recent motion    state   queries

* the prompt is the task in the world model's own words: its world's marker and the world's *task
  prompt* (the training prompt that asks for the task done, ``MultiWorldModel.task_prompts``; e.g.
  "open the drawer", whose clips reach Meta-World's own success distance). ``rlpf.control.mt10.PROMPTS``
  (the Meta-World paper's wording, "push the puck to a goal") holds words no world model was trained on.
  reach-v3 has no labelled data, so no world of its own: it reads through push-v3's world (the same
  scene and qpos) with the prompt of its motion, "move the arm without moving the puck" (``STAND_INS``);
* the observed state: the last ``history`` frames of the task's qpos as *its world's* motion codes (each
  world's own tokenizer, codes in its own id range), frames taken every ``stride`` env steps so they
  are at the world model's frame rate (Meta-World's env steps at 80 Hz, its clips are 40 fps: stride
  2), the episode's first frame repeated before its start; plus ``obs_tokens`` projections of the
  39-d observation;
* one head for all tasks: the same queries, projections and action head; the task is in the prompt.

Trained by behaviour cloning on ``rlpf.control.mt10.collect_mt_demos``'s multi-task demonstrations
(the MLP BC row's data: ``demos["qpos__<task>"]`` gives the motion codes), batches uniform over all
demonstration steps, with ``rlpf.worldmodel.training.run_stage`` (resumable). Evaluation follows the
batched protocol of ``rlpf.control.mt10`` (``reset(task, mask, seeds)``, ``observe(venv)`` - the
simulator states of the vector env's slots, which the 39-d observation does not hold - and
``act(obs [n, 39], task)``): one LM forward per re-plan for the slots whose action chunk is used up.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from rlpf.control.head import BCSpec, ControlHead, ControlHeadConfig, Normalizer, _save, read_policy_file
from rlpf.control.mt10 import MT10, check_tasks
from rlpf.control.tasks import PolicyLoadError
from rlpf.core.errors import CheckpointError, RLPFError

POLICY_KIND = "mt10_control_head"


class MT10BackboneError(RLPFError, ValueError):
    """A backbone that cannot carry the MT10 head: not a multi-world model, or without a task's world."""


def task_world(task: str) -> str:
    """The world of an MT10 task: ``metaworld/<task>``."""
    return f"metaworld/{task}"


STAND_INS: dict[str, tuple[str, str]] = {"reach-v3": ("metaworld/push-v3", "move the arm without moving the puck")}
"""A task without labelled data of its own (so no world in a pretrained model) -> the world of the same
scene whose tokenizer reads its qpos, and that world's prompt that describes the task's motion.
reach-v3's scene is push-v3's (the Sawyer and a puck, the same 10 joints and qpos layout, checked in
the tests) and reaching moves the hand without touching the puck: push's "not at all" prompt."""


def task_inputs(meta: dict, tasks, path: str = "backbone") -> dict[str, tuple[str, str]]:
    """task -> (the world whose codes the head reads, the prompt it reads) in a multi-world model's
    description: the task's own world and its task prompt, else its stand-in (``STAND_INS``);
    MT10BackboneError naming the tasks the model has neither for."""
    worlds, prompts = list(meta.get("worlds") or []), dict(meta.get("prompts") or {})
    task_prompts = dict(meta.get("task_prompts") or {})
    out, missing = {}, []
    for t in tasks:
        own, stand_in = task_world(t), STAND_INS.get(t)
        if own in worlds and task_prompts.get(own):
            out[t] = (own, task_prompts[own])
        elif stand_in and stand_in[0] in worlds and stand_in[1] in prompts.get(stand_in[0], []):
            out[t] = stand_in
        else:
            missing.append(t)
    if missing:
        raise MT10BackboneError(
            f"backbone {path}: no world for task(s) {missing} (its worlds: {worlds}, task prompts: {task_prompts}); "
            "pretrain it with those worlds or leave the tasks out of `tasks`")
    return out


def check_backbone(path: str, tasks) -> dict[str, tuple[str, str]]:
    """``task_inputs`` of the backbone at ``path`` when it is a multi-world model with every task's world
    (read from its ``world_model.json``, no weights); MT10BackboneError naming what is missing otherwise."""
    from rlpf.worldmodel.multiworld import KIND, read_meta

    tasks = check_tasks(tasks)
    try:
        meta = read_meta(path)
    except (FileNotFoundError, CheckpointError) as e:
        raise MT10BackboneError(f"backbone {path}: no world model ({e})") from None
    if meta.get("kind") != KIND:
        raise MT10BackboneError(
            f"backbone {path}: a one-world model (world {meta.get('world')!r}); the MT10 head needs a multi-world "
            "Meta-World model (rlpf pretrain --config experiments/configs/metaworld_mt10.yaml)")
    return task_inputs(meta, tasks, path)


def model_inputs(wm, tasks) -> dict[str, tuple[str, str]]:
    """``task_inputs`` of a loaded MultiWorldModel."""
    return task_inputs({"worlds": wm.worlds, "prompts": wm.prompts, "task_prompts": wm.task_prompts}, tasks)


def _prompt_table(wm, inputs: dict[str, tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and masks [len(MT10), width] (rows of tasks not given stay padding)."""
    ids = {t: wm.prompt_ids(prompt, world) for t, (world, prompt) in inputs.items()}
    width = max(len(i) for i in ids.values())
    pad = wm.text_tokenizer.pad_token_id
    out = torch.full((len(MT10), width), pad, dtype=torch.long)
    mask = torch.zeros((len(MT10), width), dtype=torch.long)
    for t, i in ids.items():
        k = MT10.index(t)
        out[k, width - len(i):], mask[k, width - len(i):] = torch.tensor(i), 1
    return out, mask


def frame_stride(wm, task: str) -> int:
    """Env steps per world-model frame: the world's simulation rate over the model's clip rate."""
    from rlpf.envs.worlds import get_world

    ratio = get_world(task_world(task)).fps / wm.fps
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise MT10BackboneError(f"{task}: env rate {get_world(task_world(task)).fps} Hz is not a whole multiple of "
                                f"the world model's {wm.fps} fps")
    return int(round(ratio))


def window_offsets(history: int, stride: int) -> np.ndarray:
    """How far back (env steps) each history frame lies, oldest first: stride*(history-1) .. 0."""
    return stride * np.arange(history - 1, -1, -1)


def demo_code_ids(wm, demos: dict, tasks, history: int) -> np.ndarray:
    """Motion-code token ids [N, history/ds] of the history window before every demonstration step, each
    task through its world's tokenizer (ids in that world's range; ``model_inputs``)."""
    out = np.zeros((len(demos["obs"]), history // wm.downsample), np.int64)
    inputs = model_inputs(wm, tasks)
    for t in tasks:
        rows = np.flatnonzero(demos["task"] == MT10.index(t))
        qpos, steps = demos[f"qpos__{t}"], demos["step"][rows].astype(np.int64)
        back = np.minimum(window_offsets(history, frame_stride(wm, t))[None], steps[:, None])   # [n, history]
        windows = qpos[np.arange(len(rows))[:, None] - back]
        tok, off = wm.motion_tokenizers[inputs[t][0]], wm.code_offsets[inputs[t][0]]
        out[rows] = np.concatenate([tok.encode_qpos(windows[i:i + 4096], wm.fps)
                                    for i in range(0, len(windows), 4096)]) + off
    return out


class MTControlHeadPolicy:
    """The trained multi-task head acting on a vector env of one task (``rlpf.control.mt10`` protocol)."""

    def __init__(self, head: ControlHead, wm, tasks, backbone: str = ""):
        self.head, self.wm, self.tasks, self.backbone = head.eval(), wm, tuple(tasks), backbone
        self.inputs = model_inputs(wm, self.tasks)
        self.prompt_ids, self.prompt_mask = _prompt_table(wm, self.inputs)
        self.codes = head.cfg.history > 0
        self.history: list[list[np.ndarray]] = []
        self.queues: list[list[np.ndarray]] = []
        self.gen = torch.Generator().manual_seed(0)

    def reset(self, task: str, mask, seeds) -> None:
        n = len(mask)
        if len(self.history) != n:
            self.history, self.queues = [[] for _ in range(n)], [[] for _ in range(n)]
        for i in np.flatnonzero(mask):
            self.history[i], self.queues[i] = [], []
        if np.all(mask):   # a new evaluation batch: the flow head's noise restarts from its first seed
            self.gen = torch.Generator().manual_seed(int(seeds[0]))

    def observe(self, venv) -> None:
        """The simulator state of every slot, before ``act`` (what the motion codes are made of)."""
        if not self.codes:
            return
        for i, env in enumerate(venv.envs):
            self.history[i].append(env.unwrapped.data.qpos.copy())

    def code_ids(self, task: str, slots) -> np.ndarray:
        """Motion-code token ids [len(slots), history/ds] of the slots' recent frames (as ``demo_code_ids``
        makes them for the demonstrations: every ``frame_stride`` env steps, the first frame repeated)."""
        world = self.inputs[task][0]
        offsets = window_offsets(self.head.cfg.history, frame_stride(self.wm, task))
        windows = np.stack([np.array(self.history[i])[len(self.history[i]) - 1 - np.minimum(
            offsets, len(self.history[i]) - 1)] for i in slots])
        return self.wm.motion_tokenizers[world].encode_qpos(windows, self.wm.fps) + self.wm.code_offsets[world]

    @torch.no_grad()
    def act(self, obs, task: str) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        need = [i for i in range(len(obs)) if not self.queues[i]]
        if need:
            k = MT10.index(task)
            batch = {"prompt_ids": self.prompt_ids[k].expand(len(need), -1),
                     "prompt_mask": self.prompt_mask[k].expand(len(need), -1),
                     "obs": torch.as_tensor(obs[need])}
            if self.codes:
                batch["code_ids"] = torch.as_tensor(self.code_ids(task, need), dtype=torch.long)
            chunks = self.head.predict(batch, self.gen).numpy()
            for j, i in enumerate(need):
                self.queues[i] = list(chunks[j, : self.head.cfg.execute])
        return np.stack([self.queues[i].pop(0) for i in range(len(obs))])


def train_mt_head(backbone: str, demos: dict, cfg: ControlHeadConfig, out_dir: str, spec: BCSpec,
                  progress: bool = True) -> MTControlHeadPolicy:
    """Behaviour-clone ONE head for all of ``demos``' tasks on ``backbone`` (a multi-world model with
    their worlds); ``out_dir/policy.pt`` (reused when present)."""
    from rlpf.worldmodel.model import resolve_checkpoint
    from rlpf.worldmodel.multiworld import MultiWorldModel
    from rlpf.worldmodel.training import StageSpec, run_stage

    path = os.path.join(out_dir, "policy.pt")
    if os.path.isfile(path):
        return load_mt_head(path)
    tasks = check_tasks([str(t) for t in demos["tasks"]])
    check_backbone(backbone, tasks)
    backbone = os.path.abspath(resolve_checkpoint(backbone))
    wm = MultiWorldModel.from_pretrained(backbone)
    if cfg.history % wm.downsample:
        raise MT10BackboneError(f"head.history {cfg.history} is not a multiple of the world model's "
                                f"{wm.downsample} frames per code")
    obs = torch.as_tensor(demos["obs"], dtype=torch.float32)
    actions = torch.as_tensor(demos["actions"], dtype=torch.float32)
    task_idx = torch.as_tensor(demos["task"].astype(np.int64))
    episode = np.asarray(demos["episode"])
    # the last row of each row's episode: an action chunk does not run past its episode's end
    last = np.r_[np.flatnonzero(episode[1:] != episode[:-1]), len(episode) - 1]
    ep_end = torch.as_tensor(np.repeat(last, np.diff(np.r_[-1, last])))
    with torch.random.fork_rng():
        torch.manual_seed(spec.seed)
        head = ControlHead(wm.lm, cfg, obs.shape[-1], actions.shape[-1], Normalizer(demos["obs"]),
                           Normalizer(demos["actions"]))
    prompt_ids, prompt_mask = _prompt_table(wm, model_inputs(wm, tasks))
    codes = torch.as_tensor(demo_code_ids(wm, demos, tasks, cfg.history)) if cfg.history else None
    offsets = torch.arange(cfg.chunk)

    def batch_fn(gen):
        r = torch.randint(len(obs), (spec.batch,), generator=gen)
        chunk_rows = torch.minimum(r[:, None] + offsets[None], ep_end[r][:, None])
        b = {"prompt_ids": prompt_ids[task_idx[r]], "prompt_mask": prompt_mask[task_idx[r]], "obs": obs[r],
             "actions": actions[chunk_rows], "gen": gen}
        if codes is not None:
            b["code_ids"] = codes[r]
        return b

    run_stage(StageSpec("mt10_head", spec.steps, spec.lr, warmup=min(100, spec.steps // 10),
                        weight_decay=1e-4, log_every=spec.log_every, ckpt_every=spec.ckpt_every, seed=spec.seed),
              out_dir, head, batch_fn, lambda b: head.loss(b, b["gen"]), progress=progress)
    state = {k: v for k, v in head.state_dict().items()
             if cfg.finetune_backbone or not k.startswith("encoder.lm.")}
    _save(path, {"kind": POLICY_KIND, "tasks": tasks, "obs_size": head.obs_size, "act_size": head.act_size,
                 "config": dataclasses.asdict(cfg), "backbone": backbone, "state": state})
    return MTControlHeadPolicy(head.eval(), wm, tasks, backbone)


def load_mt_head(path: str) -> MTControlHeadPolicy:
    """A ``policy.pt`` of ``train_mt_head``, ready to act; PolicyLoadError naming the file otherwise."""
    from rlpf.worldmodel.multiworld import MultiWorldModel

    p = read_policy_file(path)
    if p["kind"] != POLICY_KIND:
        raise PolicyLoadError(f"policy {path}: a {p['kind']!r} policy, not an MT10 control head ({POLICY_KIND})")
    tasks = check_tasks(p["tasks"])
    try:
        wm = MultiWorldModel.from_pretrained(p["backbone"])
        model_inputs(wm, tasks)
    except (FileNotFoundError, CheckpointError, MT10BackboneError) as e:
        raise PolicyLoadError(f"policy {path}: its backbone world model cannot be loaded: {e}") from None
    cfg = ControlHeadConfig(**p["config"])
    head = ControlHead(wm.lm, cfg, p["obs_size"], p["act_size"], Normalizer(p["obs_size"]), Normalizer(p["act_size"]))
    missing, unexpected = head.load_state_dict(p["state"], strict=False)
    bad = [k for k in missing if not k.startswith("encoder.lm.")] + list(unexpected)
    if bad:
        raise PolicyLoadError(f"policy {path}: weights do not fit the control head ({bad[:5]})")
    return MTControlHeadPolicy(head.eval(), wm, tasks, p["backbone"])
