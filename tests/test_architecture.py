"""The architecture's rules, checked on the import graph of the source (every import statement,
inside functions too: an import hidden in a function is still a dependency).

import-linter / grimp cannot see ``rlpf.envs``, ``rlpf.rewards`` and ``rlpf.policies``: they install
from the top-level folders ``envs/``, ``rewards/``, ``policies/`` through ``package_dir``, and those
tools walk only the ``rlpf/`` folder. So the graph is built here from the files themselves.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
PACKAGES = {"rlpf": "rlpf", "envs": "rlpf.envs", "rewards": "rlpf.rewards", "policies": "rlpf.policies"}

CORE = "rlpf.core"
"""The base every other part builds on: it imports nothing of rlpf above it (but the world
declarations, rlpf.envs.worlds, which clips are validated against)."""
WORLD_MODEL = "rlpf.worldmodel"
FINETUNE = "rlpf.finetune"


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)
    top, *rest = rel[:-3].split(os.sep)
    parts = [PACKAGES[top], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, str]:
    out = {}
    for top in PACKAGES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    out[module_name(path)] = path
    return out


def imports_of(path: str, name: str, known: set[str]) -> set[str]:
    """Project modules (and top-level external packages, as 'ext:NAME') imported anywhere in the file."""
    tree = ast.parse(open(path).read(), path)
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()

    def add(target: str) -> None:
        while target and target not in known and "." in target:
            target = target.rsplit(".", 1)[0]  # `from rlpf.core.clips import Clip`: the module, not the name
        if target in known:
            found.add(target)
        elif target:
            found.add("ext:" + target.split(".")[0])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                full = f"{base}.{a.name}" if base else a.name
                add(full if full in known else base)
    found.discard(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = project_modules()
    return {name: imports_of(path, name, set(mods)) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_every_part(graph):
    assert {"rlpf.core.clips", "rlpf.envs.worlds", "rlpf.rewards.registry", "rlpf.policies.pd_tracker"} <= set(graph)
    assert "rlpf.core.clips" in graph["rlpf.judge.scoring"] and "ext:trl" in graph["rlpf.finetune.grpo"]


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_core_imports_nothing_above_it(graph):
    allowed = {"rlpf", "rlpf.envs", "rlpf.envs.worlds"}
    bad = {m: sorted(i for i in graph[m] if not i.startswith("ext:") and not _in(i, CORE) and i not in allowed)
           for m in graph if _in(m, CORE)}
    assert {m: v for m, v in bad.items() if v} == {}


def test_the_world_model_never_imports_rewards_or_policies(graph):
    bad = {m: sorted(i for i in graph[m] if _in(i, "rlpf.rewards") or _in(i, "rlpf.policies"))
           for m in graph if _in(m, WORLD_MODEL)}
    assert {m: v for m, v in bad.items() if v} == {}


def test_rewards_and_policies_never_import_fine_tuning_or_trl(graph):
    bad = {m: sorted(i for i in graph[m] if _in(i, FINETUNE) or i == "ext:trl")
           for m in graph if m.startswith(("rlpf.rewards", "rlpf.policies"))}
    assert {m: v for m, v in bad.items() if v} == {}


def test_nothing_imports_experiments(graph):
    assert {m: "experiments" for m, deps in graph.items() if "ext:experiments" in deps} == {}


def test_the_folders_are_the_parts(graph):
    """rlpf/ holds subpackages only (one concept each), no loose modules beside them."""
    loose = sorted(m for m in graph if m.count(".") == 1 and m.startswith("rlpf.") and not any(
        _in(o, m) and o != m for o in graph))
    assert loose == []


def test_only_the_command_line_imports_the_command_line(graph):
    bad = {m: sorted(i for i in graph[m] if _in(i, "rlpf.cli")) for m in graph if not _in(m, "rlpf.cli")}
    assert {m: v for m, v in bad.items() if v} == {}
