"""``rlpf train`` over a suite of tasks: one RLPF run per task, one report over all of them.

A suite config (a YAML file with ``runs:``, e.g. experiments/configs/rlpf_metaworld.yaml) names one
RLPF config per task. Each trains into ``RUN/<name>/`` exactly as ``rlpf train --config THAT --out
RUN/<name>`` would (cached, resumable, its own report and videos); ``RUN/report.json`` then holds
every run's before / after and a per-task table with the mean over tasks:

    {"suite": {name: {"world", "method", "before", "after", "change"}},
     "table": [{"task": name, "world", metric: [base, after], ...}, ...],
     "mean": {metric: [base, after]}, "failed": {name: error}}

One task whose run fails (bad config, a crash) is recorded under ``failed`` with its error and the
others still run; the command then exits non-zero.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np

from rlpf.core.config import ConfigError, check
from rlpf.core.errors import RLPFError
from rlpf.core.run_dir import claim_run_dir, locks_run_dir, read_json, write_json

SUITE_KEY = "runs"
"""A YAML config with this top-level key is a suite (RLPFConfig has no such field)."""
METRICS = ("tracking_success", "plausible_rate", "command_accuracy", "task_success", "fid", "diversity")
"""Headline numbers of the per-task table, base and after."""


@dataclass
class SuiteConfig:
    """Several RLPF runs, one per task, reported together."""

    runs: dict[str, str] = field(default_factory=dict)
    """Run name -> RLPF config YAML (RLPFConfig fields), optionally followed by key=value overrides of
    that run alone, shell-quoted ("rlpf_metaworld_push.yaml method=sft_filter"); each trains into RUN/<name>/."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides applied to every run's config (e.g. grpo.steps=50), before the command line's."""

    def __post_init__(self):
        check(self, bool(self.runs), "runs", self.runs, "a non-empty mapping of task name -> RLPF config file")
        for name, path in self.runs.items():
            check(self, bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name,
                  "runs", name, "task names usable as directory names (no '/', not '.' or '..')")
            check(self, isinstance(path, str) and bool(path.strip()), f"runs.{name}", path,
                  "the path of an RLPF config file (then optional key=value overrides)")


def is_suite(raw: dict) -> bool:
    return isinstance(raw, dict) and SUITE_KEY in raw


def run_configs(cfg: SuiteConfig, overrides: list[str] = ()) -> dict:
    """Every task's RLPFConfig, loaded up front so a typo in any of them stops the suite before training."""
    import shlex

    from rlpf.core.config import load_config
    from rlpf.finetune.pipeline import RLPFConfig

    out = {}
    for name, entry in cfg.runs.items():
        try:
            path, *own = shlex.split(entry)
        except ValueError as e:
            raise ConfigError(f"suite run {name!r}: cannot read {entry!r}: {e}") from None
        if not os.path.isfile(path):
            raise ConfigError(f"suite run {name!r}: config file {path} not found")
        try:
            out[name] = load_config(RLPFConfig, path, [*cfg.overrides, *own, *overrides])
        except ConfigError as e:
            raise ConfigError(f"suite run {name!r}: {e}") from None
    return out


@locks_run_dir
def train_suite(cfg: SuiteConfig, run_dir: str, overrides: list[str] = (), progress: bool = True) -> dict:
    """Train (or resume) every task's run into RUN/<name>/ and write RUN/report.json / report.md."""
    from rlpf.finetune.pipeline import train_rlpf

    configs = run_configs(cfg, list(overrides))
    claim_run_dir(cfg, run_dir)
    reports, failed = {}, {}
    for i, (name, run_cfg) in enumerate(configs.items()):
        if progress:
            print(f"[suite {i + 1}/{len(configs)}] {name}: {run_cfg.world}, method {run_cfg.method}", file=sys.stderr, flush=True)
        sub = os.path.join(run_dir, name)
        try:
            train_rlpf(run_cfg, sub, progress=progress)
            reports[name] = read_json(os.path.join(sub, "report.json"))
        except (RLPFError, RuntimeError, ValueError, OSError) as e:   # one task's failure leaves the others
            failed[name] = f"{type(e).__name__}: {e}"
            if progress:
                print(f"[suite] {name} failed: {failed[name]}", file=sys.stderr, flush=True)
    report = suite_report(reports, failed)
    write_json(os.path.join(run_dir, "report.json"), report)
    with open(os.path.join(run_dir, "report.md"), "w") as f:
        f.write(format_suite(report))
    return report


def suite_report(reports: dict[str, dict], failed: dict[str, str]) -> dict:
    suite, table = {}, []
    for name, r in reports.items():
        suite[name] = {k: r.get(k) for k in ("world", "method", "before", "after", "change")}
        row = {"task": name, "world": r.get("world")}
        for m in METRICS:
            b, a = r["before"].get(m), r["after"].get(m)
            if b is not None or a is not None:
                row[m] = [b, a]
        for term in sorted(set(r["before"].get("physics", {})) | set(r["after"].get("physics", {}))):
            if term.startswith(("object_", "articulation_", "robot_object_")):
                row[f"physics.{term}"] = [r["before"].get("physics", {}).get(term), r["after"].get("physics", {}).get(term)]
        table.append(row)
    mean = {}
    for m in METRICS:
        pairs = [row[m] for row in table if m in row and None not in row[m]]
        if pairs:
            mean[m] = [round(float(np.mean([p[0] for p in pairs])), 4), round(float(np.mean([p[1] for p in pairs])), 4)]
    return {"suite": suite, "table": table, "mean": mean, "failed": failed}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def format_suite(report: dict) -> str:
    cols = [m for m in METRICS if any(m in row for row in report["table"])]
    lines = ["# RLPF suite: base -> after, per task", "",
             "| task | world | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for row in report["table"]:
        cells = [f"{_fmt(row[m][0])} -> {_fmt(row[m][1])}" if m in row else "-" for m in cols]
        lines.append(f"| {row['task']} | `{row['world']}` | " + " | ".join(cells) + " |")
    if report["mean"]:
        lines.append("| **mean** | | " + " | ".join(
            f"{_fmt(report['mean'][m][0])} -> {_fmt(report['mean'][m][1])}" if m in report["mean"] else "-" for m in cols) + " |")
    terms = sorted({k for row in report["table"] for k in row if k.startswith("physics.")})
    if terms:
        lines += ["", "Object terms (mean over clips, base -> after; lower is better):", "",
                  "| task | " + " | ".join(t[len("physics."):] for t in terms) + " |", "|---" * (len(terms) + 1) + "|"]
        for row in report["table"]:
            lines.append(f"| {row['task']} | " + " | ".join(
                f"{_fmt(row[t][0])} -> {_fmt(row[t][1])}" if t in row else "-" for t in terms) + " |")
    for name, err in report.get("failed", {}).items():
        lines += ["", f"**{name} failed**: {err}"]
    lines += ["", "Each task's own report, samples and videos: RUN/<task>/report.md, samples/, videos/."]
    return "\n".join(lines) + "\n"
