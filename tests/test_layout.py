"""The command lines live in genjax/cli, apart from the library: the library never imports them
(so a command is only flags, their checks and ``main`` over functions the library owns, and no
import circle runs through a command), and each is a module ``python -m`` runs. Read from the
source with ``ast``: importing the commands together would define their absl flags twice."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CLI = REPO / "genjax" / "cli"
COMMANDS = sorted(p for p in CLI.glob("*.py") if p.name != "__init__.py")
LIBRARY = sorted(p for p in (REPO / "genjax").rglob("*.py") if CLI not in p.parents)


def _module(path: pathlib.Path, root: pathlib.Path) -> str:
  parts = path.relative_to(root).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: pathlib.Path, root: pathlib.Path = REPO) -> set[str]:
  """Every module ``path`` (a file of the package tree under ``root``) imports, anywhere in it
  (lazy imports included), as absolute names; ``from package import name`` counts as
  ``package.name`` too, since the name may be a module."""
  module = _module(path, root)
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
      out.add(base)
      out.update(f"{base}.{alias.name}" for alias in node.names)
  return out


def cli_imports(paths, root: pathlib.Path = REPO) -> list[str]:
  """``file: module`` for each import of genjax.cli in ``paths``."""
  return [f"{p.relative_to(root)}: {m}" for p in paths for m in sorted(imported_modules(p, root))
          if m == "genjax.cli" or m.startswith("genjax.cli.")]


def test_the_library_never_imports_the_command_lines():
  assert COMMANDS and LIBRARY
  assert cli_imports(LIBRARY) == []


def test_the_check_sees_every_form_of_import(tmp_path):
  """The check above can fail: each way of importing a command is caught, and the library's own
  imports are not."""
  package = tmp_path / "genjax" / "methods"
  package.mkdir(parents=True)
  forms = ["import genjax.cli.train", "from genjax import cli", "from genjax.cli import train",
           "from .. import cli", "from ..cli.evaluate import main",
           "def f():\n  from genjax.cli import export"]
  for i, form in enumerate(forms):
    (package / f"m{i}.py").write_text(form + "\n")
  (package / "ok.py").write_text("from genjax import evaluation, clip\nfrom .. import runs\n")
  found = cli_imports(sorted(package.glob("*.py")), tmp_path)
  assert sorted({line.split(":")[0] for line in found}) == [
      f"genjax/methods/m{i}.py" for i in range(len(forms))]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: p.name)
def test_each_command_is_a_main_run_as_a_module(path):
  tree = ast.parse(path.read_text(), str(path))
  assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
  assert any(isinstance(n, ast.If) and ast.unparse(n.test) in ('__name__ == "__main__"',
                                                               "__name__ == '__main__'")
             for n in tree.body), f"{path.name} has no if __name__ == '__main__': guard"


def test_the_package_docstring_lists_every_command():
  doc = ast.get_docstring(ast.parse((CLI / "__init__.py").read_text()))
  listed = set(re.findall(r"^\* ``(\w+)``", doc, re.M))
  assert listed == {p.stem for p in COMMANDS}
