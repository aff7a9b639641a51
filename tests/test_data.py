"""Tests for genjax.data: sources, batch iteration and on-device preprocessing."""

import gzip
import os
import pathlib
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import data
from genjax import paths
from genjax.data import sources
from genjax.errors import ConfigError
from genjax.errors import DataError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _no_env_dirs(monkeypatch):
  monkeypatch.delenv("GENJAX_MNIST_DIR", raising=False)
  monkeypatch.delenv("GENJAX_FASHION_MNIST_DIR", raising=False)


def _write_idx(path: pathlib.Path, array: np.ndarray, *, compress: bool) -> None:
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  payload = header + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(payload) if compress else payload)


def _write_split(directory: pathlib.Path, split: str, n: int, fill: int, *,
                 compress: bool = True) -> None:
  directory.mkdir(parents=True, exist_ok=True)
  images_stem, labels_stem = sources.IDX_FILES[split]
  suffix = ".gz" if compress else ""
  _write_idx(directory / (images_stem + suffix), np.full((n, 28, 28), fill, np.uint8),
             compress=compress)
  _write_idx(directory / (labels_stem + suffix), np.arange(n) % 10, compress=compress)


# ---------------------------------------------------------------------------------------------
# Sources.


def test_mnist_from_idx_files():
  train = data.load("mnist", "train")
  test = data.load("mnist", "test")
  assert train["image"].shape == (60000, 28, 28, 1)
  assert test["image"].shape == (10000, 28, 28, 1)
  assert train["image"].dtype == np.uint8 and train["label"].dtype == np.int32
  assert train["label"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
  assert train["image"].max() == 255 and train["label"].max() == 9
  assert train["image"].flags.writeable


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_idx_files():
  train = data.load("fashion_mnist", "train")
  test = data.load("fashion_mnist", "test")
  assert train["image"].shape == (60000, 28, 28, 1)
  assert test["image"].shape == (10000, 28, 28, 1)
  assert np.bincount(test["label"]).tolist() == [1000] * 10


def test_local_dir_and_env_var_resolution(tmp_path, monkeypatch):
  env_dir, arg_dir = tmp_path / "env", tmp_path / "arg"
  _write_split(env_dir, "train", 7, 1)
  _write_split(env_dir, "test", 3, 2, compress=False)
  _write_split(arg_dir, "train", 5, 9)
  monkeypatch.setenv("GENJAX_MNIST_DIR", str(env_dir))
  train = data.load("mnist", "train")
  assert train["image"].shape == (7, 28, 28, 1) and (train["image"] == 1).all()
  assert train["label"].tolist() == [0, 1, 2, 3, 4, 5, 6]
  test = data.load("mnist", "test")  # Uncompressed files work too.
  assert test["image"].shape == (3, 28, 28, 1) and (test["image"] == 2).all()
  from_arg = data.load("mnist", "train", local_dir=arg_dir)  # The argument beats the env var.
  assert from_arg["image"].shape == (5, 28, 28, 1) and (from_arg["image"] == 9).all()


def test_default_dirs(monkeypatch):
  monkeypatch.delenv("GENJAX_DATA_DIR", raising=False)
  checkout_data = (REPO_ROOT.parent / "shared" / "data").resolve()
  assert sources.idx_dirs("mnist") == [checkout_data / "mnist",
                                       pathlib.Path("~/.cache/genjax/mnist").expanduser()]
  assert sources.idx_dirs("fashion_mnist")[:2] == [checkout_data / "fashion_mnist", FASHION_DIR]


def test_data_dir_overrides_the_checkout_layout_and_an_installed_package_names_it(tmp_path,
                                                                                 monkeypatch):
  """Local datasets are read from $GENJAX_DATA_DIR/<name>, whose default (../shared/data beside
  the checkout) is the repository's layout: outside a checkout there is none, and a dataset
  found nowhere is one line naming the variables to set."""
  _write_split(tmp_path / "data" / "mnist", "train", 6, 3)
  monkeypatch.setenv("GENJAX_DATA_DIR", str(tmp_path / "data"))
  train = data.load("mnist", "train")
  assert train["image"].shape == (6, 28, 28, 1) and (train["image"] == 3).all()

  monkeypatch.delenv("GENJAX_DATA_DIR")
  monkeypatch.setattr(paths, "CHECKOUT", None)  # an installed package
  monkeypatch.setenv("HOME", str(tmp_path / "home"))  # nor a copy in ~/.cache/genjax
  assert sources.idx_dirs("mnist") == [tmp_path / "home" / ".cache" / "genjax" / "mnist"]
  with pytest.raises(DataError) as info:
    data.load("mnist", "train", data_dir=tmp_path / "tfds", download=False)
  message = str(info.value)
  assert "\n" not in message and "shared" not in message
  assert ("set --config.dataset.local_dir=DIR, GENJAX_MNIST_DIR=DIR or GENJAX_DATA_DIR=ROOT "
          "(ROOT/mnist)") in message


@pytest.mark.parametrize("damage", ["magic", "truncated", "gzip", "count"])
def test_corrupt_idx_file(tmp_path, damage):
  _write_split(tmp_path, "train", 4, 0)
  images = tmp_path / "train-images-idx3-ubyte.gz"
  payload = gzip.decompress(images.read_bytes())
  if damage == "magic":
    images.write_bytes(gzip.compress(b"\x00\x00\x08\x02" + payload[4:]))
  elif damage == "truncated":
    images.write_bytes(gzip.compress(payload[:-10]))
  elif damage == "gzip":
    images.write_bytes(images.read_bytes()[:-20])
  else:
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5), compress=True)
  with pytest.raises(DataError) as info:
    data.load("mnist", "train", local_dir=tmp_path)
  message = str(info.value)
  assert "\n" not in message
  assert "idx" in message and str(tmp_path) in message


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
  empty = tmp_path / "empty"
  empty.mkdir()
  monkeypatch.setenv("GENJAX_MNIST_DIR", str(empty))
  with pytest.raises(DataError) as info:
    data.load("mnist", "train", data_dir=tmp_path / "tfds", download=False)
  message = str(info.value)
  assert "\n" not in message
  assert "GENJAX_MNIST_DIR=DIR" in message and "local_dir" in message and str(empty) in message
  with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
    data.load("fashion_mnist", "test", local_dir=empty, data_dir=tmp_path / "tfds",
              download=False)
  with pytest.raises(DataError) as info:
    data.load("cifar10", "train", data_dir=tmp_path / "tfds", download=False)
  assert "\n" not in str(info.value) and "data_dir" in str(info.value)


def test_unknown_name_and_split():
  with pytest.raises(DataError, match="valid names: .*mnist.*cifar10.*synthetic"):
    data.load("imagenet_typo", "train")
  with pytest.raises(DataError, match="valid splits"):
    data.load("synthetic", "validation")


def test_tfds_path_with_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  empty = tmp_path / "empty"
  empty.mkdir()
  with tfds.testing.mock_data(num_examples=12):
    cifar = data.load("cifar10", "train")
    mnist = data.load("mnist", "test", local_dir=empty)  # No IDX files: falls back to TFDS.
  assert cifar["image"].shape == (12, 32, 32, 3) and cifar["image"].dtype == np.uint8
  assert cifar["label"].shape == (12,) and cifar["label"].dtype == np.int32
  assert mnist["image"].shape == (12, 28, 28, 1) and mnist["label"].dtype == np.int32


def test_synthetic_is_deterministic():
  a, b = data.load("synthetic", "train"), data.load("synthetic", "train")
  test = data.load("synthetic", "test")
  rgb = data.load("synthetic_rgb", "test")
  assert a["image"].shape == (512, 28, 28, 1) and a["image"].dtype == np.uint8
  assert test["image"].shape == (128, 28, 28, 1) and rgb["image"].shape == (128, 32, 32, 3)
  np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(a["label"], b["label"])
  assert a["label"].dtype == np.int32 and set(a["label"].tolist()) == set(range(10))
  # Classes are distinguishable: class means differ clearly.
  means = np.stack([a["image"][a["label"] == k].mean(0) for k in range(10)])
  distances = np.abs(means[:, None] - means[None]).mean(axis=(2, 3, 4))
  assert distances[~np.eye(10, dtype=bool)].min() > 20


def test_import_does_not_import_tensorflow():
  code = "import sys, genjax.data; assert 'tensorflow' not in sys.modules"
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), JAX_PLATFORMS="cpu")
  subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO_ROOT)


# ---------------------------------------------------------------------------------------------
# BatchIterator and prefetch.


def _arrays(n: int = 50) -> dict:
  return {"image": np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2, 1),
          "label": np.arange(n, dtype=np.int32)}


def _take(it, k: int) -> list:
  return [next(it) for _ in range(k)]


def test_batch_iterator_determinism_and_epochs():
  arrays = _arrays()
  it = data.BatchIterator(arrays, 8, seed=3)
  assert it.steps_per_epoch == 6
  batches = _take(it, 18)
  assert it.position == 18 and it.epoch == 3
  again = _take(data.BatchIterator(arrays, 8, seed=3), 18)
  other = _take(data.BatchIterator(arrays, 8, seed=4), 18)
  for x, y in zip(batches, again):
    np.testing.assert_array_equal(x["label"], y["label"])
  assert any((x["label"] != y["label"]).any() for x, y in zip(batches, other))
  for batch in batches:
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (8, 2, 2, 1)
    np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], batch["label"] * 4)
  epochs = [np.concatenate([b["label"] for b in batches[e * 6:(e + 1) * 6]]) for e in range(3)]
  for e, labels in enumerate(epochs):  # 48 distinct examples per epoch, in the documented order.
    assert len(set(labels.tolist())) == 48
    np.testing.assert_array_equal(labels, np.random.default_rng([3, e]).permutation(50)[:48])
  assert any((epochs[0] != e).any() for e in epochs[1:])


def test_batch_iterator_full_epoch_is_permutation():
  it = data.BatchIterator(_arrays(40), 10, seed=0)
  for _ in range(2):
    labels = np.concatenate([b["label"] for b in _take(it, it.steps_per_epoch)])
    assert sorted(labels.tolist()) == list(range(40))


@pytest.mark.parametrize("k", [0, 1, 5, 6, 13])
def test_batch_iterator_resume(k):
  arrays = _arrays()
  fresh = _take(data.BatchIterator(arrays, 8, seed=1), k + 7)
  resumed = data.BatchIterator(arrays, 8, seed=1, position=k)
  for expected in fresh[k:]:
    np.testing.assert_array_equal(next(resumed)["label"], expected["label"])
  assert resumed.position == k + 7


def test_batch_iterator_process_slices():
  arrays = _arrays()
  single = _take(data.BatchIterator(arrays, 8, seed=2), 10)
  parts = [_take(data.BatchIterator(arrays, 8, seed=2, process_index=p, process_count=2), 10)
           for p in range(2)]
  for step, batch in enumerate(single):
    assert parts[0][step]["label"].shape == (4,)
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([parts[0][step][key], parts[1][step][key]]), batch[key])


def test_batch_iterator_errors():
  with pytest.raises(DataError, match="multiple of the process count"):
    data.BatchIterator(_arrays(), 9, seed=0, process_count=2)
  with pytest.raises(DataError, match="exceeds the dataset size"):
    data.BatchIterator(_arrays(10), 16, seed=0)
  with pytest.raises(DataError, match="different lengths"):
    data.BatchIterator({"a": np.zeros(4), "b": np.zeros(5)}, 2, seed=0)


def test_prefetch_same_sequence():
  arrays = _arrays()
  expected = _take(data.BatchIterator(arrays, 8, seed=5), 20)
  stream = data.prefetch(data.BatchIterator(arrays, 8, seed=5), lambda b: b["label"] * 2, size=3)
  for batch in expected:
    np.testing.assert_array_equal(next(stream), batch["label"] * 2)
  stream.close()
  assert list(data.prefetch(iter(range(5)), size=1)) == [0, 1, 2, 3, 4]


def test_prefetch_propagates_exceptions_and_stops():
  def failing():
    yield 1
    yield 2
    raise ValueError("boom")

  stream = data.prefetch(failing())
  assert next(stream) == 1 and next(stream) == 2
  with pytest.raises(ValueError, match="boom"):
    next(stream)

  def bad_put(x):
    raise RuntimeError(f"put failed on {x}")

  with pytest.raises(RuntimeError, match="put failed on 0"):
    next(data.prefetch(iter(range(3)), bad_put))

  before = threading.active_count()
  stream = data.prefetch(data.BatchIterator(_arrays(), 8, seed=0), size=2)
  next(stream)
  stream.close()
  assert threading.active_count() == before


# ---------------------------------------------------------------------------------------------
# Preprocessing.


@pytest.fixture(name="images", scope="module")
def _images() -> np.ndarray:
  return data.load("synthetic", "test")["image"][:16]


@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_to_float_range(images, value_range):
  x = jax.jit(lambda im: data.to_float(im, value_range=value_range))(images)
  assert x.dtype == jnp.float32 and x.shape == images.shape
  lo, hi = value_range
  np.testing.assert_allclose(x, images / 255.0 * (hi - lo) + lo, atol=1e-6)
  edges = data.to_float(np.array([0, 255], np.uint8).reshape(1, 1, 2, 1), value_range=value_range)
  np.testing.assert_allclose(edges.ravel(), [lo, hi])


def test_to_float_pad_and_resize(images):
  base = data.to_float(images)
  padded = data.to_float(images, image_size=32)
  assert padded.shape == (16, 32, 32, 1)
  np.testing.assert_array_equal(padded[:, 2:30, 2:30], base)
  assert (padded[:, :2] == -1).all() and (padded[:, :, 30:] == -1).all()
  np.testing.assert_array_equal(data.to_float(images, image_size=28), base)
  resized = jax.jit(lambda im: data.to_float(im, value_range=(0, 1), image_size=64,
                                             resize="resize"))(images)
  assert resized.shape == (16, 64, 64, 1)
  assert 0.0 <= float(resized.min()) and float(resized.max()) <= 1.0
  assert abs(float(resized.mean()) - float(images.mean() / 255.0)) < 0.02
  with pytest.raises(ConfigError, match="smaller"):
    data.to_float(images, image_size=16)
  with pytest.raises(ConfigError, match="resize mode"):
    data.to_float(images, image_size=32, resize="crop")


def test_binarize():
  x = jnp.linspace(0.0, 1.0, 11).reshape(1, 11, 1, 1) * jnp.ones((4000, 1, 1, 1))
  b = jax.jit(data.binarize)(x, jax.random.key(0))
  assert set(np.unique(b).tolist()) <= {0.0, 1.0} and b.dtype == x.dtype
  np.testing.assert_allclose(b.mean(axis=0).ravel(), np.linspace(0, 1, 11), atol=0.03)
  np.testing.assert_array_equal(b, data.binarize(x, jax.random.key(0)))


@pytest.mark.parametrize("kind", ["none", "gaussian", "salt_pepper", "mask", "dropout"])
@pytest.mark.parametrize("value_range", [(-1.0, 1.0), (0.0, 1.0)])
def test_corrupt_keeps_range(images, kind, value_range):
  x = data.to_float(images, value_range=value_range)
  fn = jax.jit(lambda x, rng: data.corrupt(x, rng, kind=kind, level=0.3, value_range=value_range))
  y = fn(x, jax.random.key(1))
  assert y.shape == x.shape and y.dtype == x.dtype
  lo, hi = value_range
  assert lo <= float(y.min()) and float(y.max()) <= hi
  np.testing.assert_array_equal(y, fn(x, jax.random.key(1)))
  if kind != "none":
    assert (y != x).any()


def test_corrupt_levels():
  x = jnp.zeros((64, 28, 28, 1))
  same = data.corrupt(x + 0.25, jax.random.key(0), kind="gaussian", level=0.0)
  np.testing.assert_array_equal(same, x + 0.25)
  noisy = data.corrupt(x, jax.random.key(0), kind="gaussian", level=0.1, value_range=(-1, 1))
  assert abs(float(noisy.std()) - 0.2) < 0.01  # level is in [0, 1] units: 0.1 * (1 - -1).
  sp = data.corrupt(x, jax.random.key(0), kind="salt_pepper", level=0.2)
  assert abs(float((sp != 0).mean()) - 0.2) < 0.01
  assert abs(float((sp == 1).mean()) - 0.1) < 0.01
  dropped = data.corrupt(x + 0.5, jax.random.key(0), kind="dropout", level=0.3)
  assert abs(float((dropped == -1).mean()) - 0.3) < 0.01
  masked = data.corrupt(x + 0.5, jax.random.key(0), kind="mask", level=0.25)  # 7x7 squares.
  assert ((masked == -1).sum(axis=(1, 2, 3)) == 49).all()
  assert len({tuple(np.argwhere(np.asarray(m[..., 0]) == -1)[0]) for m in masked}) > 10


def test_corrupt_invalid():
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ConfigError, match="valid kinds: none, gaussian"):
    data.corrupt(x, jax.random.key(0), kind="blur", level=0.1)
  with pytest.raises(ConfigError, match="level"):
    data.corrupt(x, jax.random.key(0), kind="salt_pepper", level=1.5)
