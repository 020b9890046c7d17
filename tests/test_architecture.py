"""The package's shape: imports point one way, no private names cross modules, and importing
schedopt leaves JAX's configuration alone."""

import ast
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "schedopt"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) for every import in the file, function-level too."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            if target.startswith("schedopt"):
                # `from . import x` imports the submodule x.
                subs = [f"{target}.{n}" for n in names if _is_module(f"{target}.{n}")]
                found += [(s, []) for s in subs]
                found.append((target, [n for n in names if not _is_module(f"{target}.{n}")]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("schedopt")]
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        graph[module] = {t for t, _ in _imports(path) if t != module and t in _all_modules()}
    return graph


def _all_modules() -> set[str]:
    return {_module_name(p) for p in PACKAGE.rglob("*.py")}


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    # A package's __init__ re-exports its modules: edges into a package from its own
    # submodules go through the parent attribute lookup, not the __init__'s code.
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for target, names in _imports(path):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                offenders.append(f"{_module_name(path)} imports {private} from {target}")
    assert not offenders, offenders


def _folder(module: str) -> str | None:
    """The concept folder of a module (schedopt.solve._exact -> "solve"), None at top level."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and _is_package(module)) else None


def _is_package(module: str) -> bool:
    return (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").exists()


def test_implementation_modules_are_private_and_stay_in_their_folder():
    """Each folder's __init__ is its public face: its modules are private (`_name.py`), and no
    module outside the folder imports them (the shared `_internal/` excepted)."""
    public = sorted(
        _module_name(p) for p in PACKAGE.glob("*/*.py")
        if p.name != "__init__.py" and not p.name.startswith("_")
        and p.parent.name not in ("cli", "_internal", "data")
    )
    assert not public, f"implementation modules must be private (_name.py): {public}"
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        here = _folder(_module_name(path))
        for target, _ in _imports(path):
            last = target.rsplit(".", 1)[-1]
            there = _folder(target)
            if last.startswith("_") and there not in (here, "_internal") and last != "__init__":
                offenders.append(f"{_module_name(path)} imports {target}")
    assert not offenders, offenders


def test_folders_import_one_way():
    """The folders form a DAG (curve -> objective -> schedule -> solve -> ...): an import
    between two folders in both directions, even a lazy one, is a defect."""
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        here = _folder(_module_name(path))
        for target, _ in _imports(path):
            there = _folder(target)
            if here and there and there != here:
                edges.setdefault(here, set()).add(there)
    both = sorted(f"{a} <-> {b}" for a in edges for b in edges[a]
                  if a < b and a in edges.get(b, ()))
    assert not both, both
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != 1, "folder cycle: " + " -> ".join(path + [node, nxt])
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


def test_importing_schedopt_leaves_jax_config_alone():
    code = (
        "import jax, jax.numpy as jnp, numpy as np, schedopt\n"
        "assert not jax.config.jax_enable_x64\n"
        "assert jnp.zeros(1).dtype == jnp.float32\n"
        "g = 1.0 / (1.0 + np.arange(64))\n"
        "p = schedopt.EntropyProfile.from_conditional_entropy(g)\n"
        "s = schedopt.optimize(p, 4)\n"
        "assert not jax.config.jax_enable_x64 and jnp.zeros(1).dtype == jnp.float32\n"
        "assert isinstance(s.expected_kl, np.floating) and s.expected_kl.dtype == np.float64\n"
        "exact = sum((b - a) * g[a] - g[a:b].sum() for a, b in zip(s.cumulative[:-1],"
        " s.cumulative[1:]))\n"
        "assert abs(float(s.expected_kl) - exact) <= 1e-13 * exact, (float(s.expected_kl), exact)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_import_schedopt_loads_no_jax_and_every_public_name_resolves():
    """The package loads its names on first use, so the CLI starts (and takes Ctrl-C) before
    JAX is imported; each re-exported name is the function or class, never a module."""
    code = (
        "import sys, types, schedopt, schedopt.cli\n"
        "assert 'jax' not in sys.modules, 'import schedopt imported jax'\n"
        "import schedopt.solve\n"  # the folder that exports optimize, imported first
        "for name in schedopt.__all__:\n"
        "    value = getattr(schedopt, name)\n"
        "    assert isinstance(value, types.ModuleType) == (name in ('distributions', 'models'))"
        ", name\n"
        "assert set(schedopt.__all__) <= set(dir(schedopt))\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _module_state() -> dict:
    """Every plain value (flags, numbers, strings) at module level in loaded schedopt modules."""
    plain = (bool, int, float, str, bytes, type(None))
    return {(name, var): value for name, module in list(sys.modules.items())
            if name.split(".")[0] == "schedopt" and module is not None
            for var, value in vars(module).items() if isinstance(value, plain)}


def test_calling_the_cli_leaves_the_process_as_it_was(tmp_path, monkeypatch, capsys):
    """main() may be embedded: its disk cache ends with the command, and it sets no module
    state (--quiet travels as an argument, not as a global)."""
    import jax

    from schedopt.cli import main

    before = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
    state = _module_state()
    monkeypatch.setenv("SCHEDOPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "m.json").write_text("[[0.25, 0.75], [0.5, 0.5]]")
    assert main(["--quiet", "profile", "--distribution", "product", "--marginals",
                 str(tmp_path / "m.json"), "--out", str(tmp_path / "p.json")]) == 0
    assert (tmp_path / "cache").is_dir()  # the command did use the cache
    assert (jax.config.jax_compilation_cache_dir,
            jax.config.jax_persistent_cache_min_compile_time_secs) == before
    after = _module_state()
    changed = sorted(k for k in state if k in after and after[k] != state[k])
    assert not changed, f"main() changed module state {changed}"


def test_architecture_page_names_every_module_and_folder():
    """docs/architecture.md must stay true: each top-level module and folder is placed there."""
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    names = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    names += [f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()]
    missing = sorted(n for n in names if f"`{n}`" not in page and f"`schedopt/{n}`" not in page)
    assert not missing, f"docs/architecture.md does not place {missing}"


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so progress bars would draw."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_reaches_the_library_as_an_argument(tmp_path, monkeypatch, quiet):
    """A Monte Carlo profile draws its bar on a terminal; --quiet, passed down as quiet=True,
    draws nothing."""
    from schedopt.cli import main

    for name, value in [("transition", [[0.9, 0.1], [0.2, 0.8]]), ("emission", [[0.8, 0.2],
                                                                               [0.3, 0.7]])]:
        (tmp_path / f"{name}.json").write_text(json.dumps(value))
    stderr = _Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    argv = ["profile", "--distribution", "hmm", "--transition", str(tmp_path / "transition.json"),
            "--emission", str(tmp_path / "emission.json"), "--length", "6", "--samples", "64",
            "--out", str(tmp_path / "p.json")]
    assert main(["--quiet", *argv] if quiet else argv) == 0
    assert (stderr.getvalue() == "") == quiet


def test_every_public_name_is_documented_in_api_md():
    import schedopt

    page = (PACKAGE.parent / "docs" / "api.md").read_text()
    missing = [n for n in schedopt.__all__
               if f"`{n}" not in page and f"schedopt.{n}" not in page]
    assert not missing, f"docs/api.md does not document {missing}"


def _documented_paths() -> set[str]:
    """Every dotted path schedopt.a.b... written in docs/ and the README, less the names of
    file formats ("schedopt.schedule": string literals in the package, not import paths)."""
    pages = [*(PACKAGE.parent / "docs").glob("*.md"), PACKAGE.parent / "README.md"]
    pattern = re.compile(r"\bschedopt(?:\.[A-Za-z_]\w*)+")
    formats = {m.group(1) for path in PACKAGE.rglob("*.py")
               for m in re.finditer(r"[\"'](schedopt\.\w+)[\"']", path.read_text())}
    return {m.group(0).rstrip(".") for p in pages
            for m in pattern.finditer(p.read_text())} - formats


def test_every_documented_import_path_resolves():
    """A path in the docs names a module, or an attribute of one (a function, a class's
    method): the longest importable prefix is imported and the rest looked up on it. A module
    is found without running it (`schedopt.lm_eval_model` needs the optional lm_eval)."""
    import importlib
    import importlib.util

    unresolved = []
    for path in sorted(_documented_paths()):
        try:
            if importlib.util.find_spec(path) is not None:
                continue
        except ImportError:  # a parent is not a package: the path names an attribute
            pass
        parts = path.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            unresolved.append(path)
    assert not unresolved, f"the docs name paths that do not exist: {unresolved}"
