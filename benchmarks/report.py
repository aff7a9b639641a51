"""Result files: one JSON list of records and one markdown table per run, plus the README.

``README.md`` in the results folder is rewritten after every run from all the JSON files there:
how to run, the latest table per backend, device and suite, and the list of runs. Text between
``<!-- notes:start -->`` and ``<!-- notes:end -->`` in an existing README is kept as it is.
"""

from __future__ import annotations

import datetime
import glob
import json
import math
import os
import re
from typing import Any

NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"

# Other processes' CPU share during the timed steps above which a row is marked as disturbed.
DISTURBED = 0.1

REQUIRED_FIELDS = (
    "model", "batch", "backend", "device", "dtype", "images_per_sec", "peer_images_per_sec",
    "ratio", "compile_s", "compile_warm_s", "flops_per_step", "mfu", "peer_mfu",
    "step_ms_median", "step_ms_spread", "peer_step_ms_median", "peak_mem_mb",
    "pipeline_images_per_sec", "date", "jax_version", "torch_version")

TABLE_HEADER = (
    "| model | batch | dtype | genjax img/s | PyTorch img/s | genjax / PyTorch | "
    "step ms genjax (IQR) | step ms PyTorch (IQR) | compile s (cold / warm cache) | "
    "GFLOP/step XLA (torch) | MFU genjax / PyTorch | peak MB genjax / PyTorch | "
    "pipeline img/s |\n"
    "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")

HOW_TO_RUN = """\
```bash
make bench                                   # the default suite, here (CPU or GPU)
.venv/bin/python -m benchmarks.run [--suite default] [--models dcgan64,dcgan32,vae] \\
    [--batch 64] [--dtypes float32,bfloat16] [--steps 20] [--warmup 3] \\
    [--conv-backend auto|onednn|xla] [--default-malloc] [--max-isa avx2] \\
    [--out benchmarks/results] [--dry-run]
bash benchmarks/gpu.sh [--dry-run]           # on a GPU machine (see the script's header)
```

The default suite is DCGAN-64 (pytorch/examples: nz=100, ngf=ndf=64, 3 channels) at batch 64,
the 32-px, 1-channel DCGAN at batch 64 and the Fashion-MNIST VAE at batch 128, each in float32
and bfloat16. genjax runs with `config.conv_backend` = `--conv-backend` (default `auto`:
oneDNN's kernels on CPU; each record's `conv_backend` says which ran). `--dry-run` runs the
same flow on tiny networks for 2 steps (seconds per model) and writes to a temporary folder
unless `--out` is given. Each run writes
`<date>_<time>_<backend>.json` (a list of records, one per model and dtype) and a `.md` table,
then rewrites this README."""

MALLOC = {
    "tuned": "glibc tuned by `genjax.host.tune_malloc` (one arena, no mmap, trim above 1 GiB) "
             "for both sides",
    "default": "glibc default for both sides (`--default-malloc`)",
}

METHOD = """\
- **Host allocator**: `benchmarks.run` calls `genjax.host.tune_malloc` first (as `genjax.cli.train`
  does), in its own process and in the probes, so genjax and PyTorch run on the same allocator.
  With glibc's defaults both page-fault their large buffers back in every step (DCGAN-64:
  64,000 minor faults per genjax step, 45,000 per PyTorch step); the tuned allocator keeps
  freed memory in the process. `--default-malloc` measures the defaults.
- **FLOPs with oneDNN kernels**: XLA's cost analysis counts nothing inside custom calls, so the
  FLOPs are those of the same step lowered with XLA's kernels (the same function).
- **Steady state**: genjax's jitted step (`strategy.compile(method.step)`, donated state) and
  the PyTorch peer's eager step run in alternating blocks (genjax first in even rounds,
  PyTorch first in odd ones) so that drift and neighbours' load hit both alike; one side waits
  while the other runs. The peer runs in a process of its own (`benchmarks.probe --serve`):
  in one process the two would share libgomp, whose threads stop spin-waiting once genjax's
  oneDNN teams push their count past the cores, and PyTorch's small parallel ops then pay a
  wake-up each (its VAE step took 38 instead of 28 ms after genjax had run). Each step is
  timed alone and waited for (`jax.block_until_ready`, `torch.cuda.synchronize`); the tables
  give medians and interquartile ranges. Both start from the same weights (genjax's initial
  state, built again in the peer's process and checked by digest, copied into PyTorch) and
  take the same uint8 batch at the dataset's native size, preprocessing it on the device
  (scale, then pad 28->32 or upsample 32->64).
- **Peers** (`benchmarks/torch_peers.py`): the same networks (parameter counts asserted equal)
  and update: the DCGAN step in pytorch/examples' order (G forward once; D step on real and
  detached fakes; G step through the updated D; BCE with logits; Adam(2e-4, 0.5, 0.999)), the
  VAE's `mean(Bernoulli NLL + KL)` with Adam(1e-3, 0.9, 0.999); BatchNorm in train mode;
  float32, or bfloat16 through `torch.autocast` (parameters float32 on both sides). Unlike
  pytorch/examples, the peer does not compute D's parameter gradients in the G step, which
  genjax does not compute either (`DCGANPeer(d_grads_in_g_step=True)` restores them). PyTorch
  uses as many threads as there are cores and the channels_last memory format (6-7% faster than
  NCHW for DCGAN-64 on the 2-core CPU here; `--peer-nchw` for pytorch/examples' default).
- **Compile**: what the first call of the step spends before it runs (trace + lower + XLA
  compile) in a fresh process with an empty persistent compilation cache, then in another fresh
  process reading the cache the first filled (`jax_persistent_cache_min_compile_time_secs=0`).
  Tracing and lowering are never cached, so the warm time cannot go below them;
  `compile_detail` in the JSON splits them and gives the whole first call with its step.
- **Memory**: in fresh processes, per side. CPU: increase of the process's peak RSS
  (`VmHWM`, reset first) over its RSS before the model was built (genjax's from the warm-cache
  process; the cold one, which includes the compiler, is `peak_mem_cold_mb`; XLA's own plan is
  `xla_memory_mb`). GPU: JAX's `peak_bytes_in_use`, `torch.cuda.max_memory_allocated`.
- **FLOPs, MFU**: XLA's cost analysis of the lowered genjax step (all ops), and the same work
  is credited to PyTorch. In brackets, PyTorch's `FlopCounterMode` count of the peer step:
  convolutions and matrix products only, counting every kernel tap where XLA skips the taps
  that fall on padding, hence a few percent more. MFU = FLOPs
  per step x steps/s / peak, the peak being the best n^3 GEMM measured by the harness in JAX and
  PyTorch for that dtype (CPU), or the vendor's dense peak (GPU; TF32 for float32).
- **Input pipeline**: images/s that `genjax.data.BatchIterator` + `data.prefetch` +
  `strategy.put_batch` deliver over Fashion-MNIST's training split (28x28x1 uint8), measured
  alone, at the model's batch size: compare it with the step's images/s."""


def _clean(value: Any) -> Any:
  """JSON-safe: NaN/inf -> None, recursively."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  return value


def _fmt(value: float | None, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def _pair(a: float | None, b: float | None, spec: str) -> str:
  return f"{_fmt(a, spec)} / {_fmt(b, spec)}"


def _with_iqr(median: float | None, iqr: float | None) -> str:
  if median is None:
    return "-"
  return f"{median:.1f} ({iqr:.1f})" if iqr is not None else f"{median:.1f}"


def table_row(r: dict[str, Any]) -> str:
  flops = r.get("flops_per_step")
  peer_flops = r.get("peer_flops_per_step")
  gflop = _fmt(flops and flops / 1e9, ".2f")
  if peer_flops:
    gflop += f" ({peer_flops / 1e9:.2f})"
  mfu = _pair(r.get("mfu") and 100 * r["mfu"], r.get("peer_mfu") and 100 * r["peer_mfu"], ".1f")
  busy = r.get("other_load_timing")
  cells = [
      r["model"] + (f" (busy {100 * busy:.0f}%)" if busy is not None and busy > DISTURBED else ""),
      str(r["batch"]), r["dtype"], _fmt(r["images_per_sec"], ".1f"),
      _fmt(r.get("peer_images_per_sec"), ".1f"),
      _fmt(r.get("ratio"), ".2f") + ("x" if r.get("ratio") is not None else ""),
      _with_iqr(r["step_ms_median"], r.get("step_ms_spread")),
      _with_iqr(r.get("peer_step_ms_median"), r.get("peer_step_ms_spread")),
      _pair(r.get("compile_s"), r.get("compile_warm_s"), ".1f"),
      gflop, mfu + (" %" if r.get("mfu") is not None else ""),
      _pair(r.get("peak_mem_mb"), r.get("peer_peak_mem_mb"), ".0f"),
      _fmt(r.get("pipeline_images_per_sec"), ".0f"),
  ]
  return "| " + " | ".join(cells) + " |"


def table(records: list[dict[str, Any]]) -> str:
  return "\n".join([TABLE_HEADER, *(table_row(r) for r in records)])


def kernel_text(records: list[dict[str, Any]]) -> str:
  """Which convolution kernels each dtype ran on, e.g. ``float32 onednn, bfloat16
  onednn-float32 (oneDNN 2.6.3 avx2)``."""
  kinds = {rec["dtype"]: rec.get("conv_kernels", rec.get("conv_backend", "?")) for rec in records}
  libraries = sorted({rec["onednn"] for rec in records if rec.get("onednn")})
  text = ", ".join(f"{dtype} {kind}" for dtype, kind in kinds.items())
  return text + (f" ({', '.join(libraries)})" if libraries else "")


def summary(records: list[dict[str, Any]]) -> str:
  """The run's setting, as a bullet list."""
  r = records[0]
  peaks = {}
  for rec in records:
    peaks.setdefault(rec["dtype"], rec)
  peak_text = "; ".join(f"{d} {p['peak_flops'] / 1e9:,.0f} GFLOP/s ({p['peak_source']})"
                        for d, p in peaks.items() if p.get("peak_flops"))
  loads = [x for rec in records for x in (rec.get("load_start"), rec.get("load_end"))
           if x is not None]
  versions = ", ".join(f"{k} {r[k + '_version']}" for k in ("jax", "flax", "torch", "python")
                       if r.get(k + "_version"))
  lines = [
      f"- {r['date']}, suite `{r['suite']}`{' (dry run: tiny networks)' if r['dry_run'] else ''}",
      f"- device: {r['device']}, backend `{r['backend']}` ({r['num_devices']} device(s)); "
      f"peer: {r['peer'] or 'none'} on `{r['peer_device']}`, {r['threads']} threads, "
      f"{'channels_last' if r.get('peer_channels_last') else 'NCHW'}",
      f"- host allocator: {MALLOC.get(r.get('malloc'), 'glibc default (not recorded)')}",
      f"- conv kernels: {kernel_text(records)}",
      f"- {versions}",
      f"- {r['steps_timed']} timed steps per side after {r['warmup']} warm-up, in alternating "
      f"blocks of {min(r['block'], r['steps'])}",
      f"- peak for MFU: {peak_text}",
  ]
  shares = [rec.get("other_load_timing") for rec in records]
  shares = [x for x in shares if x is not None]
  if loads:
    text = (f"- machine load: 1-min load average {min(loads):.1f} to {max(loads):.1f} on "
            f"{r['threads']} cores")
    if shares:
      text += (f"; other processes used {100 * min(shares):.0f} to {100 * max(shares):.0f}% of "
               f"the CPU during the timed steps (0% = quiet machine)")
    lines.append(text)
  return "\n".join(lines)


def run_markdown(records: list[dict[str, Any]]) -> str:
  r = records[0]
  return (f"# genjax vs PyTorch train step: {r['backend']}, {r['date'][:10]}\n\n"
          f"{summary(records)}\n\n{table(records)}\n\n"
          "Columns and method: see [README.md](README.md).\n")


def ordered(record: dict[str, Any]) -> dict[str, Any]:
  """The record with the required fields first, in their documented order."""
  head = {k: record.get(k) for k in REQUIRED_FIELDS}
  return {**head, **{k: v for k, v in record.items() if k not in head}}


def write_run(records: list[dict[str, Any]], out_dir: str) -> tuple[str, str]:
  """Writes ``<date>_<time>_<backend>[_dryrun].json`` and ``.md``; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  records = [ordered(r) for r in records]
  r = records[0]
  stamp = datetime.datetime.fromisoformat(r["date"]).strftime("%Y-%m-%d_%H%M%S")
  base = os.path.join(out_dir, f"{stamp}_{r['backend']}{'_dryrun' if r['dry_run'] else ''}")
  with open(base + ".json", "w") as f:
    json.dump(_clean(records), f, indent=1, allow_nan=False)
    f.write("\n")
  with open(base + ".md", "w") as f:
    f.write(run_markdown(records))
  return base + ".json", base + ".md"


def load_runs(out_dir: str) -> list[tuple[str, list[dict[str, Any]]]]:
  """(json file name, records) of every run in ``out_dir``, oldest first."""
  runs = []
  for path in sorted(glob.glob(os.path.join(out_dir, "*.json"))):
    try:
      with open(path) as f:
        records = json.load(f)
    except (OSError, ValueError):
      continue
    if isinstance(records, list) and records and isinstance(records[0], dict):
      runs.append((os.path.basename(path), records))
  runs.sort(key=lambda run: run[1][0].get("date", ""))
  return runs


def _kept_notes(path: str) -> str:
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return ""
  m = re.search(re.escape(NOTES_START) + r".*?" + re.escape(NOTES_END), text, re.S)
  return m.group(0) if m else ""


def write_readme(out_dir: str) -> str:
  """Rewrites ``out_dir/README.md`` from the runs there; returns its path."""
  path = os.path.join(out_dir, "README.md")
  runs = load_runs(out_dir)
  latest: dict[tuple[str, str, str], tuple[str, list]] = {}
  for name, records in runs:  # a real run beats any dry run of the same backend
    # the newest run per backend, device (it names the CPU, its ISA and any cap) and suite
    key = (records[0]["backend"], records[0]["device"], records[0]["suite"])
    dry = records[0].get("dry_run", False)
    if key not in latest or dry <= latest[key][1][0].get("dry_run", False):
      latest[key] = (name, records)
  parts = ["# genjax benchmarks\n",
           "genjax's train step against the same model and update written in PyTorch, on the "
           "same machine, batch and weights.\n",
           _kept_notes(path) or f"{NOTES_START}\n{NOTES_END}", "",
           "## How to run\n", HOW_TO_RUN, "", "## Latest results\n"]
  if not latest:
    parts.append("No runs yet.\n")
  for (backend, device, suite), (name, records) in sorted(latest.items()):
    stem = name[:-len(".json")]
    parts += [f"### {backend}: {device}, suite `{suite}`\n", summary(records), "",
              table(records), "", f"Files: [{stem}.json]({stem}.json), [{stem}.md]({stem}.md)\n"]
  parts += ["## What is measured\n", METHOD, "", "## All runs\n",
            "| date | backend | device | suite | records | file |", "|---|---|---|---|--:|---|"]
  for name, records in reversed(runs):
    r = records[0]
    parts.append(f"| {r['date']} | {r['backend']} | {r['device']} | "
                 f"{r['suite']} | {len(records)} | [{name}]({name}) |")
  with open(path, "w") as f:
    f.write("\n".join(parts) + "\n")
  return path
