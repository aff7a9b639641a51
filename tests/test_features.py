"""The FID Inception against an independent PyTorch peer, and its weight files."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genjax import kernels, parallel
from genjax.errors import CheckpointError
from genjax.metrics import features
from genjax.metrics import inception

# --- PyTorch peer: the FID variant of InceptionV3, written from its description ----------------
# (torchvision's topology; average pools that ignore the padding in the A, C and first E blocks,
# a max pool in the last E block's pool branch; BatchNorm eps=0.001; 1008 logits). Names follow
# torchvision's so that the state_dict has the keys of pytorch-fid's weight file.


class Unit(nn.Module):

  def __init__(self, cin, cout, kernel, stride=1, padding=0):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return torch.relu(self.bn(self.conv(x)))


def mean3(x):
  return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class BlockA(nn.Module):

  def __init__(self, cin, pool):
    super().__init__()
    self.branch1x1 = Unit(cin, 64, 1)
    self.branch5x5_1, self.branch5x5_2 = Unit(cin, 48, 1), Unit(48, 64, 5, padding=2)
    self.branch3x3dbl_1 = Unit(cin, 64, 1)
    self.branch3x3dbl_2 = Unit(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = Unit(96, 96, 3, padding=1)
    self.branch_pool = Unit(cin, pool, 1)

  def forward(self, x):
    d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)), d,
                      self.branch_pool(mean3(x))], 1)


class BlockB(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3 = Unit(cin, 384, 3, stride=2)
    self.branch3x3dbl_1 = Unit(cin, 64, 1)
    self.branch3x3dbl_2 = Unit(64, 96, 3, padding=1)
    self.branch3x3dbl_3 = Unit(96, 96, 3, stride=2)

  def forward(self, x):
    d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return torch.cat([self.branch3x3(x), d, F.max_pool2d(x, 3, 2)], 1)


class BlockC(nn.Module):

  def __init__(self, cin, c):
    super().__init__()
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    self.branch1x1 = Unit(cin, 192, 1)
    self.branch7x7_1 = Unit(cin, c, 1)
    self.branch7x7_2 = Unit(c, c, **row)
    self.branch7x7_3 = Unit(c, 192, **col)
    self.branch7x7dbl_1 = Unit(cin, c, 1)
    self.branch7x7dbl_2 = Unit(c, c, **col)
    self.branch7x7dbl_3 = Unit(c, c, **row)
    self.branch7x7dbl_4 = Unit(c, c, **col)
    self.branch7x7dbl_5 = Unit(c, 192, **row)
    self.branch_pool = Unit(cin, 192, 1)

  def forward(self, x):
    a = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    b = x
    for i in range(1, 6):
      b = getattr(self, f"branch7x7dbl_{i}")(b)
    return torch.cat([self.branch1x1(x), a, b, self.branch_pool(mean3(x))], 1)


class BlockD(nn.Module):

  def __init__(self, cin):
    super().__init__()
    self.branch3x3_1, self.branch3x3_2 = Unit(cin, 192, 1), Unit(192, 320, 3, stride=2)
    self.branch7x7x3_1 = Unit(cin, 192, 1)
    self.branch7x7x3_2 = Unit(192, 192, (1, 7), padding=(0, 3))
    self.branch7x7x3_3 = Unit(192, 192, (7, 1), padding=(3, 0))
    self.branch7x7x3_4 = Unit(192, 192, 3, stride=2)

  def forward(self, x):
    b = x
    for i in range(1, 5):
      b = getattr(self, f"branch7x7x3_{i}")(b)
    return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, 2)], 1)


class BlockE(nn.Module):

  def __init__(self, cin, use_max):
    super().__init__()
    self.use_max = use_max
    self.branch1x1 = Unit(cin, 320, 1)
    self.branch3x3_1 = Unit(cin, 384, 1)
    self.branch3x3_2a = Unit(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3_2b = Unit(384, 384, (3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = Unit(cin, 448, 1)
    self.branch3x3dbl_2 = Unit(448, 384, 3, padding=1)
    self.branch3x3dbl_3a = Unit(384, 384, (1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = Unit(384, 384, (3, 1), padding=(1, 0))
    self.branch_pool = Unit(cin, 192, 1)

  def forward(self, x):
    a = self.branch3x3_1(x)
    b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    p = F.max_pool2d(x, 3, 1, 1) if self.use_max else mean3(x)
    return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                      self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b), self.branch_pool(p)], 1)


class TorchFIDInception(nn.Module):

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = Unit(3, 32, 3, stride=2)
    self.Conv2d_2a_3x3 = Unit(32, 32, 3)
    self.Conv2d_2b_3x3 = Unit(32, 64, 3, padding=1)
    self.Conv2d_3b_1x1 = Unit(64, 80, 1)
    self.Conv2d_4a_3x3 = Unit(80, 192, 3)
    self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
    self.Mixed_6a = BlockB(288)
    self.Mixed_6b, self.Mixed_6c = BlockC(768, 128), BlockC(768, 160)
    self.Mixed_6d, self.Mixed_6e = BlockC(768, 160), BlockC(768, 192)
    self.Mixed_7a = BlockD(768)
    self.Mixed_7b, self.Mixed_7c = BlockE(1280, False), BlockE(2048, True)
    self.fc = nn.Linear(2048, 1008)

  def forward(self, images01):
    """NCHW images in [0, 1] -> (pool3, logits), fed as pytorch-fid feeds its network."""
    x = F.interpolate(images01, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, 3, 2)
    x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
    for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
      x = getattr(self, "Mixed_" + name)(x)
    pool3 = x.mean((2, 3))
    return pool3, self.fc(pool3)


def random_peer(seed=0):
  """The peer with random weights and BatchNorm statistics, scaled to keep activations O(1)."""
  torch.manual_seed(seed)
  net = TorchFIDInception().eval()
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.Conv2d):
        m.weight.normal_(0.0, math.sqrt(2.0 / m.weight[0].numel()))
      elif isinstance(m, nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.2)
        m.running_mean.normal_(0.0, 0.2)
        m.running_var.uniform_(0.5, 2.0)
      elif isinstance(m, nn.Linear):
        m.weight.normal_(0.0, 1.0 / math.sqrt(m.in_features))
        m.bias.normal_(0.0, 0.1)
  return net


@pytest.fixture(scope="module")
def peer():
  return random_peer()


@pytest.fixture(scope="module")
def weights(peer):
  return {k: v.numpy() for k, v in peer.state_dict().items()}


@pytest.fixture(scope="module")
def extractor(weights):
  return features.InceptionFeatures(weights, batch_size=8)


def peer_outputs(peer, images):
  x = torch.from_numpy(np.repeat(images, 3 // images.shape[-1], -1).transpose(0, 3, 1, 2))
  with torch.no_grad():
    return [t.numpy() for t in peer(x)]


# 299 (no resize), upsampled grayscale and RGB, and a downsample (no antialiasing in PyTorch).
@pytest.mark.parametrize("shape", [(299, 299, 3), (28, 28, 1), (64, 48, 3), (333, 320, 3)])
def test_matches_pytorch_peer(peer, extractor, shape):
  images = np.random.default_rng(sum(shape)).random((2, *shape), np.float32)
  out = extractor(images)
  pool3, logits = peer_outputs(peer, images)
  assert out["pool3"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
  assert 0.05 < np.abs(pool3).mean() < 20  # the comparison is at the scale of O(1) activations
  diff = np.abs(out["pool3"] - pool3).max()
  print(f"{shape}: max |pool3 difference| = {diff:.2e}, mean |pool3| = {np.abs(pool3).mean():.3f}")
  assert diff <= 1e-4
  np.testing.assert_allclose(out["logits"], logits, atol=1e-3, rtol=1e-4)


def test_onednn_kernels_match_pytorch_peer_per_device_shard(peer, weights):
  """The network's convolutions on genjax's oneDNN kernels (what training-time evaluation and
  `genjax.cli.evaluate` use on CPU), each custom call on its device's shard of the batch."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), (parallel.MESH_AXIS,))
  onednn = features.InceptionFeatures(weights, batch_size=8,
                                      conv_backend=kernels.resolve("onednn", mesh=mesh))
  images = np.random.default_rng(5).random((3, 299, 299, 3), np.float32)
  out = onednn(images)
  x = jax.device_put(jnp.zeros((8, 299, 299, 3)), onednn._apply.sharded)  # pylint: disable=protected-access
  hlo = onednn._apply.fn.lower(onednn._apply.tree, x).compile().as_text()  # pylint: disable=protected-access
  assert "genjax_onednn_conv_fwd" in hlo and "all-gather" not in hlo
  pool3, logits = peer_outputs(peer, images)
  assert np.abs(out["pool3"] - pool3).max() <= 1e-4
  np.testing.assert_allclose(out["logits"], logits, atol=1e-3, rtol=1e-4)


def test_batches_are_split_over_devices_and_padded(extractor):
  """7 images over 8 devices in chunks of 8 (one padded) and one at a time give the same."""
  assert extractor._apply.num_devices == jax.device_count() == 8  # pylint: disable=protected-access
  images = np.random.default_rng(1).integers(0, 256, (7, 32, 32, 1), dtype=np.uint8)
  together = extractor(images)["pool3"]
  alone = np.concatenate([extractor(images[i:i + 1])["pool3"] for i in range(2)])
  assert together.shape == (7, 2048)
  np.testing.assert_allclose(together[:2], alone, atol=1e-5)


def test_bilinear_matches_interpolate():
  x = np.random.default_rng(0).random((1, 3, 13, 40), np.float32)
  for size in [(299, 299), (7, 9), (13, 40)]:
    want = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear",
                         align_corners=False).numpy()
    got = inception.resize_bilinear(x.transpose(0, 2, 3, 1), size)
    np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), want, atol=1e-6)


# --- weight files --------------------------------------------------------------------------------

def _small_images():
  return np.random.default_rng(2).random((2, 32, 32, 3), np.float32)


@pytest.mark.parametrize("zip_format", [True, False])
def test_pth_round_trip_without_torch_load(tmp_path, peer, weights, extractor, monkeypatch,
                                           zip_format):
  path = tmp_path / "inception.pth"
  torch.save(peer.state_dict(), path, _use_new_zipfile_serialization=zip_format)
  monkeypatch.setattr(torch, "load", None)  # the reader must not need torch
  loaded = inception.read_torch_state_dict(path)
  assert sorted(loaded) == sorted(weights)
  for k, v in weights.items():
    assert loaded[k].dtype == v.dtype and np.array_equal(loaded[k], v), k
  model = inception.load_inception(path)
  want = extractor(_small_images())["pool3"]
  got = features.InceptionFeatures(model, batch_size=8)(_small_images())["pool3"]
  np.testing.assert_array_equal(got, want)


def test_pth_strided_tensors_and_shared_storage(tmp_path):
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  sd = {"t": base.t(), "view": base[1:3, ::2], "same": base, "i": torch.tensor([3, 1]),
        "half": torch.ones(3, dtype=torch.float16)}
  for zip_format in (True, False):
    torch.save(sd, tmp_path / "x.pth", _use_new_zipfile_serialization=zip_format)
    loaded = inception.read_torch_state_dict(tmp_path / "x.pth")
    for k, v in sd.items():
      assert np.array_equal(loaded[k], v.numpy()) and loaded[k].dtype == v.numpy().dtype, k


def test_npz_round_trip(tmp_path, peer, extractor):
  pth, npz = tmp_path / "inception.pth", tmp_path / "converted" / "inception.npz"
  torch.save(peer.state_dict(), pth)
  inception.convert_inception(pth, npz)
  with np.load(npz) as f:
    assert not any(k.endswith("num_batches_tracked") for k in f.files)
  got = features.InceptionFeatures(str(npz), batch_size=8)(_small_images())["pool3"]
  np.testing.assert_array_equal(got, extractor(_small_images())["pool3"])
  round_trip = inception.inception_state_dict(inception.load_inception(npz))
  with np.load(npz) as f:
    assert all(np.array_equal(round_trip[k], f[k]) for k in f.files)


def _one_line_error(fn, match):
  with pytest.raises(CheckpointError, match=match) as info:
    fn()
  assert "\n" not in str(info.value)
  return str(info.value)


def test_bad_files_give_one_line_errors(tmp_path, weights):
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"\x00not a checkpoint" * 100)
  _one_line_error(lambda: inception.load_inception(garbage), "cannot read .*garbage.pth")
  _one_line_error(lambda: inception.load_inception(tmp_path / "absent.pth"), "no such file")
  bad_npz = tmp_path / "bad.npz"
  bad_npz.write_bytes(b"PK\x03\x04 truncated")
  _one_line_error(lambda: inception.load_inception(bad_npz), "cannot read .*bad.npz")

  # A pickle that is not a state_dict is refused without executing anything.
  class Evil:
    def __reduce__(self):
      return (print, ("executed",))
  evil = tmp_path / "evil.pth"
  torch.save({"x": torch.ones(1), "y": Evil()}, evil)
  _one_line_error(lambda: inception.load_inception(evil), r"holds (__builtin__|builtins)\.print")

  missing = dict(weights)
  del missing["Mixed_6c.branch7x7dbl_3.bn.running_var"]
  np.savez(tmp_path / "missing.npz", **missing)
  _one_line_error(lambda: inception.load_inception(tmp_path / "missing.npz"),
                  "missing key 'Mixed_6c.branch7x7dbl_3.bn.running_var'")
  wrong = dict(weights, **{"fc.weight": np.zeros((1000, 2048), np.float32)})
  np.savez(tmp_path / "wrong.npz", **wrong)
  _one_line_error(lambda: inception.load_inception(tmp_path / "wrong.npz"),
                  r"fc.weight has shape \(1000, 2048\), expected \(1008, 2048\)")
  extra = dict(weights, **{"AuxLogits.fc.weight": np.zeros((1008, 768), np.float32)})
  torch.save({k: torch.from_numpy(v) for k, v in extra.items()}, tmp_path / "extra.pth")
  _one_line_error(lambda: inception.load_inception(tmp_path / "extra.pth"),
                  "unexpected key 'AuxLogits.fc.weight'")
