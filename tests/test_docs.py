"""The README, docs/ and the results pages point at things that exist: every relative link
resolves to a file (and its #anchor to a heading of that file), every repository path quoted in
the text exists, every ``python -m`` command (there, in the Makefile and in the code's own
messages and docstrings) runs a module that exists, and the README links every docs page.
Moving code or renaming a heading breaks a test, not a reader's click."""

from __future__ import annotations

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS, REPO / "experiments" / "RESULTS.md",
         REPO / "benchmarks" / "results" / "README.md"]

_FENCE = re.compile(r"^\s*```.*?^\s*```", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\n]+)`")
# Quoted repository paths worth checking: under a top-level folder of the repository, without
# placeholders (<run>), alternatives ({a,b}) or globs (*_mnist).
_REPO_PATH = re.compile(r"^(?:genjax|experiments|benchmarks|docs|tests)/[\w./-]*$")


def _prose(path: pathlib.Path) -> str:
  """The page without its fenced code blocks (commands and outputs, not links)."""
  return _FENCE.sub("", path.read_text())


def _slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: pathlib.Path) -> set[str]:
  seen: dict[str, int] = {}
  out = set()
  for line in _prose(path).splitlines():
    if m := re.match(r"#{1,6} (.+)", line):
      slug = _slug(m.group(1))
      out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
      seen[slug] = seen.get(slug, 0) + 1
  return out


def broken_links(path: pathlib.Path) -> list[str]:
  broken = []
  for target in _LINK.findall(_prose(path)):
    if re.match(r"[a-z]+:", target):  # https:, mailto:
      continue
    file, _, anchor = target.partition("#")
    dest = (path.parent / file).resolve() if file else path
    if not dest.exists():
      broken.append(f"{target} (no such file)")
    elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
      broken.append(f"{target} (no heading #{anchor})")
  return broken


_COMMAND = re.compile(r"python3? -m ((?:genjax|experiments|benchmarks|tests)(?:\.\w+)*)")
# Where commands are written for a reader: the pages (code blocks included), the Makefile, and the
# messages, docstrings and comments of the code.
COMMAND_FILES = [*PAGES, REPO / "Makefile", *sorted(
    p for d in ("genjax", "experiments", "benchmarks") for p in (REPO / d).rglob("*.py"))]


def missing_modules(path: pathlib.Path) -> list[str]:
  """The modules of this repository that ``python -m`` commands in ``path`` name and that have
  no file (``a/b.py``) or package (``a/b/__init__.py``)."""
  modules = _COMMAND.findall(path.read_text())
  return [m for m in modules if not (REPO / (m.replace(".", "/") + ".py")).exists()
          and not (REPO / m.replace(".", "/") / "__init__.py").exists()]


def missing_paths(path: pathlib.Path) -> list[str]:
  return [p for p in _CODE.findall(_prose(path))
          if _REPO_PATH.match(p) and not (REPO / p).exists()]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(page):
  assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_quoted_paths_exist(page):
  assert missing_paths(page) == []


def test_commands_run_modules_that_exist():
  assert [f"{p.relative_to(REPO)}: python -m {m}" for p in COMMAND_FILES
          for m in missing_modules(p)] == []


def test_readme_links_every_docs_page():
  linked = {(REPO / t.partition("#")[0]).resolve()
            for t in _LINK.findall(_prose(REPO / "README.md"))}
  assert DOCS and [p.name for p in DOCS if p.resolve() not in linked] == []


def test_the_checks_catch_what_they_claim(tmp_path):
  (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading (with) punctuation\n")
  page = tmp_path / "page.md"
  page.write_text("# Top\n\n[ok](other.md#a-code-heading-with-punctuation) [self](#top)\n"
                  "[gone](missing.md) [bad anchor](other.md#nope) [web](https://x.org/a)\n"
                  "```\n[in a code block](nowhere.md)\n```\n"
                  "`genjax/train.py` `genjax/no_such_module.py` `experiments/configs/<name>.py`\n"
                  "```\npython -m genjax.cli.train --config=...\npython -m genjax.main\n"
                  "python -m experiments.tables --check; python -m pytest -q\n```\n")
  assert broken_links(page) == ["missing.md (no such file)", "other.md#nope (no heading #nope)"]
  assert missing_paths(page) == ["genjax/no_such_module.py"]
  assert missing_modules(page) == ["genjax.main"]
