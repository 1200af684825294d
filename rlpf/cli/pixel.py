"""``rlpf pixel``: a pixel-video world model aligned with RLPF through pose lifting (rlpf.videowm.pipeline).

Heavy imports (torch, MuJoCo, TRL) stay inside ``cmd_pixel``."""
from __future__ import annotations

import argparse

from rlpf.cli.help import lazy_epilog


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "pixel", help="train a pixel-video world model (frame tokenizer + causal LM) and align it with RLPF",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The whole chain on videos: simulated, prompt-labelled clips (half with physical artifacts)\n"
                    "rendered under the video contract at the frame tokenizer's size -> an FSQ frame tokenizer ->\n"
                    "a causal LM over frame codes (the base model) -> RLPF: TRL GRPO where each sampled video is\n"
                    "decoded, lifted to motion by the pose lifter (rlpf train-pose), tracked and scored -> the\n"
                    "same report for the base and the aligned model (tracking success, plausible rate, command\n"
                    "accuracy, video FID and diversity) and videos (generated | lifted). Every stage is cached in\n"
                    "RUN; the same command resumes.",
    )
    lazy_epilog(s, lambda: "config fields (YAML via --config, or key=value):\n" + _describe()
                + "\n\nexamples:\n  rlpf pixel --out runs/pixel-ant\n"
                  "  rlpf pixel --out runs/pixel-small data_n=200 grpo.steps=8 tokenizer_steps=400")
    s.add_argument("--out", required=True, metavar="RUN", help="run directory (created; an existing one is resumed)")
    s.add_argument("--config", help="YAML file with PixelConfig fields")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(overrides=[], func=cmd_pixel)


def _describe() -> str:
    from rlpf.core.config import describe
    from rlpf.videowm.pipeline import PixelConfig

    return describe(PixelConfig)


def cmd_pixel(args) -> int:
    from rlpf.core.config import load_config
    from rlpf.videowm.pipeline import PixelConfig, run_pixel
    from rlpf.videowm.report import HEADLINE

    cfg = load_config(PixelConfig, args.config, list(args.overrides))
    report = run_pixel(cfg, args.out, progress=not args.quiet)
    b, a = report["before"], report["after"]
    print(f"pixel world model {args.out} ({cfg.world}): base -> RLPF")
    for k in HEADLINE:
        if isinstance(b.get(k), (int, float)) and isinstance(a.get(k), (int, float)):
            print(f"  {k:18s} {b[k]:.3f} -> {a[k]:.3f}")
    print(f"report: {args.out}/report.md   videos: {args.out}/videos/")
    return 0
