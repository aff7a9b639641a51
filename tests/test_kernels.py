"""genjax.kernels: the oneDNN convolutions equal XLA's, forward and both gradients, for every
geometry genjax's models use; the backend a network is built on, its errors and its mesh
mapping."""

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genjax import checkpoint, errors, kernels
from genjax.models import dcgan, layers
from tests.conftest import TINY_DCGAN_FLAGS, run_main, xla_flags
from tests.test_layers import CASES

# (input (H, W, C), kernel (kh, kw, out), stride, ((top, bottom), (left, right))): DCGAN's and the
# AEs' 4x4/s2/p1 encoder convs and their 4x4 valid output conv, the classifier's 3x3 same conv,
# and an odd one with unequal strides and asymmetric padding. The forward pass of DCGAN-64's
# 256->512 conv (a 4096 x 512 kernel, 4x4 outputs) and of convs to one output pixel runs as
# im2col + GEMM (with padding, or on the input itself).
CONVS = [((16, 16, 8), (4, 4, 16), (2, 2), ((1, 1), (1, 1))),
         ((4, 4, 16), (4, 4, 1), (1, 1), ((0, 0), (0, 0))),
         ((9, 9, 3), (3, 3, 6), (1, 1), ((1, 1), (1, 1))),
         ((9, 7, 5), (3, 2, 6), (2, 1), ((1, 2), (0, 1))),
         ((8, 8, 256), (4, 4, 512), (2, 2), ((1, 1), (1, 1))),
         ((3, 2, 8), (4, 3, 5), (2, 1), ((1, 0), (0, 1)))]


def _lax_conv(x, k, stride, padding):
  return jax.lax.conv_general_dilated(x, k, stride, padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _value_and_grads(fn, x, k, g):
  """fn(x, k) and the gradients of <fn(x, k), g>, through a fresh jit (fresh trace)."""
  return jax.jit(lambda x, k: (fn(x, k), jax.grad(lambda x, k: jnp.vdot(fn(x, k), g),
                                                   (0, 1))(x, k)))(x, k)


def _skip_without_onednn(dtype):
  """Tests of oneDNN's own ``dtype`` primitives skip where this CPU's oneDNN lacks them (Debian's
  oneDNN 2.6 has no bfloat16 convolution without AVX-512); the fallback is tested everywhere
  (see test_unsupported_dtype_*)."""
  if kernels.onednn_dtype(dtype) != dtype:
    pytest.skip(f"this CPU's {kernels.info()} has no {dtype} convolution")


def _assert_same(ours, ref, rtol):
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("hwc,kernel,stride,padding", CONVS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_onednn_conv_matches_lax_forward_and_gradients(hwc, kernel, stride, padding, dtype):
  _skip_without_onednn(dtype)
  rng = np.random.default_rng(sum(hwc))
  x = jnp.asarray(rng.normal(size=(4, *hwc)), dtype)
  k = jnp.asarray(rng.normal(size=(*kernel[:2], hwc[2], kernel[2])), dtype)
  out = _lax_conv(x.astype(jnp.float32), k.astype(jnp.float32), stride, padding)
  g = jnp.asarray(rng.normal(size=out.shape), dtype)
  ref = _value_and_grads(lambda x, k: _lax_conv(x, k, stride, padding), *(
      a.astype(jnp.float32) for a in (x, k, g)))
  ours = _value_and_grads(lambda x, k: kernels.onednn_conv(x, k, stride, padding), x, k, g)
  assert ours[0].dtype == dtype
  _assert_same(ours, ref, 1e-5 if dtype == "float32" else 1e-2)


@pytest.mark.parametrize("size,k,stride,padding,out_pad", CASES)
def test_onednn_conv_transpose_matches_lax_forward_and_gradients(size, k, stride, padding,
                                                                   out_pad):
  rng = np.random.default_rng(size * 100 + k * 10 + stride)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 3, 5)), jnp.float32)
  args = ((stride, stride), (padding, padding), (out_pad, out_pad))
  out = layers.lax_conv_transpose(x, w, *args)
  g = jnp.asarray(rng.normal(size=out.shape), jnp.float32)
  ref = _value_and_grads(lambda x, w: layers.lax_conv_transpose(x, w, *args), x, w, g)
  ours = _value_and_grads(lambda x, w: kernels.onednn_conv_transpose(x, w, *args), x, w, g)
  _assert_same(ours, ref, 1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_onednn_conv_transpose_with_a_gemm_input_gradient(dtype):
  """DCGAN-64's 512->256, 4->8 px transposed conv: its input-gradient is the 256->512 conv
  that runs as im2col + GEMM, on its kernel reordered from (kh, kw, out, in)."""
  _skip_without_onednn(dtype)
  rng = np.random.default_rng(2)
  x, w = (jnp.asarray(rng.normal(size=s), dtype) for s in ((2, 4, 4, 512), (4, 4, 512, 256)))
  args = ((2, 2), (1, 1), (0, 0))
  g = jnp.asarray(rng.normal(size=(2, 8, 8, 256)), dtype)
  ref = _value_and_grads(lambda x, w: layers.lax_conv_transpose(x, w, *args), *(
      a.astype(jnp.float32) for a in (x, w, g)))
  ours = _value_and_grads(lambda x, w: kernels.onednn_conv_transpose(x, w, *args), x, w, g)
  _assert_same(ours, ref, 1e-5 if dtype == "float32" else 1e-2)


def test_onednn_conv_transpose_bfloat16():
  _skip_without_onednn("bfloat16")
  rng = np.random.default_rng(0)
  x, w = (jnp.asarray(rng.normal(size=s), jnp.bfloat16) for s in ((2, 8, 8, 16), (4, 4, 16, 8)))
  ref = layers.lax_conv_transpose(x.astype(jnp.float32), w.astype(jnp.float32), 2, 1)
  ours = kernels.onednn_conv_transpose(x, w, (2, 2), (1, 1), (0, 0))
  assert ours.dtype == jnp.bfloat16
  _assert_same(ours, ref, 1e-2)


@pytest.mark.parametrize("transposed", [False, True])
def test_second_order_gradients_match_lax(transposed):
  """A gradient penalty differentiates the input-gradient again (WGAN-GP, R1)."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, 8, 8, 4)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(4, 4, 4, 6)), jnp.float32)
  if transposed:
    ours = lambda x, k: kernels.onednn_conv_transpose(x, k, (2, 2), (1, 1), (0, 0))
    ref = lambda x, k: layers.lax_conv_transpose(x, k, 2, 1)
  else:
    ours = lambda x, k: kernels.onednn_conv(x, k, (2, 2), ((1, 1), (1, 1)))
    ref = lambda x, k: _lax_conv(x, k, (2, 2), ((1, 1), (1, 1)))

  def penalty(fn):
    def input_grad_norm(x, k):
      dx = jax.grad(lambda x: jnp.sum(jnp.tanh(fn(x, k))))(x)
      return jnp.sum(dx ** 2)
    return jax.jit(jax.value_and_grad(input_grad_norm, (0, 1)))

  _assert_same(penalty(ours)(x, k), penalty(ref)(x, k), 1e-5)


def test_layers_conv_is_nnx_conv_with_the_same_parameters_and_key_draws():
  for bias in (True, False):
    ours_rngs, theirs_rngs = nnx.Rngs(3), nnx.Rngs(3)
    ours = layers.Conv(3, 5, 4, 2, 1, use_bias=bias, rngs=ours_rngs)
    theirs = nnx.Conv(3, 5, (4, 4), (2, 2), padding=((1, 1), (1, 1)), use_bias=bias,
                      kernel_init=layers.dcgan_normal, rngs=theirs_rngs)
    if bias:
      theirs.bias[...] = ours.bias[...] = jnp.linspace(-1, 1, 5)
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(theirs))
    np.testing.assert_array_equal(ours.kernel[...], theirs.kernel[...])
    # the keys drawn next are the same, so every later layer initialises as before
    np.testing.assert_array_equal(jax.random.key_data(ours_rngs.params()),
                                  jax.random.key_data(theirs_rngs.params()))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 3)), jnp.float32)
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6, atol=1e-6)


ONEDNN = kernels.ConvBackend("onednn")


def _dcgan_loss_and_grads(backend):
  """A DCGAN pair built on ``backend``: the jitted loss, its value and gradients, and its HLO."""
  nets = dcgan.build((32, 32, 1), rngs=nnx.Rngs(0), ngf=8, ndf=8, latent_dim=16)
  nets = {role: layers.on_conv_backend(net, backend) for role, net in nets.items()}
  (gdef, gstate), (ddef, dstate) = nnx.split(nets["generator"]), nnx.split(nets["discriminator"])
  z = jax.random.normal(jax.random.PRNGKey(1), (4, 16))
  real = jax.random.normal(jax.random.PRNGKey(2), (4, 32, 32, 1))

  def loss(gs, ds):
    d = nnx.merge(ddef, ds)
    fake = nnx.merge(gdef, gs)(z)
    return jnp.sum(d(fake)["logit"] ** 2) + jnp.sum(d(real)["logit"]), fake
  fn = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))
  return fn(gstate, dstate), fn.lower(gstate, dstate).as_text()


def test_dcgan_networks_give_the_same_outputs_and_gradients_on_both_backends():
  ref, _ = _dcgan_loss_and_grads(kernels.XLA)
  ours, _ = _dcgan_loss_and_grads(ONEDNN)
  _assert_same(ours, ref, 1e-5)


def test_networks_on_different_backends_trace_in_one_process_each_on_its_own():
  """The backend is a field of the networks, not a process setting: two DCGAN pairs built on
  oneDNN's and XLA's kernels, traced alternately in one process, each trace all its
  convolutions on its own network's kernels (custom calls, or XLA convolutions only)."""
  for _ in range(2):
    _, onednn_hlo = _dcgan_loss_and_grads(ONEDNN)
    _, xla_hlo = _dcgan_loss_and_grads(kernels.XLA)
    assert "genjax_onednn_conv_fwd" in onednn_hlo and "genjax_onednn_conv_bwd_weights" in onednn_hlo
    assert "stablehlo.convolution" not in onednn_hlo
    assert "stablehlo.convolution" in xla_hlo and "genjax_onednn_conv" not in xla_hlo
  # the backend is part of the network's graph definition, so a jit cache keyed by the graph
  # (genjax.parallel.BatchedApply's) cannot hand one network the other's compiled program
  conv = layers.Conv(3, 4, 3, rngs=nnx.Rngs(0))
  assert nnx.graphdef(conv) != nnx.graphdef(layers.on_conv_backend(conv, ONEDNN))
  assert nnx.graphdef(layers.on_conv_backend(conv, ONEDNN)) == nnx.graphdef(
      layers.Conv(3, 4, 3, conv_backend=ONEDNN, rngs=nnx.Rngs(1)))


def test_onednn_on_a_batch_mesh_runs_per_shard_and_matches_one_device():
  n = len(jax.devices())
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(0)
  x = jax.device_put(jnp.asarray(rng.normal(size=(2 * n, 8, 8, 4)), jnp.float32), shard)
  k = jnp.asarray(rng.normal(size=(4, 4, 4, 6)), jnp.float32)

  def on(backend):
    def fn(x, k):
      y = layers.conv2d(x, k, (2, 2), ((1, 1), (1, 1)), backend=backend)
      return layers.transposed_conv(y, k.transpose(0, 1, 3, 2), 2, 1, backend=backend)
    return fn

  g = jnp.ones((2 * n, 8, 8, 4), jnp.float32)
  ref = _value_and_grads(on(kernels.XLA), x, k, g)
  onednn = kernels.resolve("onednn", mesh=mesh)
  hlo = jax.jit(on(onednn)).lower(x, k).compile().as_text()
  ours = _value_and_grads(on(onednn), x, k, g)
  _assert_same(ours, ref, 1e-5)
  calls = [line for line in hlo.splitlines() if "custom-call(" in line]
  assert calls and all("f32[2," in line.split("=")[1] for line in calls)  # per-device shards
  assert "all-gather" not in hlo


def test_onednn_calls_from_many_threads_at_once_match_lax():
  """The kernels are entered from several threads at once (XLA's runtime threads, one per CPU
  device, Python threads): each thread's results equal lax's, and nothing deadlocks."""
  rng = np.random.default_rng(0)
  cases = [(jnp.asarray(rng.normal(size=(4,) + hwc), jnp.float32),
            jnp.asarray(rng.normal(size=kernel[:2] + (hwc[-1], kernel[-1])), jnp.float32),
            stride, padding) for hwc, kernel, stride, padding in CONVS[:4]]
  fns = [jax.jit(jax.value_and_grad(
      lambda x, k, s=s, p=p: jnp.sum(jnp.sin(layers.conv2d(x, k, s, p, backend=ONEDNN))),
      (0, 1))) for _, _, s, p in cases]
  for fn, (x, k, _, _) in zip(fns, cases):
    assert "genjax_onednn_conv_bwd_weights" in fn.lower(x, k).as_text()
    jax.block_until_ready(fn(x, k))  # traced and compiled before the threads start

  def work(i):
    return [jax.block_until_ready(fns[(i + j) % 4](*cases[(i + j) % 4][:2]))
            for j in range(8)]

  with concurrent.futures.ThreadPoolExecutor(6) as pool:
    results = list(pool.map(work, range(6), timeout=120))
  refs = [jax.value_and_grad(lambda x, k, s=s, p=p: jnp.sum(jnp.sin(_lax_conv(x, k, s, p))),
                             (0, 1))(x, k) for x, k, s, p in cases]
  for i, outs in enumerate(results):
    for j, out in enumerate(outs):
      _assert_same(out, refs[(i + j) % 4], 1e-5)


def test_backend_errors_and_fallback(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match="unknown conv backend 'cudnn'; valid: auto, xla, onednn"):
    kernels.resolve("cudnn")
  with pytest.raises(ValueError, match="unknown conv backend 'auto'; valid: xla, onednn"):
    kernels.ConvBackend("auto")  # a network's backend is resolved
  mesh = jax.make_mesh((2, 4), ("a", "b"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
  with pytest.raises(ValueError, match=r"must have one \(batch\) axis, got \('a', 'b'\)"):
    kernels.resolve("onednn", mesh=mesh)
  assert kernels.resolve("onednn") == ONEDNN
  x = jnp.zeros((1, 4, 4, 3))
  with pytest.raises(ValueError, match=r"must agree, got \(1, 4, 4, 3\) and \(3, 3, 2, 5\)"):
    kernels.onednn_conv(x, jnp.zeros((3, 3, 2, 5)), (1, 1), ((1, 1), (1, 1)))
  with pytest.raises(TypeError, match="both be float32 or bfloat16, got float32 and float16"):
    kernels.onednn_conv(x, jnp.zeros((3, 3, 3, 5), jnp.float16), (1, 1), ((1, 1), (1, 1)))
  with pytest.raises(ValueError, match="conv_transpose output would be empty"):
    kernels.onednn_conv_transpose(x, jnp.zeros((1, 1, 3, 2)), (1, 1), (2, 2), (0, 0))

  # No compiler: a one-line error naming the fix; 'auto' falls back to XLA's kernels.
  monkeypatch.setenv("GENJAX_KERNEL_DIR", str(tmp_path))
  monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
  monkeypatch.setitem(kernels._state, "library", None)  # pylint: disable=protected-access
  with pytest.raises(errors.KernelError) as e:
    kernels.build()
  assert str(e.value) == ("cannot build genjax's oneDNN kernels (compiler not found): install "
                          "g++ and oneDNN (apt-get install g++; pip install "
                          "onednn-devel-cpu-gomp==2023.2.0 or apt-get install libdnnl-dev) or "
                          "use --config.conv_backend=xla")
  assert "\n" not in str(e.value) and not list(tmp_path.glob("*.so"))
  assert kernels.resolve("auto", mesh=mesh) == kernels.XLA
  with pytest.raises(errors.KernelError, match="cannot build"):
    kernels.resolve("onednn")
  # A kernel folder that cannot be made: one line too, and 'auto' falls back (was an OSError)
  (tmp_path / "a_file").write_text("")
  monkeypatch.setenv("GENJAX_KERNEL_DIR", str(tmp_path / "a_file" / "kernels"))
  with pytest.raises(errors.KernelError, match=r"^cannot make the kernels' folder .*a_file/kernels "
                                               r"\(Not a directory\): set GENJAX_KERNEL_DIR to "):
    kernels.build()
  assert kernels.resolve("auto", mesh=mesh) == kernels.XLA


def test_build_compiles_into_the_kernel_dir_once(tmp_path, monkeypatch):
  monkeypatch.setenv("GENJAX_KERNEL_DIR", str(tmp_path))
  path = kernels.build()
  assert path.parent == tmp_path and path.exists() and path.suffix == ".so"
  mtime = path.stat().st_mtime_ns
  assert kernels.build() == path and path.stat().st_mtime_ns == mtime
  assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


_CONV_RUNS = """
import jax.numpy as jnp, numpy as np
from genjax import kernels
kernels.resolve("onednn")
y = kernels.onednn_conv(jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 3, 2)), (1, 1), ((1, 1), (1, 1)))
print(float(np.asarray(y)[0, 1, 1, 0]))
"""


def test_a_corrupt_cached_library_is_built_again(tmp_path):
  # In a process of its own (the library loads once per process): the cached file is garbage,
  # as a full disk or a killed copy leaves it; it is rebuilt, loaded and computes.
  env = {**os.environ, "GENJAX_KERNEL_DIR": str(tmp_path), "XLA_FLAGS": xla_flags()}
  path = subprocess.run([sys.executable, "-c", "from genjax import kernels; "
                         "print(kernels.library_path())"], env=env, capture_output=True,
                        text=True, check=True).stdout.strip()
  pathlib.Path(path).write_bytes(b"not a shared object")
  proc = subprocess.run([sys.executable, "-c", _CONV_RUNS], env=env, capture_output=True,
                        text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert float(proc.stdout.strip().splitlines()[-1]) == 27.0  # 3x3x3 ones inside the image
  assert "do not load: building them again" in proc.stderr
  assert pathlib.Path(path).read_bytes()[:4] == b"\x7fELF"


def test_an_unloadable_library_is_one_line_and_auto_falls_back(tmp_path, monkeypatch):
  # Still unloadable after the rebuild (e.g. libdnnl.so removed): one line naming the fix.
  monkeypatch.setenv("GENJAX_KERNEL_DIR", str(tmp_path))
  monkeypatch.setitem(kernels._state, "library", None)  # pylint: disable=protected-access

  def corrupt_build():
    kernels.library_path().write_bytes(b"not a shared object")
    return kernels.library_path()
  monkeypatch.setattr(kernels, "build", corrupt_build)
  with pytest.raises(errors.KernelError, match=r"^cannot load genjax's oneDNN kernels \(.*\): "
                     r"reinstall oneDNN \(pip install onednn-devel-cpu-gomp==2023.2.0 or "
                     r"apt-get install libdnnl-dev\) or use --config.conv_backend=xla$"):
    kernels.resolve("onednn")
  assert kernels.resolve("auto") == kernels.XLA


def _fake_onednn(root):
  header = root / "include" / "oneapi" / "dnnl" / "dnnl_version.h"
  header.parent.mkdir(parents=True)
  header.write_text(f"#define DNNL_VERSION_MAJOR 3  // {root.name}\n")
  (root / "lib").mkdir()
  (root / "lib" / "libdnnl.so").write_bytes(b"")
  return root


def test_the_onednn_install_follows_the_cpu_and_GENJAX_ONEDNN(tmp_path, monkeypatch):
  wheel, system = _fake_onednn(tmp_path / "env"), _fake_onednn(tmp_path / "usr")
  monkeypatch.setattr(kernels.sysconfig, "get_paths", lambda: {"data": str(wheel)})
  monkeypatch.setenv("CPATH", str(system / "include"))
  monkeypatch.delenv("GENJAX_ONEDNN", raising=False)
  isa = {"isa": "avx2"}
  monkeypatch.setattr(kernels.host, "cpu_isa", lambda: isa["isa"])

  def source(**env):
    for k, v in env.items():
      monkeypatch.setenv(k, v)
    install = kernels.onednn()
    return install.source, install.include, install.lib

  # No AVX-512: the wheel's oneDNN 3.2, linked with a run path to its lib dir; AVX-512: the
  # system's; GENJAX_ONEDNN overrides both.
  assert source() == ("wheel", wheel / "include", wheel / "lib")
  assert f"-Wl,-rpath,{wheel / 'lib'}" in kernels.onednn().flags()
  wheel_library = kernels.library_path()
  for cpu in ("avx512", "avx512_bf16"):
    isa["isa"] = cpu
    assert source() == ("system", system / "include", None)
  assert kernels.onednn().flags() == ["-ldnnl"]
  assert kernels.library_path() != wheel_library  # each install has a library of its own
  assert source(GENJAX_ONEDNN="wheel")[0] == "wheel"
  isa["isa"] = "avx2"
  assert source(GENJAX_ONEDNN="system")[0] == "system"
  assert source(GENJAX_ONEDNN="auto")[0] == "wheel"

  # Where the preferred one is missing, the other; where a named one is missing, one line.
  (wheel / "lib" / "libdnnl.so").unlink()
  assert source()[0] == "system"
  with pytest.raises(errors.KernelError, match=r"^GENJAX_ONEDNN=wheel: no oneDNN there \(pip "
                     r"install onednn-devel-cpu-gomp==2023.2.0\)$"):
    source(GENJAX_ONEDNN="wheel")
  with pytest.raises(errors.ConfigError,
                     match=r"^unknown GENJAX_ONEDNN 'whl'; valid: auto, wheel, system$"):
    source(GENJAX_ONEDNN="whl")


@pytest.mark.parametrize("source", ["wheel", "system"])
def test_each_onednn_install_builds_and_computes(source, tmp_path):
  """Both installs this machine has build the same kernels, which compute (in a process of its
  own: the library loads once per process)."""
  # pylint: disable-next=protected-access
  install = kernels._wheel() if source == "wheel" else kernels._system()
  if install is None:
    pytest.skip(f"no {source} oneDNN here")
  env = {**os.environ, "GENJAX_KERNEL_DIR": str(tmp_path), "GENJAX_ONEDNN": source,
         "XLA_FLAGS": xla_flags()}
  proc = subprocess.run([sys.executable, "-c", _CONV_RUNS + "print(kernels.info())"], env=env,
                        capture_output=True, text=True, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  value, info = proc.stdout.strip().splitlines()[-2:]
  assert float(value) == 27.0
  version = install.version_header().decode()
  major = next(line.split()[2] for line in version.splitlines()
               if line.startswith("#define DNNL_VERSION_MAJOR"))
  assert info.startswith(f"oneDNN {major}."), info


def _fake_compiler(path, version, sleep=0):
  path.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{version}'; exit 0; fi\n"
                  f"exec sleep {sleep}\n")
  path.chmod(0o755)
  return str(path)


def test_the_library_key_covers_the_compiler_and_its_flags(tmp_path, monkeypatch):
  monkeypatch.setenv("GENJAX_KERNEL_DIR", str(tmp_path))
  paths = set()
  for version in ("fake-c++ 1.0", "fake-c++ 2.0"):
    monkeypatch.setenv("CXX", _fake_compiler(tmp_path / "cxx", version))
    kernels._compiler_identity.cache_clear()  # pylint: disable=protected-access
    paths.add(kernels.library_path())
  monkeypatch.setattr(kernels, "CXX_FLAGS", (*kernels.CXX_FLAGS, "-march=native"))
  paths.add(kernels.library_path())
  assert len(paths) == 3


def test_a_compiler_that_hangs_is_one_line(tmp_path, monkeypatch):
  monkeypatch.setenv("GENJAX_KERNEL_DIR", str(tmp_path))
  monkeypatch.setenv("CXX", _fake_compiler(tmp_path / "cxx", "fake-c++ 1.0", sleep=30))
  monkeypatch.setattr(kernels, "BUILD_TIMEOUT_S", 1)
  with pytest.raises(errors.KernelError, match=r"^cannot build genjax's oneDNN kernels \(.*cxx "
                     r"did not finish within 1 s\): install g\+\+"):
    kernels.build()
  assert not list(tmp_path.glob("*.so"))


def _custom_calls(fn, *args):
  """The oneDNN custom calls of ``fn``'s compiled HLO: (target, the types of its result and
  operands) per call."""
  calls = []
  for line in jax.jit(fn).lower(*args).compile().as_text().splitlines():
    if 'custom_call_target="genjax_onednn_conv_' in line:
      target = line.split('custom_call_target="')[1].split('"')[0]
      result = line.split("=", 1)[1].split("custom-call(")[0]
      operands = line.split("operand_layout_constraints={")[1].split("}}")[0]
      calls.append((target, result + operands))
  return calls


def test_unsupported_dtype_computes_in_float32_on_onednn_and_onednn_alone_refuses_it():
  """What an AVX2-only CPU's oneDNN 2.6 answers for bfloat16, forced on every CPU: 'auto' runs
  bfloat16 convolutions as float32 oneDNN calls (inputs rounded up, results rounded back), and
  says so; 'onednn' with bfloat16 is a one-line config error at start-up."""
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(4, 8, 8, 6)), jnp.bfloat16)
  k = jnp.asarray(rng.normal(size=(3, 3, 6, 5)), jnp.bfloat16)
  g = jnp.asarray(rng.normal(size=(4, 8, 8, 5)), jnp.bfloat16)
  ref = _value_and_grads(lambda x, k: _lax_conv(x, k, (1, 1), ((1, 1), (1, 1))),
                         *(a.astype(jnp.float32) for a in (x, k, g)))
  with kernels.pretend_unsupported("bfloat16"):
    assert kernels.onednn_dtype("bfloat16") == "float32"
    assert kernels.onednn_dtype("float32") == "float32"
    with pytest.raises(errors.ConfigError) as e:
      kernels.resolve("onednn", dtype="bfloat16")
    assert str(e.value).startswith("config.conv_backend=onednn: this CPU's oneDNN ")
    assert str(e.value).endswith(
        "cannot create bfloat16 convolutions (bfloat16 reported unsupported "
        "(pretend_unsupported)); use --config.conv_backend=auto (it computes them in float32 "
        "on oneDNN), --config.conv_backend=xla or --config.dtype=float32")
    assert "\n" not in str(e.value)
    backend = kernels.resolve("auto", dtype="bfloat16")
    assert backend == ONEDNN
    assert kernels.record(backend, "bfloat16")["conv_kernels"] == "onednn-float32"
    assert kernels.record(backend, "float32")["conv_kernels"] == "onednn"
    assert "bfloat16 convolutions compute in float32" in kernels.describe(backend, "bfloat16")
    fn = lambda x, k: layers.conv2d(x, k, (1, 1), ((1, 1), (1, 1)), backend=backend)
    calls = _custom_calls(lambda x, k: _value_and_grads(fn, x, k, g), x, k)
    ours = _value_and_grads(fn, x, k, g)
  assert sorted(t for t, _ in calls) == ["genjax_onednn_conv_bwd_data",
                                         "genjax_onednn_conv_bwd_weights",
                                         "genjax_onednn_conv_fwd"]
  assert all("bf16[" not in types and types.count("f32[") == 3 for _, types in calls)
  assert ours[0].dtype == ours[1][0].dtype == ours[1][1].dtype == jnp.bfloat16
  _assert_same(ours, ref, 1e-2)
  # Without the pretence, bfloat16 runs as whatever this CPU's oneDNN has.
  assert kernels.onednn_dtype("bfloat16") in ("bfloat16", "float32")


def test_unsupported_dtype_and_float32_fall_back_to_xla():
  with kernels.pretend_unsupported("bfloat16", "float32"):
    assert kernels.onednn_dtype("bfloat16") is None
    backend = kernels.resolve("auto", dtype="bfloat16")
    assert backend == kernels.XLA
    assert kernels.record(backend, "bfloat16") == {"conv_kernels": "xla"}


def test_a_primitive_oneDNN_cannot_create_runs_on_xla(monkeypatch):
  """A geometry whose backward-weights primitive oneDNN refuses (in any dtype): that primitive
  runs as XLA's convolution, the other two stay on oneDNN, and the record counts it."""
  real_probe = kernels.probe
  monkeypatch.setattr(kernels, "probe", lambda kind, dtype, src, *rest: (
      "refused (test)" if kind == "bwd_weights" and src[1:] == (9, 7, 5) else
      real_probe(kind, dtype, src, *rest)))
  hwc, kernel, stride, padding = CONVS[3]
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.normal(size=(4, *hwc)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(*kernel[:2], hwc[2], kernel[2])), jnp.float32)
  g = jnp.asarray(rng.normal(size=_lax_conv(x, k, stride, padding).shape), jnp.float32)
  fn = lambda x, k: layers.conv2d(x, k, stride, padding, backend=ONEDNN)
  calls = _custom_calls(lambda x, k: _value_and_grads(fn, x, k, g), x, k)
  ours = _value_and_grads(fn, x, k, g)
  assert kernels.record(ONEDNN, "float32")["primitives_on_xla"] >= 1
  assert sorted(t for t, _ in calls) == ["genjax_onednn_conv_bwd_data",
                                         "genjax_onednn_conv_fwd"]
  _assert_same(ours, _value_and_grads(lambda x, k: _lax_conv(x, k, stride, padding), x, k, g),
               1e-5)


def test_oneDNN_capped_at_avx2_trains_bfloat16_in_float32(tmp_path):
  """The real AVX2-only answer on every CPU with AVX2: oneDNN capped at AVX2 (its own
  ONEDNN_MAX_CPU_ISA) refuses bfloat16 convolutions, and a bfloat16 run trains on float32
  oneDNN calls, saying so in one log line and in its checkpoints."""
  result = run_main(tmp_path, *TINY_DCGAN_FLAGS, "--config.dtype=bfloat16",
                    "--config.num_steps=2", "--config.checkpoint_every=2",
                    env_extra={"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"})
  assert result.returncode == 0, result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if "conv kernels:" in line]
  assert len(lines) == 1 and "avx2): bfloat16 convolutions compute in float32" in lines[0]
  meta = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), keep=1).read_meta(2)
  assert meta["kernels"]["conv_kernels"] == "onednn-float32"
  assert meta["kernels"]["onednn"].endswith(" avx2")

  # Resumed on oneDNN capped at AVX: the same kernels by name, another ISA, so other rounding
  # (as a move to another machine or oneDNN version): one warning names both.
  result = run_main(tmp_path, *TINY_DCGAN_FLAGS, "--config.dtype=bfloat16",
                    "--config.num_steps=4", "--config.checkpoint_every=2",
                    env_extra={"ONEDNN_MAX_CPU_ISA": "AVX", "DNNL_MAX_CPU_ISA": "AVX"})
  assert result.returncode == 0, result.stderr[-2000:]
  warnings = [line for line in result.stderr.splitlines() if "so far used conv kernels" in line]
  version = meta["kernels"]["onednn"].removesuffix(" avx2")  # "oneDNN 3.2.0"
  assert len(warnings) == 1 and (f"'onednn-float32 {version} avx2', this process uses "
                                 f"'onednn-float32 {version} avx'") in warnings[0]
