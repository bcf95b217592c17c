"""The import structure: every module imports alone, the layers only import downwards, the exact engine stays
small, no import cycle, and no import hidden inside a function.

Layers (a module may import its own layer or a lower one; `test_every_module_has_a_layer` makes a new module pick
one):

    0 base     errors, tokens, registry, kernels/ (the only numba user), the package itself
    1 model    model, model_fast, model_memo, optim
    2 math     tasks, preferences, settings, config(s), runs, checkpoints, plotting, rl/advantages, rl/losses,
               rl/algorithms (the presets' data), rl/rollout
    3 engines  exact/, stages, reward_model, rl/trainer, rl/run, rl/exact_metrics, check/
    4 cli      toyrlhf.cli (the cli/ folder) and toyrlhf/__main__.py

The exact engine (toyrlhf/exact/) imports only tokens, model, errors, the registry, special (scipy.special on first
use) and the pure-NumPy rl/advantages, rl/losses and rl/rollout_correction: never the stages, the presets, the reward model, the trainer or the check report.

Imports inside functions: the library (toyrlhf/) imports every toyrlhf module at its top. The start-up rule:
toyrlhf.cli.* (and only it) may import library modules inside its command functions, so that `toyrlhf --help` and
`import toyrlhf.cli.main` load no numba, matplotlib or scipy.stats (tests/cli/test_startup.py); a CLI module's top
imports only light library modules (errors, locks, settings, tasks, runs, ...).
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"toyrlhf": ROOT / "toyrlhf", "toyrlhf.cli": ROOT / "cli"}   # setup.cfg maps toyrlhf.cli to cli/

LAYERS = {
    0: ["toyrlhf", "toyrlhf.errors", "toyrlhf.tokens", "toyrlhf.registry", "toyrlhf.kernels", "toyrlhf.kernels.*",
        "toyrlhf.locks", "toyrlhf.threads", "toyrlhf.special"],
    1: ["toyrlhf.model", "toyrlhf.model_fast", "toyrlhf.model_memo", "toyrlhf.optim"],
    2: ["toyrlhf.tasks", "toyrlhf.tasks.*", "toyrlhf.preferences", "toyrlhf.settings", "toyrlhf.config", "toyrlhf.config_checks", "toyrlhf.configs",
        "toyrlhf.runs", "toyrlhf.run_logs", "toyrlhf.checkpoints", "toyrlhf.plotting", "toyrlhf.plotting.*", "toyrlhf.rl", "toyrlhf.rl.advantages",
        "toyrlhf.rl.advantages_baselines", "toyrlhf.rl.losses", "toyrlhf.rl.rollout_correction", "toyrlhf.rl.surrogates", "toyrlhf.rl.algorithms",
        "toyrlhf.rl.rollout", "toyrlhf.rl.preference_losses", "toyrlhf.library_names", "toyrlhf.rl.token_masks"],
    3: ["toyrlhf.exact", "toyrlhf.exact.*", "toyrlhf.budget", "toyrlhf.stages", "toyrlhf.reward_model", "toyrlhf.rl.trainer",
        "toyrlhf.rl.trainer_state",
        "toyrlhf.rl.run", "toyrlhf.rl.exact_metrics", "toyrlhf.rl.exact_eval", "toyrlhf.rl.exact_update",
        "toyrlhf.rl.method_base", "toyrlhf.rl.rft", "toyrlhf.rl.dpo", "toyrlhf.rl.methods", "toyrlhf.rl.bon",
        "toyrlhf.rl.dpo_facts", "toyrlhf.rl.exact_frontier", "toyrlhf.rl.exact_critic",
        "toyrlhf.check", "toyrlhf.check.*", "toyrlhf.api",
        "toyrlhf.sweep", "toyrlhf.sweep.*"],
    4: ["toyrlhf.__main__", "toyrlhf.cli", "toyrlhf.cli.*"],
}

ENGINE_MAY_IMPORT = {"toyrlhf", "toyrlhf.errors", "toyrlhf.tokens", "toyrlhf.registry", "toyrlhf.kernels", "toyrlhf.special",
                     "toyrlhf.model", "toyrlhf.model_fast", "toyrlhf.model_memo",
                     "toyrlhf.rl", "toyrlhf.rl.advantages", "toyrlhf.rl.advantages_baselines",
                     "toyrlhf.rl.losses", "toyrlhf.rl.rollout_correction"}
"""What `import toyrlhf.exact...` may load (directly or not), besides the engine's own modules."""

ENGINE_NEVER = ("toyrlhf.stages", "toyrlhf.reward_model", "toyrlhf.rl.algorithms", "toyrlhf.rl.trainer",
                "toyrlhf.rl.run", "toyrlhf.rl.exact_metrics", "toyrlhf.check", "toyrlhf.plotting", "toyrlhf.cli")



# ------------------------------------------------------------------------------------------------ the source tree
def _modules() -> dict[str, Path]:
    out = {}
    for prefix, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The toyrlhf modules an import statement in `module` names (a `from pkg import sub` names pkg.sub)."""
    if isinstance(node, ast.Import):
        return [_known(a.name) for a in node.names if a.name.split(".")[0] == "toyrlhf"]
    if node.level:
        base = module if _is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    if target.split(".")[0] != "toyrlhf":
        return []
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else _known(target) for a in node.names]


def _known(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


class _Imports(ast.NodeVisitor):
    """Import statements of one module, split into module level and inside functions."""

    def __init__(self):
        self.top, self.local, self.depth = [], [], 0

    def _function(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _import(self, node):
        (self.local if self.depth else self.top).append(node)

    visit_Import = visit_ImportFrom = _import

    def visit_If(self, node):
        """`if TYPE_CHECKING:` imports are for annotations only and never run: they are no import edge."""
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)


def _imports(name: str) -> _Imports:
    v = _Imports()
    v.visit(ast.parse(MODULES[name].read_text(), filename=str(MODULES[name])))
    return v


IMPORTS = {name: _imports(name) for name in MODULES}
GRAPH = {name: sorted({t for node in IMPORTS[name].top for t in _resolve(name, node)} - {name}) for name in MODULES}
"""Module-level toyrlhf-internal import edges."""


def _layer(name: str) -> int | None:
    for layer, patterns in LAYERS.items():
        for p in patterns:
            if name == p or (p.endswith(".*") and name.startswith(p[:-1])):
                return layer
    return None


def _roots(node) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    return [] if node.level else [(node.module or "").split(".")[0]]


# ------------------------------------------------------------------------------------------------ (a) alone
DRIVER = r"""
import importlib, json, os, sys, traceback
# third-party packages are shared; no toyrlhf module is loaded before the fork, so every child starts fresh
import numpy, scipy.special, scipy.stats, click, numba  # noqa: F401
assert not [m for m in sys.modules if m.split(".")[0] == "toyrlhf"]
WIDTH = min(2, os.cpu_count() or 1)     # children at once: the suite is otherwise serial and timed on 2 cores


def start(name):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(name)
            out = {"ok": True, "loaded": sorted(m for m in sys.modules if m.split(".")[0] == "toyrlhf")}
        except BaseException:
            out = {"ok": False, "error": traceback.format_exc(limit=-3)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    return name, pid, r


def collect(name, pid, r):
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    results[name] = json.loads(b"".join(chunks) or b'{"ok": false, "error": "child died"}')


results, running = {}, []
for name in json.loads(sys.argv[1]):
    if len(running) == WIDTH:
        collect(*running.pop(0))
    running.append(start(name))
while running:
    collect(*running.pop(0))
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def imported_alone(tmp_path_factory):
    """{module: {"ok", "loaded" | "error"}}: each module imported first in a fresh interpreter state (a forked child
    of an interpreter that has loaded only third-party packages, two at a time; one subprocess per module where fork
    is missing)."""
    names = sorted(MODULES)
    cwd = tmp_path_factory.mktemp("imports")
    env_cmd = [sys.executable, "-c"]
    if hasattr(os, "fork"):
        p = subprocess.run([*env_cmd, DRIVER, json.dumps(names)], cwd=cwd, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout)
    out = {}
    for name in names:   # pragma: no cover - platforms without fork
        code = (f"import importlib, json, sys; importlib.import_module({name!r}); "
                "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'toyrlhf')))")
        p = subprocess.run([*env_cmd, code], cwd=cwd, capture_output=True, text=True, timeout=120)
        out[name] = ({"ok": True, "loaded": json.loads(p.stdout)} if p.returncode == 0
                     else {"ok": False, "error": p.stderr[-1500:]})
    return out


def test_every_module_imports_alone_in_a_fresh_interpreter(imported_alone):
    assert set(imported_alone) == set(MODULES)
    failed = {name: r["error"] for name, r in imported_alone.items() if not r["ok"]}
    assert not failed, "\n".join(f"{name}:\n{err}" for name, err in failed.items())


def test_importing_the_exact_engine_loads_only_tokens_model_errors_and_the_numpy_math(imported_alone):
    for name in MODULES:
        if name == "toyrlhf.exact" or name.startswith("toyrlhf.exact."):
            loaded = set(imported_alone[name]["loaded"])
            extra = {m for m in loaded if m not in ENGINE_MAY_IMPORT and not m.startswith(("toyrlhf.exact", "toyrlhf.kernels."))}
            assert not extra, f"import {name} loads {sorted(extra)}"


# ------------------------------------------------------------------------------------------------ (b) layering
def test_every_module_has_a_layer():
    assert not [m for m in MODULES if _layer(m) is None], "add the new module(s) to LAYERS in tests/test_imports.py"


def test_imports_only_go_down_the_layers():
    bad = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
           for m, targets in GRAPH.items() for t in targets
           if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)]
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_the_cli():
    library = [m for m in MODULES if _layer(m) != 4]
    bad = [(m, t) for m in library for node in IMPORTS[m].top + IMPORTS[m].local for t in _resolve(m, node)
           if t == "toyrlhf.cli" or t.startswith("toyrlhf.cli.")]
    assert not bad


def test_the_exact_engine_imports_only_tokens_model_errors_and_the_numpy_math():
    engine = [m for m in MODULES if m == "toyrlhf.exact" or m.startswith("toyrlhf.exact.")]
    assert len(engine) >= 4
    for m in engine:
        for t in GRAPH[m]:
            assert t in ENGINE_MAY_IMPORT or t.startswith("toyrlhf.exact"), f"{m} imports {t}"
    # nor through anything it imports
    seen, todo = set(), list(engine)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += GRAPH[m]
    assert not [m for m in seen if m.startswith(ENGINE_NEVER)], sorted(seen)


def test_only_the_kernels_package_imports_numba():
    users = sorted({m for m in MODULES for node in IMPORTS[m].top + IMPORTS[m].local if "numba" in _roots(node)})
    assert users and all(m.startswith("toyrlhf.kernels.") for m in users), users


def test_the_module_import_graph_has_no_cycle():
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in GRAPH[m]:
            if state.get(t) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


# ------------------------------------------------------------------------------------------------ (c) at the top
def test_no_library_module_imports_a_toyrlhf_module_inside_a_function():
    """The library imports at the top; only toyrlhf.cli.* may import inside a function (the start-up rule above)."""
    found = sorted({(m, t) for m in MODULES if _layer(m) != 4 or m == "toyrlhf.__main__"
                    for node in IMPORTS[m].local for t in _resolve(m, node)})
    assert not found, f"imports inside library functions (move them to the module's top): {found}"


def test_the_cli_imports_only_light_library_modules_at_its_top():
    """What a CLI module imports at its top must not load numba, matplotlib or scipy.stats (see the module doc)."""
    heavy = {"toyrlhf.kernels", "toyrlhf.model", "toyrlhf.plotting", "toyrlhf.config", "toyrlhf.stages",
             "toyrlhf.budget", "toyrlhf.reward_model", "toyrlhf.check", "toyrlhf.api"}
    bad = sorted((m, t) for m in MODULES if m.startswith("toyrlhf.cli") for t in GRAPH[m]
                 if t in heavy or t.startswith(("toyrlhf.exact", "toyrlhf.sweep", "toyrlhf.plotting.")))
    assert not bad, f"heavy imports at a CLI module's top (import them inside the command): {bad}"


def test_the_import_parser_sees_what_python_sees():
    """The graph is right about a few known edges (relative, `from pkg import module`, absolute)."""
    assert "toyrlhf.exact" in GRAPH["toyrlhf.reward_model"]
    assert "toyrlhf.exact.enumeration" in GRAPH["toyrlhf.exact.estimators"]
    assert "toyrlhf.rl.advantages" in GRAPH["toyrlhf.exact.estimators"]
    assert "toyrlhf.rl.exact_metrics" in GRAPH["toyrlhf.rl.run"]
    assert "toyrlhf.locks" in GRAPH["toyrlhf.cli.commands_rl"]
    assert ("toyrlhf.cli.commands_exact", "toyrlhf.check") in {(m, t) for m in MODULES for node in IMPORTS[m].local
                                                               for t in _resolve(m, node)}
    assert "toyrlhf.cli.main" in GRAPH["toyrlhf.__main__"]
