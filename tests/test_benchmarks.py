"""The benchmark harness: a dry run end to end, and the PyTorch peers against genjax.

No timing is asserted: only that the harness runs, writes what it promises, and that the peers
are the same models doing the same update.
"""

import functools
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from flax import nnx

from benchmarks import harness
from benchmarks import probe
from benchmarks import report
from benchmarks import run as run_cli
from benchmarks import torch_peers
from benchmarks import workloads
from genjax import config as config_lib
from genjax import host
from genjax import kernels
from genjax import models
from genjax import torch_weights
from genjax.models import layers
from tests.conftest import REPO
from tests.conftest import xla_flags

POSITIVE = ("images_per_sec", "peer_images_per_sec", "ratio", "compile_s", "compile_warm_s",
            "flops_per_step", "mfu", "peer_mfu", "step_ms_median", "peer_step_ms_median",
            "peak_mem_mb", "peer_peak_mem_mb", "pipeline_images_per_sec", "peak_flops",
            "peer_flops_per_step")


def test_gpu_script_dry_run_writes_records_markdown_and_readme(tmp_path):
  """benchmarks/gpu.sh --dry-run: the GPU script's whole flow (set-up checks included) on the CPU."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = xla_flags()  # one CPU device, as the benchmarks run (the tests have 8)
  env["PYTHON"] = sys.executable
  cmd = ["bash", str(REPO / "benchmarks" / "gpu.sh"), "--dry-run", "--models", "dcgan32",
         "--dtypes", "bfloat16", "--out", str(tmp_path)]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                        check=False)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

  (json_path,) = tmp_path.glob("*_cpu_dryrun.json")
  records = json.loads(json_path.read_text())
  # bfloat16: on float32 oneDNN calls where this CPU's oneDNN has no bfloat16 convolution
  assert [(r["model"], r["dtype"]) for r in records] == [("dcgan32", "bfloat16")]
  for r in records:
    assert list(r)[:len(report.REQUIRED_FIELDS)] == list(report.REQUIRED_FIELDS)
    for key in POSITIVE:
      assert isinstance(r[key], (int, float)) and r[key] > 0, (key, r[key])
    assert r["ratio"] == pytest.approx(r["images_per_sec"] / r["peer_images_per_sec"])
    assert r["images_per_sec"] == pytest.approx(r["batch"] * 1e3 / r["step_ms_median"])
    assert r["step_ms_spread"] >= 0 and r["peer_step_ms_spread"] >= 0
    assert r["batch"] == 8 and r["backend"] == "cpu" and r["dry_run"] and r["tiny"]
    assert r["steps_timed"] == 2 and r["num_devices"] == 1
    assert r["params"] == r["peer_params"]
    assert r["jax_version"] == jax.__version__ and r["torch_version"] == torch.__version__
    assert set(r["compile_detail"]) == {"cold", "warm"}
    assert r["malloc"] == "tuned"
    # the ISA and the kernels each record ran on (bfloat16 on float32 oneDNN calls where this
    # CPU's oneDNN has no bfloat16 convolution)
    assert r["cpu_isa"] == host.cpu_isa() and r["device"].endswith(f", {host.cpu_isa()})")
    assert r["conv_kernels"] == ("onednn" if kernels.onednn_dtype(r["dtype"]) == r["dtype"]
                                 else "onednn-float32")
    assert r["onednn"].startswith("oneDNN ")

  md = json_path.with_suffix(".md").read_text()
  assert report.TABLE_HEADER in md and report.MALLOC["tuned"] in md
  assert f"- conv kernels: bfloat16 {records[0]['conv_kernels']} (" in md
  rows = [line for line in md.splitlines() if line.startswith("| dcgan32")]
  assert len(rows) == 1 and all(row.count("|") == report.TABLE_HEADER.count("|") // 2
                                for row in rows)
  readme = (tmp_path / "README.md").read_text()
  assert "## How to run" in readme and "## Latest results" in readme
  assert all(row in readme for row in rows) and json_path.name in readme


def test_readme_keeps_its_notes(tmp_path):
  record = {k: 1.0 for k in report.REQUIRED_FIELDS}
  record.update(model="vae", batch=8, backend="cpu", device="cpu", dtype="float32",
                date="2026-01-02T03:04:05+00:00", jax_version="x", torch_version="y",
                suite="default", dry_run=False, num_devices=1, peer="PyTorch eager",
                peer_device="cpu", threads=2, steps=2, warmup=1, block=1, steps_timed=2,
                peak_flops=1e9, peak_source="test")
  report.write_run([record], str(tmp_path))
  readme = tmp_path / "README.md"
  readme.write_text(f"# old\n{report.NOTES_START}\nhand-written\n{report.NOTES_END}\nstale\n")
  text = open(report.write_readme(str(tmp_path))).read()
  assert "hand-written" in text and "stale" not in text and "| vae | 8 | float32 |" in text


def _genjax_param_counts(config) -> dict[str, int]:
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  family = models.get(config.model.name)
  nets = nnx.eval_shape(lambda: family.build(config_lib.image_shape(config), rngs=nnx.Rngs(0),
                                             **kwargs))
  return {role: layers.count_params(net) for role, net in nets.items()}


@pytest.mark.parametrize("name", sorted(workloads.WORKLOADS))
@pytest.mark.parametrize("tiny", [False, True])
def test_peer_parameter_counts_equal_genjax(name, tiny):
  config = workloads.make_config(workloads.get(name), 8, "float32", tiny=tiny)
  peer = workloads.build_peer(config, "float32")
  assert peer.num_params() == _genjax_param_counts(config)
  if name == "dcgan64" and not tiny:
    assert peer.num_params() == {"generator": 3_576_704, "discriminator": 2_765_568}


TRANSLATION = sorted(n for n, w in workloads.WORKLOADS.items() if w.dataset == "image_folder")


@pytest.mark.parametrize("name", sorted(set(workloads.WORKLOADS) - set(TRANSLATION)))
def test_one_peer_step_gives_genjax_losses_from_the_same_weights(name):
  config = workloads.make_config(workloads.get(name), 8, "float32", tiny=True)
  host_batch = workloads.make_batch(config)
  setup = workloads.build_genjax(config, host_batch)
  peer = workloads.build_peer(config, "float32")
  torch_peers.load_genjax(peer, workloads.networks(setup))
  # The step's own noise: fold_in(rng, step), split for the VAE's reparameterisation.
  key = jax.random.fold_in(setup.state.rng, setup.state.step)
  if config.model.name == "vae":
    key = jax.random.split(key)[1]
  noise = np.array(jax.random.normal(key, (8, config.model.latent_dim)))
  _, metrics = setup.step(setup.state, setup.batch)
  theirs = peer.step(workloads.peer_batch(host_batch), torch.from_numpy(noise))
  assert set(theirs) == set(metrics)
  for k, v in metrics.items():
    np.testing.assert_allclose(float(v), float(theirs[k]), rtol=2e-4, atol=1e-5, err_msg=k)


def _translation_draws(setup, config) -> torch_peers.TranslationDraws:
  """The random draws of genjax's next translation step (genjax/methods/translation.py), for the
  peer to replay: the step's key ``k = fold_in(rng, step)``; its ``fold_in(k, 0)`` crops and
  flips per shuffle group g (``data.random_crop_flip``: group key ``fold_in(., g)``, then top 0,
  left 1, flip 2), ``fold_in(k, 10 + i)`` drives direction i's generator on its source,
  ``20 + i`` the cycle's way back, ``30 + i`` the identity term (each dropout layer folds in its
  U-Net level or ResNet block: ``layers.dropout``'s Bernoulli(1/2) keep mask), and
  ``40 + i`` the pool of direction i's discriminator (``ImagePool.query``)."""
  method, state = setup.method, setup.strategy.get_state(setup.state)
  key = method.step_key(state)
  sub = lambda i: jax.random.fold_in(key, i)  # pylint: disable=unnecessary-lambda-assignment
  ds, n = config.dataset, config.batch_size
  h, size = ds.load_size, ds.crop_size
  crops = {}
  for g, keys in enumerate(method.groups):
    k = jax.random.fold_in(sub(0), g)
    draw = (jax.random.randint(jax.random.fold_in(k, 0), (n,), 0, h - size + 1),
            jax.random.randint(jax.random.fold_in(k, 1), (n,), 0, h - size + 1),
            jax.random.bernoulli(jax.random.fold_in(k, 2), 0.5, (n,)))
    crops.update({name: tuple(np.asarray(v) for v in draw) for name in keys})
  calls = {}
  for i, (_, _, g, _) in enumerate(method.directions):
    calls[g, "fake"] = sub(10 + i)
    if method.cycle:
      calls[method.generators[1 - i], "rec"] = sub(20 + i)
      calls[g, "idt"] = sub(30 + i)

  def dropout(role, purpose, index, shape):
    n, c, hh, ww = shape
    keep = jax.random.bernoulli(jax.random.fold_in(calls[role, purpose], index), 0.5,
                                (n, hh, ww, c))
    return torch.from_numpy(np.asarray(keep, np.float32).transpose(0, 3, 1, 2).copy())

  pool = {}
  for i, (*_, d) in enumerate(method.directions):
    k = sub(40 + i)
    pool[d] = (np.asarray(jax.random.uniform(jax.random.fold_in(k, 0), (n,)) < 0.5),
               np.asarray(jax.random.randint(jax.random.fold_in(k, 1), (n,), 0,
                                             max(1, config.method.pool_size))))
  return torch_peers.TranslationDraws(crops=crops, dropout=dropout, pool=pool)


# Pix2Pix at its defaults (dropout on: unet_64's level 4); CycleGAN with dropout in its ResNet
# blocks too (the reference's default has none) and pools that fill within the batch, so that
# every random draw of the step counts. Batch 8: the tests' 8 CPU devices.
TRANSLATION_CASES = {"pix2pix256": {}, "cyclegan256": {"model.use_dropout": True,
                                                       "method.pool_size": 4}}


@functools.lru_cache(maxsize=None)
def _translation_step(name: str):
  """One genjax step and one peer step from the same weights, batch and draws (float32, XLA's
  convolutions): ``(setup, genjax's new state, its metrics, the peer, its metrics)``."""
  config = workloads.make_config(workloads.get(name), 8, "float32", tiny=True,
                                 conv_backend="xla")
  for key, value in TRANSLATION_CASES[name].items():
    section, field = key.split(".")
    config[section][field] = value
  config_lib.validate(config)
  host_batch = workloads.make_batch(config)
  setup = workloads.build_genjax(config, host_batch)
  peer = workloads.build_peer(config, "float32")
  torch_peers.load_genjax(peer, workloads.networks(setup))
  draws = _translation_draws(setup, config)
  state, metrics = setup.step(setup.state, setup.batch)
  theirs = peer.step(workloads.peer_batch(host_batch), draws)
  return setup, setup.strategy.get_state(state), metrics, peer, theirs


def _in_torch_layout(setup, state, role: str, params=None) -> dict[str, np.ndarray]:
  """Network ``role`` of ``state`` (or with ``params``, e.g. Adam's first moments) as the
  reference's state_dict."""
  params = state.params[role] if params is None else params
  return torch_weights.to_torch(setup.method.net(role, params, state.buffers[role]))


def _null_gradient_biases(net) -> set[str]:
  """The biases of convs followed by an InstanceNorm, which subtracts them again: their
  gradient is 0 but for rounding, on both sides."""
  out = set()
  for prefix, seq in net.named_modules():
    if isinstance(seq, torch.nn.Sequential):
      kids = list(seq.named_children())
      for (name, conv), (_, norm) in zip(kids, kids[1:]):
        if (isinstance(conv, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and
            conv.bias is not None and isinstance(norm, torch.nn.InstanceNorm2d)):
          out.add(f"{prefix}.{name}.bias".lstrip("."))
  return out


# Gradients: largest difference allowed, relative to each tensor's largest gradient. CycleGAN's
# generator gradients at initialisation are ill-conditioned in float32 (they come through
# InstanceNorm backward passes that cancel most of what reaches them): against the same gradients
# computed by PyTorch in float64, genjax on XLA was off by 3e-6, PyTorch in float32 by up to
# 2.5e-4 (oneDNN convolutions; 1.3e-3 on other tensors with oneDNN off), genjax on its oneDNN
# backend by 2.5e-4; Pix2Pix's agree to 3e-6.
GRAD_TOLERANCE = {"pix2pix256": 1e-4, "cyclegan256": 5e-3}


@pytest.mark.parametrize("name", TRANSLATION)
def test_one_translation_peer_step_gives_genjax_losses_and_parameters(name):
  """The same weights, batch and random draws (crops, flips, dropout masks, pool draws) give the
  same losses, gradients and updated parameters: genjax's Pix2Pix/CycleGAN step is the
  reference's optimize_parameters.

  Adam's first update moves each parameter by about lr * sign(gradient), so where a gradient is
  at rounding level its sign, and the parameter, can differ by up to 2 lr: parameters are
  compared where the gradient is at least 1% of its tensor's largest (well above rounding),
  gradients everywhere (Adam's first moments, (1 - b1) x the gradient)."""
  setup, state, metrics, peer, theirs = _translation_step(name)
  assert set(theirs) == set(metrics)
  for k, v in metrics.items():
    np.testing.assert_allclose(float(v), float(theirs[k]), rtol=2e-4, atol=1e-5, err_msg=k)

  for role, net in peer.networks().items():
    ours = _in_torch_layout(setup, state, role)
    want = {k: v.numpy() for k, v in net.state_dict().items()}
    assert list(ours) == list(want)
    adam = next(s for s in jax.tree.leaves(state.opt_state[role], is_leaf=lambda s: hasattr(
        s, "mu")) if hasattr(s, "mu"))
    our_grads = _in_torch_layout(setup, state, role, adam.mu)
    opt = peer.opt_g if role in peer.generators else peer.opt_d
    grads = {k: opt.state[p]["exp_avg"].numpy() for k, p in net.named_parameters()}
    largest = max(np.abs(g).max() for g in grads.values())
    null = _null_gradient_biases(net)
    for k, g in grads.items():
      if k in null:
        assert np.abs(g).max() < 1e-5 * largest and np.abs(our_grads[k]).max() < 1e-5 * largest
        continue
      scale = np.abs(g).max()
      np.testing.assert_allclose(our_grads[k], g, rtol=0, atol=GRAD_TOLERANCE[name] * scale,
                                 err_msg=f"gradient of {role} {k}")
      clear = np.abs(g) >= 0.01 * scale
      np.testing.assert_allclose(ours[k][clear], want[k][clear], rtol=1e-6, atol=5e-8,
                                 err_msg=f"{role} {k}")
    for k in want:
      if k not in grads and not (name == "pix2pix256" and role == "D" and "running" in k):
        # BatchNorm statistics (the discriminator's running ones: see the next test)
        np.testing.assert_allclose(ours[k], want[k], rtol=1e-5, atol=1e-7, err_msg=f"{role} {k}")

  for d in ("D_A", "D_B") if name == "cyclegan256" else ():
    pool = state.extra[f"pool_{d}"]
    stored = torch.stack(peer.pools[d].images).numpy().transpose(0, 2, 3, 1)
    assert int(pool["count"]) == len(stored) == TRANSLATION_CASES[name]["method.pool_size"]
    np.testing.assert_allclose(np.asarray(pool["images"]), stored, rtol=0, atol=1e-5)


def test_pix2pix_discriminator_statistics_follow_the_reference_order():
  """The reference's Pix2Pix judges the fake pair before the real one (its CycleGAN the other
  way round): D's BatchNorm running statistics follow that order."""
  setup, state, _, peer, _ = _translation_step("pix2pix256")
  ours = _in_torch_layout(setup, state, "D")
  for k, v in peer.networks()["D"].state_dict().items():
    if "running" in k:
      np.testing.assert_allclose(ours[k], v.numpy(), rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("backend,isa,cap,expected", [
    ("cpu", "avx512_bf16", None, ["float32", "bfloat16"]),
    ("cpu", "avx512_bf16", "avx2", ["float32"]),  # --max-isa avx2
    ("cpu", "avx512", None, ["float32"]),
    ("cpu", "avx2", None, ["float32"]),
    ("gpu", "avx2", None, ["float32", "bfloat16"]),
])
def test_default_dtypes_skip_bfloat16_where_the_cpu_has_no_bfloat16_instructions(
    monkeypatch, backend, isa, cap, expected):
  """Without avx512_bf16 PyTorch emulates bfloat16 (a GEMM ~40x slower than float32 on an AVX2
  EPYC) and genjax's convolutions compute in float32: the default run leaves it out and says
  why; asked for, it is timed."""
  monkeypatch.setattr(host, "cpu_isa", lambda: isa)
  monkeypatch.setattr(harness, "isa_cap", lambda: cap)
  logged = []
  assert harness.default_dtypes(backend, logged.append) == expected
  if expected == ["float32"]:
    (line,) = logged
    assert line.startswith(f"bfloat16 skipped: this CPU ({isa}{' capped at avx2' if cap else ''})")
    assert "--dtypes float32,bfloat16" in line
  else:
    assert not logged
  assert run_cli.parse_args([]).dtypes is None
  assert run_cli.parse_args(["--dtypes", "bfloat16"]).dtypes == ["bfloat16"]


def test_an_out_folder_that_cannot_be_made_is_refused_before_anything_is_timed(tmp_path, capsys):
  a_file = tmp_path / "results"
  a_file.write_text("")
  with pytest.raises(SystemExit) as info:
    run_cli.parse_args(["--out", str(a_file / "cpu")])
  assert info.value.code == 2
  assert capsys.readouterr().err.splitlines()[-1].endswith(
      f"error: --out {a_file / 'cpu'} cannot be made (Not a directory)")
  assert run_cli.parse_args(["--out", str(tmp_path / "new")]).out == str(tmp_path / "new")
  assert (tmp_path / "new").is_dir()


def test_peer_server_times_steps_from_genjax_weights_in_its_own_process():
  opts = harness.Options(models=[("vae", 8)], dtypes=["float32"], dry_run=True)
  config = workloads.make_config(workloads.get("vae"), 8, "float32", tiny=True,
                                 conv_backend="xla")
  setup = workloads.build_genjax(config, workloads.make_batch(config))
  server = harness.PeerServer("vae", 8, "float32", opts, "cpu")
  try:
    assert server.proc.pid != os.getpid()
    assert server.proc.pid in harness._LIVE_CHILDREN  # its CPU time is the run's, not others'
    assert server.hello["digest"] == probe.params_digest(workloads.networks(setup))
    assert server.hello["params"] == _genjax_param_counts(config)
    assert server.steps(0) == []
    times = server.steps(3)
    assert len(times) == 3 and all(t > 0 for t in times)
  finally:
    server.close()
  assert server.proc.returncode == 0 and server.proc.pid not in harness._LIVE_CHILDREN


def test_peer_server_that_cannot_start_reports_why():
  opts = harness.Options(models=[("nope", 8)], dtypes=["float32"], dry_run=True)
  with pytest.raises(RuntimeError, match=r"peer server nope float32 failed \(exit 1\)(.|\n)*"
                                         r"unknown model 'nope'"):
    harness.PeerServer("nope", 8, "float32", opts, "cpu")
  assert not harness._LIVE_CHILDREN
