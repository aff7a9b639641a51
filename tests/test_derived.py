"""genjax.data.derived: edges2fashion and colored_mnist from local MNIST and Fashion-MNIST."""

import fractions
import hashlib
import pathlib

import numpy as np
import pytest

from genjax import data
from genjax.data import derived
from genjax.data import sources
from genjax.errors import DataError

FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir(),
                                   reason="dataset-fashion-mnist not installed")
needs_mnist = pytest.mark.skipif(
    not any(d.is_dir() for d in sources.idx_dirs("mnist")),
    reason="local MNIST IDX files missing")


def _sha(a: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def e2f():
  return derived.edges2fashion("test")


@pytest.fixture(scope="module")
def mnist():
  return {s: sources.load_images("mnist", s) for s in ("train", "test")}


@pytest.fixture(scope="module")
def cm():
  return {s: derived.colored_mnist(s) for s in ("train", "test")}


def _window(mask: np.ndarray, op) -> np.ndarray:
  """3x3 dilation (``np.logical_or``) or erosion (``np.logical_and``) of bool [n, h, w], the
  frame counting as False."""
  p = np.pad(mask, ((0, 0), (1, 1), (1, 1)), constant_values=False)
  h, w = mask.shape[1:]
  return op.reduce([p[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])


# ---------------------------------------------------------------------------------------------
# edges2fashion.


def test_edge_map_on_known_shapes():
  img = np.zeros((4, 12, 12, 1), np.uint8)
  img[1, 3:9, 2:10] = 200                       # A filled rectangle.
  img[2, 3:9, 2:6], img[2, 3:9, 6:10] = 100, 200  # Two halves with a step of 100 levels.
  img[3, 3:9, 2:6], img[3, 3:9, 6:10] = 100, 120  # A step of 20 levels, below EDGE_LEVEL.
  out = derived.edge_map(img)
  assert out.shape == img.shape and out.dtype == np.uint8
  assert set(np.unique(out)) <= {0, 255}
  edges = out[..., 0] == 0
  outline = np.zeros((12, 12), bool)
  outline[3:9, 2:10] = True
  outline[4:8, 3:9] = False
  assert not edges[0].any()                     # Blank: no edges.
  np.testing.assert_array_equal(edges[1], outline)  # Exactly the one-pixel outline.
  seam = edges[2] & ~outline
  # The step shows as a single thin vertical line inside the outline.
  assert seam.sum() == 4 and seam[4:8].any(axis=0).sum() == 1
  np.testing.assert_array_equal(edges[3], outline)  # A weak step is no edge.


@needs_fashion
def test_edges2fashion_pairs_edges_with_garments(e2f):
  src = sources.load_images("fashion_mnist", "test")
  assert set(e2f) == {"A", "B", "label"}
  assert e2f["A"].shape == e2f["B"].shape == (10000, 28, 28, 1)
  assert e2f["A"].dtype == e2f["B"].dtype == np.uint8 and e2f["label"].dtype == np.int32
  np.testing.assert_array_equal(e2f["B"], src["image"])
  np.testing.assert_array_equal(e2f["label"], src["label"])
  assert set(np.unique(e2f["A"])) == {0, 255}   # Black edges on white.
  np.testing.assert_array_equal(e2f["A"][:5], derived.edge_map(src["image"][:5]))


@needs_fashion
def test_edges2fashion_is_deterministic(e2f):
  again = derived.edges2fashion("test")
  for k in e2f:
    np.testing.assert_array_equal(again[k], e2f[k])
  assert _sha(e2f["A"][:16]) == (
      "271d73314b0338ae1d31f081b4aa2372c4830dc406e54bfb830a07c584ad1d5c")
  assert _sha(e2f["A"]) == "cc2540192c0d7d7c9d3dbb5c9064e62c46b82dd4a620e024be1530c7b250d56b"


@needs_fashion
def test_edges_follow_outline_and_gradients(e2f):
  gray = e2f["B"][..., 0]
  edges = e2f["A"][..., 0] == 0
  silhouette = gray > derived.SILHOUETTE_LEVEL
  # The silhouette's border (8-neighbourhood), computed independently with a 3x3 erosion.
  border = silhouette & ~_window(silhouette, np.logical_and)
  near_border = _window(border, np.logical_or)
  # 1. No edge on the background.
  assert not (edges & ~silhouette).any()
  # 2. The outline is complete: every border pixel has an edge pixel within 1 px.
  assert not (border & ~_window(edges, np.logical_or)).any()
  # 3. Edges away from the outline sit on strong intensity changes (central differences here,
  #    not the detector's Sobel): their median gradient is several times that of the other
  #    interior pixels (measured: 43 against 8), and 90% exceed half the detector's level (97%).
  gy, gx = np.gradient(gray.astype(np.float32), axis=(1, 2))
  grad = np.hypot(gx, gy)
  inner_edges = edges & ~near_border
  inner_other = silhouette & ~edges & ~near_border
  assert np.median(grad[inner_edges]) > 3 * np.median(grad[inner_other])
  assert np.mean(grad[inner_edges] >= derived.EDGE_LEVEL / 2) > 0.9
  # 4. Most edge pixels lie on or next to the outline (measured: 83%); seams show inside most
  #    garments (86%); edges are sparse lines, not filled regions (35% of the silhouette).
  assert 0.5 < np.mean(near_border[edges]) < 0.95
  assert np.mean(inner_edges.any(axis=(1, 2))) > 0.75
  assert 0.1 < edges.sum() / silhouette.sum() < 0.5


# ---------------------------------------------------------------------------------------------
# colored_mnist.


def test_colour_map_formula_and_exact_inverse():
  g = np.arange(256, dtype=np.uint8)[:, None]
  b = derived.to_b(g)
  assert b.shape == (256, 3) and b.dtype == np.uint8
  c0, c1 = derived.COLOR_BACKGROUND, derived.COLOR_STROKE
  expected = [[int(fractions.Fraction(c0[k]) + fractions.Fraction((c1[k] - c0[k]) * v, 255)
                   + fractions.Fraction(1, 2)) for k in range(3)] for v in range(256)]
  np.testing.assert_array_equal(b, expected)
  assert tuple(b[0]) == c0 and tuple(b[255]) == c1 and c0 != c1
  assert len(np.unique(b, axis=0)) == 256       # A bijection onto its image.
  np.testing.assert_array_equal(derived.to_a(b), g)  # Exact inverse.
  # Any colour maps to the nearest point of the segment: a change of <= 2 per channel moves the
  # projection by <= 255 * 2 * |D|_1 / |D|^2 = 2.37 levels, so g by <= 3 after rounding.
  rng = np.random.default_rng(0)
  noisy = np.clip(b.astype(int) + rng.integers(-2, 3, b.shape), 0, 255).astype(np.uint8)
  assert np.abs(derived.to_a(noisy).astype(int) - g).max() <= 3
  assert _sha(derived.PALETTE) == (
      "fad6fac877aec5bbb8f6978c7c1f59eb2b65887c0e4c6cde7cefd7490758f8ff")


def test_colour_map_shapes_and_errors():
  a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1)
  assert derived.to_b(a).shape == (2, 3, 4, 3)
  np.testing.assert_array_equal(derived.to_a(derived.to_b(a)), a)
  with pytest.raises(DataError) as e:
    derived.to_b(a[..., 0])
  assert str(e.value) == ("to_b takes uint8 images [..., 1], got uint8 [2, 3, 4]: add a trailing "
                          "channel axis of size 1")
  with pytest.raises(DataError) as e:
    derived.to_a(np.zeros((2, 3), np.float32))
  assert str(e.value) == ("to_a takes uint8 images [..., 3], got float32 [2, 3]: add a trailing "
                          "channel axis of size 3")


@needs_mnist
def test_colored_mnist_train_halves_are_disjoint(cm, mnist):
  train, src = cm["train"], mnist["train"]
  assert set(train) == {"A", "label_A", "B", "label_B"}
  assert train["A"].shape == (30000, 28, 28, 1) and train["B"].shape == (30000, 28, 28, 3)
  assert train["A"].dtype == train["B"].dtype == np.uint8
  assert train["label_A"].dtype == train["label_B"].dtype == np.int32
  np.testing.assert_array_equal(train["A"], src["image"][0::2])
  np.testing.assert_array_equal(train["label_A"], src["label"][0::2])
  b_digits = derived.to_a(train["B"])
  np.testing.assert_array_equal(b_digits, src["image"][1::2])
  np.testing.assert_array_equal(train["label_B"], src["label"][1::2])
  # No B image is the colourised copy of an A image.
  a_digits = {x.tobytes() for x in train["A"]}
  assert not any(x.tobytes() in a_digits for x in b_digits)


@needs_mnist
def test_colored_mnist_test_is_paired(cm, mnist):
  test, src = cm["test"], mnist["test"]
  assert set(test) == {"A", "B", "label"}
  assert test["A"].shape == (10000, 28, 28, 1) and test["B"].shape == (10000, 28, 28, 3)
  np.testing.assert_array_equal(test["A"], src["image"])
  np.testing.assert_array_equal(test["label"], src["label"])
  np.testing.assert_array_equal(test["B"], derived.to_b(test["A"]))
  np.testing.assert_array_equal(derived.to_a(test["B"]), test["A"])


@needs_mnist
def test_colored_mnist_is_deterministic(cm):
  again = derived.colored_mnist("test")
  for k in cm["test"]:
    np.testing.assert_array_equal(again[k], cm["test"][k])
  assert _sha(cm["test"]["B"][:16]) == (
      "01aa212e5dcb3ca688bd0f8712aa7a03fafe5bf7e3048c3e74f5899e02927907")
  assert _sha(cm["train"]["B"][:16]) == (
      "df31517efc31236d02323910761db0912a7c83e64a58ad49116828b2b4f5860c")


# ---------------------------------------------------------------------------------------------
# Registry and errors.


@needs_mnist
@needs_fashion
def test_registry_matches_outputs(cm, e2f):
  """genjax.data's registry says what the loaders give: shapes, keys, and which split pairs."""
  for name, out in (("colored_mnist", cm["test"]), ("edges2fashion", e2f)):
    info = sources.DATASETS[name]
    assert out["A"].shape[1:] == dict(info.sources)["A"] and out["B"].shape[1:] == info.shape
    assert info.target == "B" and "label" in out
  assert sources.DATASETS["edges2fashion"].paired and not sources.DATASETS["colored_mnist"].paired
  test = data.load("colored_mnist", "test")
  np.testing.assert_array_equal(test["B"], cm["test"]["B"])
  assert test.groups is None  # paired for evaluation
  train = data.load("colored_mnist", "train")
  assert train.groups == (("A", "label_A"), ("B", "label_B"))


def test_unknown_name_or_split(tmp_path):
  with pytest.raises(DataError) as e:
    derived.edges2fashion("val")
  assert str(e.value) == ("unknown split 'val' for dataset 'fashion_mnist'; valid splits: "
                          "train, test")
  # Missing local files and no download: the source's one-line hint, nothing written.
  with pytest.raises(DataError, match="^dataset 'mnist' split 'test' is not available offline"):
    derived.colored_mnist("test", local_dir=tmp_path, data_dir=tmp_path / "tfds", download=False)
  assert list(tmp_path.iterdir()) == []
