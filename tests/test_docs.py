"""The README, docs/ and the results pages point at things that exist: every relative link
resolves to a file (and its #anchor to a heading of that file), every repository path quoted in
the text exists, every ``python -m`` command (there, in the Makefile and in the code's own
messages and docstrings) runs a module that exists, every training command written down (there
and in the committed records) loads a config that validates, and the README links every docs
page. Moving code or renaming a heading or a config key breaks a test, not a reader's click."""

from __future__ import annotations

import ast
import importlib
import pathlib
import re

import pytest

from genjax import config as config_lib
from genjax.errors import GenjaxError
from tests.conftest import apply_overrides

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


_TRAIN = re.compile(r"python3? -m genjax\.cli\.train((?:[ \t]+--[^\s\"`;|]+)+)")
# Every committed record that may quote the command which trained it.
RECORDS = sorted(p for p in (REPO / "experiments" / "results").rglob("*")
                 if p.suffix in (".json", ".jsonl"))


def train_commands(path: pathlib.Path) -> list[list[str]]:
  """The flags of each ``python -m genjax.cli.train`` command in ``path`` (lines continued with
  a backslash joined), less those with a placeholder (``<config>``)."""
  text = re.sub(r"\\\n\s*", " ", path.read_text())
  return [m.group(1).split() for m in _TRAIN.finditer(text) if "<" not in m.group(1)]


def command_problem(flags: list[str]) -> str | None:
  """Why the config these flags name would not train (None if it would): its file, each
  ``--config.key=value`` applied as the command line applies it (the record's seed S and class K
  read as 0), then genjax's validation."""
  config = [f.split("=", 1)[1] for f in flags if f.startswith("--config=")]
  if not config:
    return "no --config"
  overrides = {}
  for flag in flags:
    if flag.startswith("--config."):
      key, _, value = flag[len("--config."):].partition("=")
      value = {"S": "0", "(K,)": "(0,)"}.get(value.strip("'\""), value.strip("'\""))
      try:
        overrides[key] = ast.literal_eval(value)
      except (ValueError, SyntaxError):
        overrides[key] = value
  try:
    c = importlib.import_module(config[0].removesuffix(".py").replace("/", ".")).get_config()
    apply_overrides(c, overrides)
    if c.dataset.name == "image_folder" and not c.dataset.path:
      c.dataset.path = "DIR"  # the user's folder, given on the command line
    for slot in c.get("frozen", {}):  # the runs it names are trained first, elsewhere
      c.frozen[slot] = c.frozen[slot] or "RUN"
    config_lib.validate(c)
  except (GenjaxError, ImportError, AttributeError, KeyError, TypeError) as e:
    return f"{type(e).__name__}: {e}"
  return None


def test_every_training_command_written_down_loads_a_config_that_validates():
  commands = {tuple(f) for p in [*PAGES, *RECORDS] for f in train_commands(p)}
  assert len(commands) > 80  # the records' commands are found
  assert {" ".join(c): command_problem(list(c)) for c in sorted(commands)
          if command_problem(list(c))} == {}


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
  page.write_text("python -m genjax.cli.train --config=experiments/configs/dcgan_mnist.py \\\n"
                  "    --workdir=W --config.seed=S; then\n"
                  "`python -m genjax.cli.train --config=experiments/configs/<name>.py`\n"
                  "python -m genjax.cli.train --config=experiments/configs/ae_mnist.py "
                  "--config.model.widht=8\n")
  found = train_commands(page)
  assert found == [["--config=experiments/configs/dcgan_mnist.py", "--workdir=W",
                    "--config.seed=S"],
                   ["--config=experiments/configs/ae_mnist.py", "--config.model.widht=8"]]
  assert command_problem(found[0]) is None
  assert command_problem(found[1]).startswith("KeyError") and "widht" in command_problem(found[1])
