"""``rlpf worlds``: its arguments and what it runs.

The command's own work lives in the package it names; heavy imports (torch, MuJoCo, TRL) stay inside
``cmd_worlds`` so that ``rlpf --help`` and ``rlpf score`` start without them."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worlds", help="list built-in worlds and reward terms")
    w.set_defaults(func=cmd_worlds)


def cmd_worlds(args) -> int:
    from rlpf.envs.worlds import compile_world, registered_worlds
    from rlpf.rewards.registry import registered

    print("worlds:")
    for name, w in registered_worlds().items():  # built-ins and worlds registered in this process
        cw = compile_world(name)
        print(f"  {name:9s} {w.gym_id or '-':12s} nq={cw.nq:<3d} fps={w.fps:.1f}  feet={len(w.feet)} objects={list(w.objects)}"
              + (f" articulations={list(w.articulations)}" if w.articulations else ""))
    print("reward terms (name, plausible threshold, unit):")
    for name, info in sorted(registered().items()):
        th = "-" if info.threshold is None else f"{info.threshold:g}"
        print(f"  {name:24s} <= {th:6s} {info.unit:18s} {info.doc}")
    return 0
