"""The house rules, read from the source: no import circles, every module imports only what lies
below it, and nothing in the library imports the package face (fastlenet/__init__.py), whose
only clients are the command line and users. Lazy imports inside functions count too, and so
do the Cython sources. See docs/architecture.md."""
from __future__ import annotations

import ast
import pathlib
import re

PKG = pathlib.Path(__file__).resolve().parents[2] / "fastlenet"

# The floors, from the bottom up: a module may import modules of a lower floor, and modules of
# its own wing (a subpackage, e.g. weights.loader -> weights.layout), never one above.
FLOORS = [
    ("fastlenet.names", "fastlenet.pixels", "fastlenet._version"),
    ("fastlenet.weights", "fastlenet.io"),
    ("fastlenet._engine",),
    ("fastlenet.reference", "fastlenet.models", "fastlenet.config", "fastlenet.prepare"),
    ("fastlenet.fields",),
    ("fastlenet.pipeline", "fastlenet.bench"),
    ("fastlenet.dask",),
    ("fastlenet.cli",),
    # the face, `python -m fastlenet`, and the 0.1.0 module paths kept for one release
    ("fastlenet", "fastlenet.__main__", "fastlenet.loader", "fastlenet.formats",
     "fastlenet.sources", "fastlenet.images", "fastlenet.reference_preprocess"),
]
FACE_CLIENTS = ("fastlenet", "fastlenet.__main__", "fastlenet.cli")


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    if path.suffix == ".pxi":  # included into _engine.pyx
        return "fastlenet._engine"
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = pathlib.Path(*name.split(".")[1:]) if "." in name else pathlib.Path()
    base = PKG / rel
    return (base.with_suffix(".py").exists() or base.with_suffix(".pyx").exists()
            or (base / "__init__.py").exists()) and name != "fastlenet"


def _imports(path: pathlib.Path):
    """(imported module, line) for every import of fastlenet code in a source file; `from X
    import name` counts as importing X.name when that is a module, else X."""
    text = path.read_text()
    if path.suffix in (".pyx", ".pxi"):
        for n, line in enumerate(text.splitlines(), 1):
            m = re.match(r"\s*from\s+(fastlenet[\w.]*)\s+(?:c?import)\s+(.+)", line)
            if m:
                for name in re.split(r"[,\s()]+", m.group(2)):
                    if name and name != "as" and name.isidentifier():
                        sub = f"{m.group(1)}.{name}"
                        yield (sub if _is_module(sub) else m.group(1)), n
                        break
            m = re.match(r"\s*c?import\s+(fastlenet[\w.]*)", line)
            if m:
                yield m.group(1), n
        return
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "fastlenet":
                    yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] == "fastlenet" and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                yield (sub if _is_module(sub) else node.module), node.lineno


def _graph():
    edges = {}
    for path in sorted(PKG.rglob("*")):
        if path.suffix not in (".py", ".pyx", ".pxi") or "__pycache__" in path.parts:
            continue
        src = _module_name(path)
        for dst, line in _imports(path):
            if dst != src:
                edges.setdefault(src, {}).setdefault(dst, f"{path.relative_to(PKG.parent)}:{line}")
    return edges


def _floor(name: str) -> tuple:
    """(floor, wing) of a module: the longest entry of FLOORS that is it or holds it."""
    best = None
    for i, floor in enumerate(FLOORS):
        for entry in floor:
            if (name == entry or name.startswith(entry + ".")) and entry != "fastlenet" \
                    or name == entry:
                if best is None or len(entry) > len(best[1]):
                    best = (i, entry)
    assert best is not None, f"{name} is on no floor of FLOORS: add it where it belongs"
    return best


def test_every_module_is_on_a_floor():
    for path in PKG.rglob("*.py"):
        if "__pycache__" not in path.parts:
            _floor(_module_name(path))


def test_modules_import_only_what_lies_below_them():
    bad = []
    for src, dsts in _graph().items():
        fs, ws = _floor(src)
        for dst, where in dsts.items():
            fd, wd = _floor(dst)
            if ws == wd or fd < fs:
                continue
            bad.append(f"{where}: {src} (floor {fs}) imports {dst} (floor {fd})")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_only_the_command_line_imports_the_package_face():
    bad = [f"{where}: {src} imports the package face"
           for src, dsts in _graph().items() for dst, where in dsts.items()
           if dst == "fastlenet" and not any(src == c or src.startswith(c + ".")
                                             for c in FACE_CLIENTS)]
    assert not bad, "\n".join(bad)


def test_no_import_circles():
    edges = _graph()
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for dst in edges.get(node, {}):
            visit(dst)
        stack.pop()

    for node in list(edges):
        visit(node)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_and_cython_imports():
    """The rules above are only as good as the graph: it holds imports made inside functions
    and the Cython module's."""
    edges = _graph()
    assert "fastlenet.weights" in edges["fastlenet._engine"]  # from _engine.pyx
    assert "fastlenet.pipeline.run" in edges["fastlenet.dask"]  # a lazy import in a function
