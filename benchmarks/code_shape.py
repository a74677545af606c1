"""The shape of the code base: import cycles, upward imports, file and function sizes.

    python benchmarks/code_shape.py [--rev GIT_REV]

With ``--rev`` it measures that commit (checked out into a temporary worktree), so a change's
before/after is two commands. Upward arrows are counted against the layer order of the
``core is layered`` import-linter contract in ``pyproject.toml``; cycles are strongly connected
groups of modules (module-level and function-level imports both count, as for import-linter).
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LAYERS = [["core.report"], ["core.reproduce", "core.sweep"], ["core.api", "core.compare"], ["core.worker"],
          ["core.experiments"], ["core.training", "core.smollm2"], ["core.models", "core.data"]]


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in ("core", "hrm_tui"):
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
               for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def layer_of(module: str) -> int | None:
    for index, group in enumerate(LAYERS):
        if any(module == g or module.startswith(g + ".") for g in group):
            return index
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]; counter[0] += 1; stack.append(start); on.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]; counter[0] += 1; stack.append(child); on.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    top = stack.pop(); on.discard(top); group.append(top)
                    if top == node:
                        break
                if len(group) > 1:
                    out.append(sorted(group))
    return out


def sizes(paths: list[Path]) -> tuple[list[int], list[int]]:
    files, functions = [], []
    for path in paths:
        text = path.read_text()
        files.append(len(text.splitlines()))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.append(node.end_lineno - node.lineno + 1)
    return files, functions


def describe(values: list[int]) -> str:
    values = sorted(values)
    p = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return (f"n {len(values)}, median {statistics.median(values):.0f}, p90 {p(0.9)}, p95 {p(0.95)}, "
            f"max {values[-1]}")


def measure(root: Path) -> None:
    mods = modules(root)
    known = set(mods)
    graph = {name: imports_of(name, path, known) for name, path in mods.items()}
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if a.startswith("core") and layer_of(a) is not None and layer_of(b) is not None
                    and layer_of(b) < layer_of(a))
    ui_reach = sorted({b for a, t in graph.items() if a.startswith("hrm_tui") for b in t if b.startswith("core")})
    groups = cycles(graph)
    files, functions = sizes(list(mods.values()))
    print(f"modules: {len(mods)} (core {sum(m.startswith('core') for m in mods)}, "
          f"hrm_tui {sum(m.startswith('hrm_tui') for m in mods)})")
    print(f"import cycles: {len(groups)}" + "".join(f"\n  {' <-> '.join(g)}" for g in groups))
    print(f"upward imports in core (against the layer contract): {len(upward)}"
          + "".join(f"\n  {a} -> {b}" for a, b in upward[:20]))
    print(f"core modules the front ends import: {len(ui_reach)}: {', '.join(ui_reach)}")
    print(f"file lines: {describe(files)}; files over 400 lines: {sum(f > 400 for f in files)}")
    print(f"function lines: {describe(functions)}; functions over 60 lines: {sum(f > 60 for f in functions)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="measure this git revision instead of the working tree")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    if not args.rev:
        measure(root)
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-q", tmp, args.rev], check=True)
        try:
            measure(Path(tmp))
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", tmp], check=True)


if __name__ == "__main__":
    sys.exit(main())
