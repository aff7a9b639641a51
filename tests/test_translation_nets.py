"""The pix2pix/CycleGAN networks against PyTorch peers of the reference architectures, and the
reference's weight files read and written without PyTorch."""

import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn

from benchmarks import torch_peers
from benchmarks.torch_peers import TorchPatchGAN, TorchResnet
from genjax import kernels, torch_weights
from genjax.errors import CheckpointError, ConfigError
from genjax.models import layers
from genjax.models import translation_nets as tn

# The PyTorch peers (benchmarks.torch_peers): junyanz/pytorch-CycleGAN-and-pix2pix's networks.py,
# written from its description with the same module trees, so that their state_dicts have the
# reference's keys. The benchmark's Pix2Pix/CycleGAN peers run the same ones.
_torch_G, _torch_D = torch_peers.define_G, torch_peers.define_D


# (kind, name, channels, options, the reference's parameter count where it is known)
ARCHITECTURES = [
    ("G", "unet_256", (3, 3), dict(norm="batch"), 54_413_955),
    ("D", "basic", (6,), dict(norm="batch"), 2_768_705),
    ("G", "resnet_9blocks", (3, 3), dict(norm="instance"), 11_378_179),
    ("G", "resnet_6blocks", (3, 3), dict(norm="instance"), 7_837_699),
    ("D", "basic", (3,), dict(norm="instance"), 2_764_737),
    ("G", "unet_128", (3, 3), dict(norm="batch", use_dropout=True), None),
    ("G", "unet_64", (1, 2), dict(norm="none", ngf=8), None),
    ("G", "unet_32", (3, 1), dict(norm="instance", ngf=16), None),
    ("G", "resnet_2blocks", (1, 3), dict(norm="batch", ngf=16, use_dropout=True), None),
    ("D", "n_layers", (3,), dict(norm="batch", n_layers_D=4), None),
    ("D", "n_layers", (4,), dict(norm="none", n_layers_D=1, ndf=16), None),
    ("D", "pixel", (6,), dict(norm="batch"), None),
    ("D", "pixel", (3,), dict(norm="instance"), None),
]


def _genjax_net(kind, name, channels, options, rngs=None, **extra):
  define = tn.define_G if kind == "G" else tn.define_D
  return define(name, *channels, **options, **extra, rngs=rngs or nnx.Rngs(0))


def _torch_net(kind, name, channels, options):
  return (_torch_G if kind == "G" else _torch_D)(name, *channels, **options)


def _inference(net):
  """Evaluation mode: BatchNorm normalises with its running statistics."""
  stateful = any(hasattr(m, "use_running_average") for _, m in nnx.iter_graph(net))
  return nnx.view(net, use_running_average=True) if stateful else net


@pytest.mark.parametrize("kind,name,channels,options,count", ARCHITECTURES)
def test_parameter_counts_and_state_dict_keys_equal_the_reference(kind, name, channels, options,
                                                                  count):
  ours = nnx.eval_shape(lambda: _genjax_net(kind, name, channels, options))
  peer = _torch_net(kind, name, channels, options)
  want = sum(p.numel() for p in peer.parameters())
  assert layers.count_params(ours) == want
  if count is not None:
    assert want == count
  shapes = torch_weights.state_dict_shapes(ours)
  assert shapes == {k: tuple(v.shape) for k, v in peer.state_dict().items()}
  assert len(shapes) == len(jax.tree.leaves(nnx.state(ours)))  # every variable has its key


# --- weights from the reference --------------------------------------------------------------


def _randomize(peer, seed):
  """Weights of a trained-looking network: PyTorch's default conv init (activations of order 1),
  BatchNorm affine and running statistics away from their initial values."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in peer.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
        m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
        m.num_batches_tracked.fill_(7)
      elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
  return peer


def _loaded(kind, name, channels, options, *, seed=0, **extra):
  """A randomised peer, and the genjax network holding its weights (loaded into an abstract
  network: no initialisation)."""
  peer = _randomize(_torch_net(kind, name, channels, options), seed)
  abstract = nnx.eval_shape(lambda: _genjax_net(kind, name, channels, options, **extra))
  return torch_weights.from_torch(abstract, peer.state_dict()), peer


def _run_torch(peer, x, train):
  peer.train(train)
  for m in peer.modules():  # dropout off on both sides (genjax: rng=None)
    if isinstance(m, nn.Dropout):
      m.eval()
  with torch.no_grad():
    y = peer(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
  return y.numpy().transpose(0, 2, 3, 1)


def _nhwc(y):
  y = np.asarray(y)
  return y[..., None] if y.ndim == 3 else y  # discriminators: (B, h, w) logit maps


def _assert_state_dicts_close(ours, theirs):
  assert list(ours) == list(theirs)
  for k, v in theirs.items():
    v = v.numpy()
    assert ours[k].dtype == v.dtype, k
    np.testing.assert_allclose(ours[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


# (kind, name, channels, options, input shape): the pix2pix pair (unet_256 / basic, BatchNorm),
# the CycleGAN pair (resnet_9blocks / basic, InstanceNorm), the PixelGAN.
TRANSFERS = [
    ("G", "unet_256", (3, 3), dict(norm="batch", use_dropout=True), (1, 256, 256, 3)),
    ("D", "basic", (6,), dict(norm="batch"), (2, 64, 64, 6)),
    ("G", "resnet_9blocks", (3, 3), dict(norm="instance", use_dropout=True), (2, 32, 32, 3)),
    ("D", "basic", (3,), dict(norm="instance"), (2, 64, 64, 3)),
    ("D", "pixel", (6,), dict(norm="batch"), (2, 16, 16, 6)),
]


@pytest.mark.parametrize("kind,name,channels,options,shape", TRANSFERS)
def test_reference_weights_give_the_reference_outputs_and_export_back(tmp_path, kind, name,
                                                                      channels, options, shape):
  """Random weights saved by torch.save load into genjax (from_torch) and give the peer's
  outputs in evaluation mode (running statistics) and training mode (batch statistics, which
  also update the running ones as PyTorch does); exported back (to_torch, write_state_dict), they
  load into a fresh peer by torch.load and give the same outputs again."""
  peer = _randomize(_torch_net(kind, name, channels, options), seed=len(TRANSFERS))
  torch.save(peer.state_dict(), tmp_path / "latest_net.pth")
  net = torch_weights.from_torch(nnx.eval_shape(lambda: _genjax_net(kind, name, channels, options)),
                                 tmp_path / "latest_net.pth")
  assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(nnx.state(net)))
  x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
  forward = nnx.jit(lambda net, x: net(x))

  evaluated = _nhwc(forward(_inference(net), x))
  np.testing.assert_allclose(evaluated, _run_torch(peer, x, train=False), rtol=0, atol=1e-4)
  trained = _nhwc(forward(net, x))
  np.testing.assert_allclose(trained, _run_torch(peer, x, train=True), rtol=0, atol=1e-4)
  _assert_state_dicts_close(torch_weights.to_torch(net), peer.state_dict())

  torch_weights.write_state_dict(tmp_path / "exported.pth", torch_weights.to_torch(net))
  fresh = _torch_net(kind, name, channels, options)
  fresh.load_state_dict(torch.load(tmp_path / "exported.pth"))
  _assert_state_dicts_close(torch_weights.to_torch(net), fresh.state_dict())
  np.testing.assert_allclose(_run_torch(fresh, x, train=False),
                             _nhwc(forward(_inference(net), x)), rtol=0, atol=1e-4)


def _small_resnet():
  return nnx.eval_shape(lambda: tn.define_G("resnet_9blocks", 3, 3, ngf=8, norm="instance",
                                            rngs=nnx.Rngs(0)))


def _one_line_error(fn, message):
  with pytest.raises(CheckpointError) as info:
    fn()
  assert str(info.value) == message and "\n" not in str(info.value)


def test_a_file_that_does_not_fit_is_a_one_line_error_and_changes_nothing(tmp_path):
  path = tmp_path / "latest_net_G.pth"
  torch.save(TorchResnet(4, 3, 9, ngf=8, norm="instance").state_dict(), path)
  good = TorchResnet(3, 3, 9, ngf=8, norm="instance").state_dict()
  net = torch_weights.from_torch(_small_resnet(), good)
  before = torch_weights.to_torch(net)
  _one_line_error(lambda: torch_weights.from_torch(net, path),
                  "latest_net_G.pth does not fit resnet_9blocks: model.1.weight is (8, 4, 7, 7) "
                  "there but (8, 3, 7, 7) here")

  missing = {k: v for k, v in good.items() if k != "model.10.conv_block.5.bias"}
  _one_line_error(lambda: torch_weights.from_torch(net, missing, source="G_A.pth"),
                  "G_A.pth does not fit resnet_9blocks: model.10.conv_block.5.bias is missing "
                  "there but (32,) here")
  extra = {**good, "model.27.weight": torch.zeros(3, 3)}
  _one_line_error(lambda: torch_weights.from_torch(net, extra),
                  "the state_dict does not fit resnet_9blocks: model.27.weight is (3, 3) there "
                  "but missing here")
  six = tmp_path / "six.pth"
  torch.save(TorchResnet(3, 3, 6, ngf=8, norm="instance").state_dict(), six)
  with pytest.raises(CheckpointError, match="^six.pth does not fit resnet_9blocks: model.16"):
    torch_weights.from_torch(net, six)
  after = torch_weights.to_torch(net)
  assert all(np.array_equal(before[k], after[k]) for k in before)


def test_data_parallel_prefix_and_old_norm_statistics_load_as_the_reference_loads_them():
  """``module.``-prefixed keys (DataParallel), InstanceNorm running statistics (old PyTorch kept
  them; the reference drops them) and BatchNorm without num_batches_tracked (PyTorch < 0.4.1)."""
  peer = _randomize(TorchResnet(3, 3, 9, ngf=8, norm="instance"), seed=1)
  state = {f"module.{k}": v for k, v in peer.state_dict().items()}
  state["module.model.2.running_mean"] = torch.zeros(8)
  state["module.model.2.running_var"] = torch.ones(8)
  net = torch_weights.from_torch(_small_resnet(), state)
  _assert_state_dicts_close(torch_weights.to_torch(net), peer.state_dict())

  d = _randomize(TorchPatchGAN(3, ndf=8), seed=2)
  old = {k: v for k, v in d.state_dict().items() if not k.endswith("num_batches_tracked")}
  ours = torch_weights.from_torch(tn.define_D("basic", 3, ndf=8, rngs=nnx.Rngs(0)), old)
  assert int(ours.norms[0].num_batches_tracked[...]) == 0
  np.testing.assert_array_equal(ours.norms[0].var[...], d.model[3].running_var.numpy())


# --- the networks themselves --------------------------------------------------------------------


@pytest.mark.parametrize("kind,name,channels,size,out_hw", [
    ("G", "unet_32", (3, 2), 32, 32), ("G", "unet_64", (3, 2), 64, 64),
    ("G", "unet_128", (3, 2), 128, 128), ("G", "unet_256", (3, 2), 256, 256),
    ("G", "resnet_6blocks", (1, 3), 28, 28), ("G", "resnet_9blocks", (3, 3), 64, 64),
    ("D", "basic", (6,), 256, 30), ("D", "basic", (3,), 32, 2), ("D", "n_layers", (3,), 64, 2),
    ("D", "pixel", (3,), 28, 28)])
def test_output_shapes(kind, name, channels, size, out_hw):
  x = jnp.zeros((2, size, size, channels[0]))
  out = nnx.eval_shape(lambda: _genjax_net(kind, name, channels, dict(ngf=8) if kind == "G" else
                                           dict(ndf=8, n_layers_D=4))(x))
  assert out.shape == ((2, out_hw, out_hw, channels[1]) if kind == "G" else (2, out_hw, out_hw))
  assert out.dtype == jnp.float32


def test_specs_names_and_bad_names():
  g = nnx.eval_shape(lambda: tn.define_G("unet_256", 3, 3, use_dropout=True, rngs=nnx.Rngs(0)))
  assert g.spec.takes == ("rng",) and g.name == "unet_256"
  g = nnx.eval_shape(lambda: tn.define_G("resnet_6blocks", 3, 3, rngs=nnx.Rngs(0)))
  assert g.spec.takes == () and g.name == "resnet_6blocks"
  d = nnx.eval_shape(lambda: tn.define_D("pixel", 3, rngs=nnx.Rngs(0)))
  assert d.spec.takes == () and d.spec.returns == ()
  with pytest.raises(ConfigError, match="unknown generator 'unet_512'; valid: unet_32, unet_64"):
    tn.define_G("unet_512", 3, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ConfigError, match=r"unknown generator 'resnet_0blocks'; .*resnet_<n>blocks"):
    tn.define_G("resnet_0blocks", 3, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ConfigError, match=r"unknown generator 'resnet_<n>blocks'; valid: unet_32"):
    tn.define_G("resnet_<n>blocks", 3, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ConfigError, match="unknown norm 'group'; valid: batch, instance, none"):
    tn.define_D("basic", 3, norm="group", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="unet_64 needs H and W divisible by 64"):
    nnx.eval_shape(lambda: tn.define_G("unet_64", 3, 3, rngs=nnx.Rngs(0))(jnp.zeros((1, 32, 32,
                                                                                        3))))


def test_bfloat16_forward_keeps_float32_params_and_statistics():
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  net, peer = _loaded("G", "unet_32", (3, 3), dict(ngf=8), dtype=jnp.bfloat16)
  forward = nnx.jit(lambda n, x: n(x))
  y = forward(net, x)
  assert y.dtype == jnp.bfloat16
  assert {v.dtype for v in jax.tree.leaves(nnx.state(net, nnx.Param))} == {np.dtype("float32")}
  assert {v.dtype for v in jax.tree.leaves(nnx.state(net, nnx.BatchStat))} == {
      np.dtype("float32"), np.dtype("int32")}
  np.testing.assert_allclose(np.asarray(y, np.float32), _run_torch(peer, np.asarray(x), True),
                             rtol=0, atol=0.05)
  d, _ = _loaded("D", "basic", (3,), dict(ndf=8, norm="instance"), dtype=jnp.bfloat16)
  assert forward(d, x).dtype == jnp.bfloat16


@pytest.mark.parametrize("name,size", [("unet_64", 64), ("resnet_6blocks", 16)])
def test_dropout_follows_the_rng(name, size):
  net, _ = _loaded("G", name, (3, 3), dict(ngf=8, use_dropout=True))
  x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (2, size, size, 3)), jnp.float32)
  run = nnx.jit(lambda net, x, rng: net(x, rng=rng))
  key, other = jax.random.key(1), jax.random.key(2)
  a, b, c = run(net, x, key), run(net, x, key), run(net, x, other)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c, atol=1e-3)
  plain = nnx.jit(lambda net, x: net(x))
  d = plain(net, x)
  np.testing.assert_array_equal(d, plain(net, x))
  assert not np.allclose(a, d, atol=1e-3)


def test_dropout_under_pmap_drops_what_single_device_drops():
  n = jax.local_device_count()
  x = jnp.asarray(np.random.default_rng(3).normal(size=(n * 2, 3, 3, 4)), jnp.float32)
  key = jax.random.key(4)
  whole = layers.dropout(x, 0.5, key)
  shards = jax.pmap(lambda x: layers.dropout(x, 0.5, key, "d"), axis_name="d")(
      x.reshape(n, 2, 3, 3, 4))
  np.testing.assert_array_equal(shards.reshape(x.shape), whole)
  assert set(np.unique(np.asarray(whole / x).round(5))) == {0.0, 2.0}


def test_conv_backends_agree():
  if kernels.onednn_dtype("float32") != "float32":
    pytest.skip(f"no oneDNN float32 convolution here ({kernels.info()})")
  net, _ = _loaded("G", "unet_32", (3, 3), dict(ngf=8))
  x = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
  outputs = {}
  for backend in (kernels.XLA, kernels.ConvBackend("onednn")):
    outputs[backend.name] = nnx.jit(lambda net, x: net(x))(
        _inference(layers.on_conv_backend(net, backend)), x)
  np.testing.assert_allclose(outputs["onednn"], outputs["xla"], rtol=0, atol=1e-4)


# --- shared blocks --------------------------------------------------------------------------------


def test_torch_batch_norm_running_statistics_equal_pytorch():
  """Unbiased running variance, momentum 0.1, a batch counter; the global batch under pmap."""
  n = jax.local_device_count()
  x = np.random.default_rng(6).normal(1.0, 2.0, (n, 2, 3, 3, 4)).astype(np.float32)
  peer = nn.BatchNorm2d(4)
  for _ in range(2):
    want = peer(torch.from_numpy(x.reshape(-1, 3, 3, 4).transpose(0, 3, 1, 2).copy()))
  ours = layers.TorchBatchNorm(4, scale_init=nnx.initializers.ones, rngs=nnx.Rngs(0))
  for _ in range(2):
    got = ours(jnp.asarray(x.reshape(-1, 3, 3, 4)))
  np.testing.assert_allclose(got, want.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5)
  np.testing.assert_allclose(ours.mean[...], peer.running_mean.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ours.var[...], peer.running_var.numpy(), rtol=1e-5)
  assert int(ours.num_batches_tracked[...]) == 2

  synced = layers.TorchBatchNorm(4, axis_name="d", scale_init=nnx.initializers.ones,
                                 rngs=nnx.Rngs(0))
  graph, state = nnx.split(synced)

  def step(x, state):
    m = nnx.merge(graph, state)
    m(x)
    return nnx.state(m, nnx.BatchStat)

  stats = jax.pmap(step, axis_name="d", in_axes=(0, None))(jnp.asarray(x), state)
  peer = nn.BatchNorm2d(4)
  peer(torch.from_numpy(x.reshape(-1, 3, 3, 4).transpose(0, 3, 1, 2).copy()))
  np.testing.assert_allclose(stats["var"][...][0], peer.running_var.numpy(), rtol=1e-5)


def test_instance_norm_and_reflection_padding_equal_pytorch():
  x = np.random.default_rng(7).normal(3.0, 2.0, (2, 5, 6, 3)).astype(np.float32)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  np.testing.assert_allclose(layers.InstanceNorm()(jnp.asarray(x)),
                             nn.InstanceNorm2d(3)(xt).numpy().transpose(0, 2, 3, 1), atol=1e-5)
  y = layers.InstanceNorm()(jnp.asarray(x, jnp.bfloat16))
  assert y.dtype == jnp.bfloat16
  np.testing.assert_array_equal(layers.reflect_pad(jnp.asarray(x), 3),
                                nn.ReflectionPad2d(3)(xt).numpy().transpose(0, 2, 3, 1))


# --- state_dict files -----------------------------------------------------------------------------


def test_written_files_load_in_torch_and_read_back_exactly(tmp_path):
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  state = {"w": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "n": np.array(5, np.int64),
           "empty": np.zeros((0, 3), np.float32), "h": np.arange(3).astype(ml_dtypes.bfloat16),
           "i": np.array([1, -2], np.int32), "b": np.array([True, False]),
           "t": np.arange(6, dtype=np.float64).reshape(2, 3).T}
  path = tmp_path / "sub" / "x.pth"
  torch_weights.write_state_dict(path, state)
  assert os.listdir(path.parent) == ["x.pth"]
  with zipfile.ZipFile(path) as zf:
    for info in zf.infolist():
      assert info.filename.startswith("archive/") and info.compress_type == zipfile.ZIP_STORED
      if "/data/" in info.filename:
        assert (info.header_offset + 30 + len(info.filename) + len(info.extra)) % 64 == 0
  for loaded in (torch.load(path), torch.load(path, mmap=True)):
    assert list(loaded) == list(state)
    for k, v in state.items():
      t = loaded[k]
      got = t.float().numpy().astype(v.dtype) if t.dtype == torch.bfloat16 else t.numpy()
      assert got.dtype == v.dtype and got.shape == v.shape and np.array_equal(got, v), k
  read = torch_weights.read_state_dict(path)
  assert all(read[k].dtype == v.dtype and np.array_equal(read[k], v) for k, v in state.items())


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / "x.pth"
  torch_weights.write_state_dict(path, {"a": np.ones(2, np.float32)})
  original = path.read_bytes()

  def broken(zf, name, data):
    raise OSError("disk full")

  monkeypatch.setattr(torch_weights, "_write_record", broken)
  with pytest.raises(OSError, match="disk full"):
    torch_weights.write_state_dict(path, {"a": np.zeros(2, np.float32)})
  assert path.read_bytes() == original and os.listdir(tmp_path) == ["x.pth"]
  with pytest.raises(ValueError, match="cannot write 'c'"):
    torch_weights.write_state_dict(path, {"c": np.array(["text"])})
