"""The package's shape: imports only point down, folders read as the pipeline, the README agrees."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import newsletter

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "newsletter"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path) -> set[str]:
    """Every newsletter module `path` imports anywhere: top level, functions, TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # `from .pkg import mod` imports the module `pkg.mod` when there is one.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_not_even_for_type_checking() -> None:
    graph = {name: imports_of(name, path) for name, path in MODULES.items()}
    assert "newsletter.store.subscribers" in graph  # the walk really saw the package
    assert "newsletter.model" in graph["newsletter.store.subscribers"]
    assert cycles(graph) == []


def test_nothing_below_the_top_imports_the_package_root() -> None:
    offenders = [
        name
        for name, path in MODULES.items()
        if name != "newsletter" and "newsletter" in imports_of(name, path)
    ]
    assert offenders == []


def test_no_module_is_named_like_a_standard_library_module() -> None:
    clashes = [
        name for name in MODULES if name.rpartition(".")[2] in sys.stdlib_module_names - {"types"}
    ]
    assert clashes == []


def test_every_subpackage_says_its_job_in_one_line() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"
        assert len(doc.strip().splitlines()[0]) <= 100, init


def test_the_public_api_is_importable_from_the_top() -> None:
    for name in (
        "parse_digest",
        "Store",
        "select_papers",
        "build_site",
        "Composer",
        "deliver",
        "Settings",
        "Filters",
        "NewsletterError",
        "DigestError",
        "DeliveryError",
    ):
        assert name in newsletter.__all__ and hasattr(newsletter, name), name
    # The API is imported lazily (PEP 562): every name it promises must resolve, and be listed.
    for name in newsletter.__all__:
        assert getattr(newsletter, name) is not None, name
    # ... and be importable from where the lazy table says it lives.
    assert set(newsletter._WHERE) | {"__version__"} == set(newsletter.__all__)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", newsletter.__version__)
    assert issubclass(newsletter.DigestError, newsletter.NewsletterError)


def test_a_send_does_not_import_the_site_builder_the_parser_or_cryptography() -> None:
    # `newsletter send` imports what a send needs: the builder (feeds, pages, Pagefind) is
    # imported by `run` and `build` only (daily.py, cli/send.py import it when they build).
    # Nor the digest parser (ingest.py imports it when it reads a file), nor cryptography,
    # which only DKIM signing needs (~10 ms of every start otherwise).
    code = (
        "import sys, newsletter.cli.send, newsletter.daily, newsletter.mail.compose\n"
        "print(sorted(m for m in sys.modules if m.startswith(('newsletter.', 'crypto'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "newsletter.publish.build" not in done.stdout, done.stdout
    assert "newsletter.digest.parse" not in done.stdout, done.stdout
    assert "cryptography" not in done.stdout, done.stdout


def test_the_readme_module_map_names_every_module_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Development", 1)[1].split("\n## ", 1)[0]
    section = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    named = set(re.findall(r"`([\w/]+\.py)`", section))
    on_disk = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" and p.parent.name not in ("cli", "web")
    }
    folders = set(re.findall(r"`(\w+)/`", section))
    assert on_disk - named == set(), "modules missing from the README's module map"
    assert named - on_disk == set(), "README names modules that do not exist"
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} <= folders
