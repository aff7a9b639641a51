"""Kernel profiling: a ``jax.profiler`` trace of chosen steps, the optimized HLO, and a summary.

``config.profile`` (see :func:`defaults`) switches these on for any training run:

* ``start_step``/``stop_step``: trace the updates numbered ``[start_step, stop_step)`` (1-based,
  as the console counts them) into ``<workdir>/profile``. The trace is readable by TensorBoard's
  profile plugin and XProf (``plugins/profile/<run>/*.xplane.pb``) and by Perfetto
  (``*.trace.json.gz``, ui.perfetto.dev). Every update is wrapped in a
  ``StepTraceAnnotation("train_step", step_num=...)``, so the tools split the trace by step.
* ``dump_hlo``: writes the train step's StableHLO, XLA's optimized HLO and its cost analysis
  (FLOPs, bytes) to ``<workdir>/hlo``.

:func:`top_ops` reads the newest trace of a run back: the ops that took the most time and, where
the run dumped its HLO, what each op is (:func:`describe_ops`): its output shape, the
convolution or dot inside it and the JAX operation it came from. ``python -m genjax.cli.profile
--workdir=<dir>`` prints them.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
from typing import Any

import jax
from absl import logging

from genjax.errors import ConfigError


def defaults() -> dict[str, Any]:
  """The ``config.profile`` section (all off)."""
  return dict(
      start_step=0,  # first traced update (1-based); 0 with stop_step=0: no trace
      stop_step=0,  # first update no longer traced
      perfetto=True,  # also write a Perfetto trace (*.trace.json.gz) beside the XPlane one
      dump_hlo=False,  # write the step's StableHLO, optimized HLO and cost analysis
  )


def validate(config) -> None:
  p = config.profile
  if (p.start_step, p.stop_step) == (0, 0):
    return
  if not 1 <= p.start_step < p.stop_step <= config.num_steps + 1:
    raise ConfigError(
        f"config.profile traces updates [start_step, stop_step) with 1 <= start_step < stop_step "
        f"<= num_steps + 1 ({config.num_steps + 1}), got [{p.start_step}, {p.stop_step}); "
        f"e.g. --config.profile.start_step=10 --config.profile.stop_step=15")


def trace_dir(workdir: str, process_index: int = 0, process_count: int = 1) -> str:
  """Where a run's trace goes (one folder per process when there are several)."""
  base = os.path.join(workdir, "profile")
  return base if process_count == 1 else os.path.join(base, f"process_{process_index}")


class StepTracer:
  """Starts a trace before update ``start_step`` and stops it after update ``stop_step - 1``
  has finished on the device."""

  def __init__(self, profile, workdir: str, process_index: int = 0, process_count: int = 1):
    self.start, self.stop = profile.start_step, profile.stop_step
    self.perfetto = profile.perfetto
    self.directory = trace_dir(workdir, process_index, process_count)
    self.active = False

  def before(self, step: int) -> None:
    if step == self.start and not self.active:
      os.makedirs(self.directory, exist_ok=True)
      jax.profiler.start_trace(self.directory, create_perfetto_trace=self.perfetto)
      self.active = True
      logging.info("profiling updates %d to %d into %s", self.start, self.stop - 1,
                   self.directory)

  def after(self, step: int, outputs) -> None:
    if self.active and step == self.stop - 1:
      jax.block_until_ready(outputs)
      self.close()

  def skipped(self, first_step: int) -> None:
    """Says so when a resumed run starts after the traced window."""
    if self.stop and first_step > self.start:
      logging.warning("config.profile asks for updates [%d, %d) but this run starts at update "
                      "%d: no trace", self.start, self.stop, first_step)

  def close(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
      logging.info("profile written to %s (TensorBoard/XProf: --logdir=%s; Perfetto: "
                   "*.trace.json.gz; summary: python -m genjax.cli.profile --workdir=...)",
                   self.directory, os.path.dirname(self.directory.rstrip("/")))


def dump_hlo(step_fn, args: tuple, directory: str):
  """Compiles ``step_fn`` for ``args``, writes its HLO and cost analysis, returns the compiled
  step (so that the program is compiled once)."""
  os.makedirs(directory, exist_ok=True)
  lowered = step_fn.lower(*args)
  compiled = lowered.compile()
  with open(os.path.join(directory, "train_step.stablehlo.mlir"), "w") as f:
    f.write(lowered.as_text())
  with open(os.path.join(directory, "train_step.optimized.hlo.txt"), "w") as f:
    f.write(compiled.as_text())
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  with open(os.path.join(directory, "train_step.cost_analysis.json"), "w") as f:
    json.dump({k: float(v) for k, v in (cost or {}).items()}, f, indent=1, sort_keys=True)
  logging.info("wrote the train step's HLO and cost analysis to %s", directory)
  return compiled


# --- reading a trace back ---------------------------------------------------------------------

def latest_trace(path: str) -> str:
  """The newest ``*.trace.json.gz`` under ``path`` (a workdir, its profile folder or a file)."""
  if os.path.isfile(path):
    return path
  found = glob.glob(os.path.join(path, "**", "*.trace.json.gz"), recursive=True)
  if not found:
    raise FileNotFoundError(f"no Perfetto trace (*.trace.json.gz) under {path}: run with "
                            f"--config.profile.start_step=A --config.profile.stop_step=B")
  return max(found, key=os.path.getmtime)


# Host-side events that enclose the device work rather than being kernels themselves.
_ENCLOSING = ("train_step", "PjitFunction", "PmapFunction", "ExecuteHelper", "Execute",
              "ThunkExecutor", "$", "ParseArguments", "XlaModule", "TfrtCpuExecutable",
              "PjRt")


def top_ops(path: str, n: int = 15) -> dict[str, Any]:
  """Total time per XLA op in a Perfetto trace, largest first.

  Counts complete events (``ph == "X"``) whose name is an HLO instruction (as XLA:CPU's thunk
  executor and the GPU's kernel events name them) and leaves out the enclosing host events, so
  the shares are of the time spent in ops.

  Steps are dispatched asynchronously, so the traced window can hold more executions than the
  steps annotated in it: ``executions`` counts the distinct (module, run id) of the ops.

  Returns:
    ``{"trace", "steps", "executions", "total_ms",
    "ops": [{"name", "ms", "count", "share"}, ...]}``.
  """
  file = latest_trace(path)
  with gzip.open(file, "rt") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  totals: dict[str, float] = collections.defaultdict(float)
  counts: dict[str, int] = collections.Counter()
  steps, runs = set(), set()
  for e in events:
    if e.get("ph") != "X" or "dur" not in e:
      continue
    name = str(e.get("name", ""))
    if name == "train_step" or name.startswith("train_step"):
      steps.add(e.get("args", {}).get("step_num", len(steps)))
    if not name or name.startswith(_ENCLOSING) or " " in name or "::" in name:
      continue
    totals[name] += float(e["dur"]) / 1e3
    counts[name] += 1
    args = e.get("args", {})
    if "run_id" in args:
      runs.add((args.get("hlo_module"), args["run_id"]))
  total = sum(totals.values())
  return {"trace": file, "steps": len(steps), "executions": len(runs), "total_ms": total,
          "ops": _ranked(totals, counts, total)[:n]}


def _ranked(totals: dict[str, float], counts: dict[str, int], total: float) -> list[dict]:
  """``[{"name", "ms", "count", "share"}, ...]``, largest time first."""
  return [{"name": k, "ms": totals[k], "count": counts[k],
           "share": totals[k] / total if total else 0.0}
          for k in sorted(totals, key=totals.get, reverse=True)]


def describe_ops(hlo_text: str, names: list[str]) -> dict[str, str]:
  """One line per op name from an optimized HLO dump: its output shape, the convolution or dot
  inside it (window, dilations) or the custom call's target, and the JAX operation it came from
  (``op_name`` metadata)."""
  out = {}
  for name in names:
    m = re.search(r"^\s*(?:ROOT )?%" + re.escape(name) + r" = (\S+) ([\w-]+)\((.*)$", hlo_text,
                  re.M)
    if not m:
      continue
    shape, opcode, rest = m.groups()
    body = rest
    called = re.search(r"calls=%([\w.-]+)", rest)
    if called:  # a fusion: describe the convolution or dot it wraps
      comp = re.search(r"^%" + re.escape(called.group(1)) + r" .*?\n\}", hlo_text, re.M | re.S)
      inner = comp and re.search(r"= \S+ (convolution|dot)\((.*)$", comp.group(0), re.M)
      if inner:
        opcode, body = f"{opcode}[{inner.group(1)}]", inner.group(2)
    window = re.search(r"window=\{([^}]*)\}", body)
    source = re.search(r'op_name="([^"]*)"', body) or re.search(r'op_name="([^"]*)"', rest)
    target = re.search(r'custom_call_target="([^"]*)"', rest)
    parts = [shape.split("{")[0], opcode] + ([target.group(1)] if target else [])
    if window:
      parts.append(f"window={{{window.group(1)}}}")
    if source:
      parts.append(source.group(1))
    out[name] = " ".join(parts)
  return out


def by_kind(summary: dict[str, Any], hlo_text: str | None = None) -> dict[str, Any]:
  """``summary`` (from ``top_ops`` with every op) with its ops summed by kind, largest first: a
  custom call by its target (with the run's optimized HLO), any other op by its name without the
  numeric suffix (``add_convert_fusion.6`` -> ``add_convert_fusion``)."""
  targets = dict(re.findall(r'^\s*(?:ROOT )?%([\w.-]+) = [^\n]*custom_call_target="([^"]*)"',
                            hlo_text or "", re.M))
  totals: dict[str, float] = collections.defaultdict(float)
  counts: dict[str, int] = collections.Counter()
  for op in summary["ops"]:
    kind = targets.get(op["name"]) or re.sub(r"(\.\d+)+$", "", op["name"])
    totals[kind] += op["ms"]
    counts[kind] += op["count"]
  return {**summary, "ops": _ranked(totals, counts, summary["total_ms"])}


def format_top(summary: dict[str, Any], hlo_text: str | None = None) -> str:
  """The summary as a table; with the run's optimized HLO, each op is described."""
  described = describe_ops(hlo_text, [op["name"] for op in summary["ops"]]) if hlo_text else {}
  lines = [f"{summary['trace']}: {summary['steps']} annotated steps, "
           f"{summary['executions']} executions traced, {summary['total_ms']:.1f} ms in ops",
           f"{'ms':>10} {'share':>6} {'calls':>6}  op"]
  for op in summary["ops"]:
    line = f"{op['ms']:10.1f} {op['share']:6.1%} {op['count']:6d}  {op['name']}"
    if op["name"] in described:
      line += f"  {described[op['name']]}"
    lines.append(line)
  return "\n".join(lines)
