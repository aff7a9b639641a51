"""config.profile: a jax.profiler trace of chosen steps, the HLO dump, and the trace summary."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax import profiling
from genjax import train
from genjax.cli import profile
from genjax.errors import ConfigError
from tests.conftest import tiny_config


RUNS = [("mesh", "onednn"), ("pmap", "onednn"), ("mesh", "xla")]  # (strategy, conv backend)


@pytest.fixture(scope="module")
def unprofiled(tmp_path_factory):
  """The same tiny DCGAN run without profiling, per strategy and conv backend."""
  out = {}
  for strategy, backend in RUNS:
    c = tiny_config("dcgan", parallel=strategy, conv_backend=backend)
    out[strategy, backend] = train.train_and_evaluate(
        c, str(tmp_path_factory.mktemp(strategy))).state
  return out


@pytest.mark.parametrize("strategy,backend", RUNS)
def test_trace_and_hlo_leave_training_unchanged(tmp_path, unprofiled, strategy, backend):
  c = tiny_config("dcgan", parallel=strategy, conv_backend=backend,
                  **{"profile.start_step": 2, "profile.stop_step": 4, "profile.dump_hlo": True})
  result = train.train_and_evaluate(c, str(tmp_path))
  # Profiling and the explicitly compiled step change nothing: bit-identical parameters.
  for a, b in zip(jax.tree.leaves(result.state), jax.tree.leaves(unprofiled[strategy, backend])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  # TensorBoard/XProf's XPlane file and Perfetto's trace, under <workdir>/profile.
  assert glob.glob(str(tmp_path / "profile" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  summary = profiling.top_ops(str(tmp_path))
  assert summary["trace"].endswith(".trace.json.gz")
  assert summary["steps"] == 2  # updates 2 and 3, each in its StepTraceAnnotation
  assert summary["executions"] >= 2  # and the executions of the step that ran in the window
  assert summary["ops"] and summary["total_ms"] > 0
  assert all(op["ms"] > 0 and op["count"] > 0 for op in summary["ops"])
  shares = [op["share"] for op in summary["ops"]]
  assert shares == sorted(shares, reverse=True) and sum(shares) <= 1 + 1e-9
  assert "annotated steps" in profiling.format_top(summary)

  hlo = tmp_path / "hlo"
  conv = "stablehlo.convolution" if backend == "xla" else "genjax_onednn_conv_fwd"
  assert conv in (hlo / "train_step.stablehlo.mlir").read_text()
  optimized = (hlo / "train_step.optimized.hlo.txt").read_text()
  assert optimized.startswith("HloModule") and conv.split(".")[-1] in optimized
  cost = json.loads((hlo / "train_step.cost_analysis.json").read_text())
  assert cost["flops"] > 0
  # The summary names each op after what it is in the optimized HLO.
  every_op = profiling.top_ops(str(tmp_path), n=100_000)
  described = profiling.describe_ops(optimized, [op["name"] for op in every_op["ops"]])
  if backend == "xla":
    assert any("convolution" in d and "window={" in d for d in described.values()), described
  else:  # the custom calls, by target: forward, backward-data and backward-weights
    for kind in ("fwd", "bwd_data", "bwd_weights"):
      assert any(f"custom-call genjax_onednn_conv_{kind}" in d for d in described.values()), (
          kind, described)
  table = profiling.format_top(every_op, optimized)
  assert all(d in table for d in described.values())
  # --by kind: the same time, summed by custom-call target or op kind.
  kinds = profiling.by_kind(every_op, optimized)
  assert np.isclose(sum(k["ms"] for k in kinds["ops"]), sum(op["ms"] for op in every_op["ops"]))
  assert sum(k["count"] for k in kinds["ops"]) == sum(op["count"] for op in every_op["ops"])
  assert len(kinds["ops"]) < len(every_op["ops"])
  assert not any(k["name"].rsplit(".", 1)[-1].isdigit() for k in kinds["ops"])
  if backend != "xla":
    assert {f"genjax_onednn_conv_{k}" for k in ("fwd", "bwd_data", "bwd_weights")} <= {
        k["name"] for k in kinds["ops"]}
  assert profile.main(["--workdir", str(tmp_path), "--by", "kind", "--top", "3"]) == 0


def test_no_trace_by_default(tmp_path):
  train.train_and_evaluate(tiny_config("dcgan", num_steps=2), str(tmp_path))
  assert not os.path.exists(tmp_path / "profile") and not os.path.exists(tmp_path / "hlo")


@pytest.mark.parametrize("window", [(3, 3), (0, 2), (2, 6), (4, 1)])
def test_bad_window_is_one_line(window):
  c = tiny_config("dcgan", **{"profile.start_step": window[0], "profile.stop_step": window[1]})
  with pytest.raises(ConfigError, match=r"config.profile traces updates \[start_step, stop_step"):
    config_lib.validate(c)


def test_summary_cli_without_trace_says_how(tmp_path, capsys):
  assert profile.main(["--workdir", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "--config.profile.start_step" in err
