"""``rlpf pretrain``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_pretrain`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse

from rlpf.cli.help import lazy_epilog
from rlpf.core.config import describe


def add_parser(sub: argparse._SubParsersAction) -> None:
    pre = sub.add_parser(
        "pretrain", help="pretrain a world model: simulated data -> motion tokenizer -> causal LM -> evaluator",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pretrain a text-to-motion world model (FSQ motion tokenizer + tiny Llama over prompt words\n"
                    "and motion codes) on simulated, prompt-labelled clips. By default a fraction of the\n"
                    "training clips carries web-video-like physical artifacts, so the base model makes\n"
                    "physical errors for RLPF to remove (artifacts=0 turns that off).\n\n"
                    "Running the same command again resumes: finished stages are skipped and an interrupted\n"
                    "stage continues from its last checkpoint. Ctrl-C saves a checkpoint first.",
    )
    lazy_epilog(pre, lambda: "config fields (YAML via --config, or key=value; nested as tokenizer.hidden=64):\n"
                 + describe(_pretrain_config())
                 + "\n\nexamples:\n  rlpf pretrain --config experiments/configs/ant.yaml --out runs/ant\n"
                   "  rlpf pretrain --config experiments/configs/ant.yaml lm_steps=500 artifacts=0 --out runs/ant-clean\n"
                   "  rlpf pretrain --config experiments/configs/metaworld_mt10.yaml --out runs/metaworld-mt10   # one model, MT10 worlds")
    pre.add_argument("--config", help="YAML file with PretrainConfig fields (default: the built-in defaults)")
    pre.add_argument("--out", required=True, help="run directory (created; an existing one is resumed)")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    pre.set_defaults(overrides=[], func=cmd_pretrain)


def _pretrain_config():
    from rlpf.worldmodel.pretrain import PretrainConfig

    return PretrainConfig


def cmd_pretrain(args) -> int:
    from rlpf.core.config import load_config
    from rlpf.worldmodel.pretrain import PretrainConfig, pretrain

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    summary = pretrain(cfg, args.out, progress=not args.quiet)
    tok, lm = summary["tokenizer"], summary["lm"]
    worlds = summary.get("worlds")
    name = f"multi-world ({len(worlds)} worlds)" if worlds else cfg.world
    print(f"pretrained {name} world model in {args.out}  ({summary['n_train']} training clips, "
          f"{summary['n_artifacts']} with artifacts)")
    for world, rep in (tok.items() if worlds else [("", tok)]):
        parts = [f"{where} {rep[where + '_pos_m']:.3f} m" for where in ("root", "object") if where + "_pos_m" in rep]
        if "articulation" in rep:   # m for a slide, rad for a hinge
            parts.append(f"articulation {rep['articulation']:.4f}")
        print(f"  tokenizer{' ' + world if world else ''} (held-out reconstruction): {', '.join(parts + [''])}"
              f"joints {rep.get('joint_rad', float('nan')):.3f} rad, codebook usage {rep.get('codebook_usage', float('nan')):.2f}")
    print(f"  LM: {lm['parameters']:,} parameters, held-out loss {lm['val_loss']:.3f}")
    print("  time: " + ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in summary["timings"].items()))
    print(f"next: rlpf evaluate --checkpoint {args.out}   |   rlpf generate --checkpoint {args.out} --prompt '{lm['prompts'][0]}' --out clips/")
    return 0
