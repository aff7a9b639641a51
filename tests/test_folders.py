"""genjax.data.folders: pix2pix's aligned and CycleGAN's unaligned folder layouts."""

import io
import pathlib
import re

import numpy as np
import pytest
from PIL import Image

from genjax.data import folders
from genjax.errors import DataError

BICUBIC = Image.Resampling.BICUBIC


def _rgb(h, w, seed):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _gray(h, w, seed):
  return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _save(path: pathlib.Path, array: np.ndarray, **kw) -> pathlib.Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path, **kw)
  return path


def _snapshot(root: pathlib.Path) -> dict:
  """Every path under ``root`` with its size and modification time."""
  return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(root.rglob("*"))}


def _pil(path: pathlib.Path, box=None, gray=False, size=None) -> np.ndarray:
  """The reference's steps with PIL directly: RGB, crop, grayscale, bicubic resize."""
  im = Image.open(path).convert("RGB")
  if box is not None:
    im = im.crop(box)
  if gray:
    im = im.convert("L")
  if size is not None:
    im = im.resize(size, BICUBIC)
  a = np.asarray(im)
  return a[..., None] if a.ndim == 2 else a


def _raises(tmp_path, fn, message, *args, **kwargs):
  """Asserts that ``fn`` raises DataError with exactly ``message`` (a string, or a compiled
  regex that must match all of it), on one line, and writes nothing under ``tmp_path``."""
  before = _snapshot(tmp_path)
  with pytest.raises(DataError) as info:
    fn(*args, **kwargs)
  text = str(info.value)
  assert "\n" not in text
  if isinstance(message, re.Pattern):
    assert message.fullmatch(text), text
  else:
    assert text == message
  assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# Finding files.


def test_image_paths_recursive_case_insensitive_sorted(tmp_path):
  for name in ("b.png", "a.PNG", "sub/c.JPEG", "sub/deeper/d.jpg", "a0.Jpeg", "e.bmp"):
    _save(tmp_path / name, _rgb(4, 4, 0))
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / "x.gif").write_bytes(b"GIF89a")
  got = [p.relative_to(tmp_path).as_posix() for p in folders.image_paths(tmp_path)]
  assert got == ["a.PNG", "a0.Jpeg", "b.png", "e.bmp", "sub/c.JPEG", "sub/deeper/d.jpg"]
  assert folders.image_paths(tmp_path / "absent") == []


# ---------------------------------------------------------------------------------------------
# Aligned.


def test_aligned_halves_in_sorted_order(tmp_path):
  split = tmp_path / "train"
  arrays = {"b.png": _rgb(9, 18, 1), "a.png": _rgb(9, 18, 2), "sub/c.png": _rgb(9, 18, 3)}
  for name, a in arrays.items():
    _save(split / name, a)
  (split / "readme.txt").write_text("ignored")
  out = folders.load_aligned(tmp_path, "train", preprocess="crop")
  assert set(out) == {"A", "B"}
  assert out["A"].dtype == out["B"].dtype == np.uint8
  assert out["A"].shape == out["B"].shape == (3, 9, 9, 3)
  for i, name in enumerate(["a.png", "b.png", "sub/c.png"]):
    np.testing.assert_array_equal(out["A"][i], arrays[name][:, :9])
    np.testing.assert_array_equal(out["B"][i], arrays[name][:, 9:])


def test_aligned_resize_matches_pil_bicubic_per_half(tmp_path):
  # Odd native size (13) to an even load_size: each half is resized on its own, as the reference
  # splits A and B before its transforms.
  paths = [_save(tmp_path / "test" / f"{i}.png", _rgb(13, 26, i)) for i in range(2)]
  paths.append(_save(tmp_path / "test" / "2.jpg", _rgb(13, 26, 9), quality=90))
  out = folders.load_aligned(tmp_path, "test", load_size=20)
  assert out["A"].shape == out["B"].shape == (3, 20, 20, 3)
  for i, p in enumerate(paths):
    np.testing.assert_array_equal(out["A"][i], _pil(p, (0, 0, 13, 13), size=(20, 20)))
    np.testing.assert_array_equal(out["B"][i], _pil(p, (13, 0, 26, 13), size=(20, 20)))


def test_aligned_channels_per_side(tmp_path):
  p = _save(tmp_path / "train" / "x.png", _rgb(8, 16, 4))
  out = folders.load_aligned(tmp_path, "train", load_size=8, channels_a=1, channels_b=3)
  assert out["A"].shape == (1, 8, 8, 1) and out["B"].shape == (1, 8, 8, 3)
  np.testing.assert_array_equal(out["A"][0], _pil(p, (0, 0, 8, 8), gray=True))
  np.testing.assert_array_equal(out["B"][0], _pil(p, (8, 0, 16, 8)))


def test_aligned_width_must_be_twice_height(tmp_path):
  _save(tmp_path / "train" / "ok.png", _rgb(8, 16, 0))
  bad = _save(tmp_path / "train" / "wide.png", _rgb(8, 17, 0))
  _raises(tmp_path, folders.load_aligned,
          f"aligned image {bad} is 17x8 (width x height) but must be twice as wide as high (A on "
          f"the left, B on the right, each square): fix or remove it, or use the unaligned layout "
          f"(trainA/, trainB/)", tmp_path, "train")


# ---------------------------------------------------------------------------------------------
# Unaligned.


def _unaligned(tmp_path):
  a = [_save(tmp_path / "trainA" / f"a{i}.png", _rgb(10 + i, 12, i)) for i in range(3)]
  b = [_save(tmp_path / "trainB" / "b0.JPG", _rgb(7, 9, 10), quality=95),
       _save(tmp_path / "trainB" / "b1.png", _rgb(30, 20, 11))]
  return a, b


def test_unaligned_domains_differ_in_count_and_size(tmp_path):
  a, b = _unaligned(tmp_path)
  out = folders.load_unaligned(tmp_path, "train", load_size=16)
  assert out["A"].shape == (3, 16, 16, 3) and out["B"].shape == (2, 16, 16, 3)
  assert out["A"].dtype == out["B"].dtype == np.uint8
  for i, p in enumerate(a):
    np.testing.assert_array_equal(out["A"][i], _pil(p, size=(16, 16)))
  for i, p in enumerate(b):
    np.testing.assert_array_equal(out["B"][i], _pil(p, size=(16, 16)))


def test_unaligned_test_split(tmp_path):
  _save(tmp_path / "testA" / "x.png", _rgb(8, 8, 0))
  _save(tmp_path / "testB" / "y.png", _rgb(8, 8, 1))
  out = folders.load_unaligned(tmp_path, "test", preprocess="crop")
  np.testing.assert_array_equal(out["A"][0], _rgb(8, 8, 0))
  np.testing.assert_array_equal(out["B"][0], _rgb(8, 8, 1))


def test_scale_width_keeps_aspect_ratio(tmp_path):
  paths = [_save(tmp_path / "trainA" / "a.png", _rgb(11, 22, 0)),
           _save(tmp_path / "trainA" / "b.png", _rgb(20, 40, 1)),
           _save(tmp_path / "trainA" / "c.png", _rgb(8, 16, 2))]   # Already 16 wide: kept.
  _save(tmp_path / "trainB" / "d.png", _rgb(5, 3, 3))
  for mode in ("scale_width", "scale_width_and_crop"):
    out = folders.load_unaligned(tmp_path, "train", load_size=16, preprocess=mode)
    assert out["A"].shape == (3, 8, 16, 3)  # Height 16 * 11 // 22 = 8.
    assert out["B"].shape == (1, 26, 16, 3)  # 16 * 5 // 3 = 26.
    for i, p in enumerate(paths):
      np.testing.assert_array_equal(out["A"][i], _pil(p, size=(16, 8)))
  # With a crop size the height is at least crop_size, as the reference's __scale_width.
  out = folders.load_unaligned(tmp_path, "train", load_size=16, preprocess="scale_width",
                               crop_size=10)
  assert out["A"].shape == (3, 10, 16, 3)
  np.testing.assert_array_equal(out["A"][2], _pil(paths[2], size=(16, 10)))


def test_none_rounds_to_multiple_of_4(tmp_path):
  # 13 / 4 = 3.25 -> 12; 10 / 4 = 2.5 -> 8 (Python rounds ties to even, as the reference does).
  p = _save(tmp_path / "trainA" / "a.png", _rgb(10, 13, 0))
  q = _save(tmp_path / "trainB" / "b.png", _rgb(16, 12, 1))  # Already multiples of 4: kept.
  out = folders.load_unaligned(tmp_path, "train", preprocess="none")
  assert out["A"].shape == (1, 8, 12, 3) and out["B"].shape == (1, 16, 12, 3)
  np.testing.assert_array_equal(out["A"][0], _pil(p, size=(12, 8)))
  np.testing.assert_array_equal(out["B"][0], _pil(q))
  assert folders.preprocessed_size(14, 18, preprocess="none") == (16, 16)


def test_crop_keeps_native_size(tmp_path):
  _save(tmp_path / "trainA" / "a.png", _rgb(7, 9, 0))
  _save(tmp_path / "trainB" / "b.png", _rgb(5, 3, 1))
  out = folders.load_unaligned(tmp_path, "train", load_size=4, preprocess="crop")
  np.testing.assert_array_equal(out["A"][0], _rgb(7, 9, 0))
  np.testing.assert_array_equal(out["B"][0], _rgb(5, 3, 1))


# ---------------------------------------------------------------------------------------------
# Channels.


def test_channel_conversion(tmp_path):
  colour = _save(tmp_path / "trainA" / "c.png", _rgb(6, 6, 0))
  _save(tmp_path / "trainB" / "g.png", _gray(6, 6, 1))
  out = folders.load_unaligned(tmp_path, "train", preprocess="crop", channels_a=1, channels_b=3)
  assert out["A"].shape == (1, 6, 6, 1) and out["B"].shape == (1, 6, 6, 3)
  # ITU-R 601-2 luma, PIL's convert('L').
  np.testing.assert_array_equal(out["A"][0, ..., 0],
                                np.asarray(Image.open(colour).convert("L")))
  np.testing.assert_array_equal(out["B"][0], np.repeat(_gray(6, 6, 1)[..., None], 3, -1))


def test_auto_channels_follow_the_files(tmp_path):
  _save(tmp_path / "trainA" / "g.png", _gray(6, 6, 0))
  bilevel = Image.fromarray(_gray(6, 6, 1) > 128)  # Mode '1'.
  bilevel.save(tmp_path / "trainA" / "h.png")
  # A palette of grays counts as grayscale.
  Image.fromarray(_gray(6, 6, 2)).convert("P").save(tmp_path / "trainA" / "p.png")
  _save(tmp_path / "trainB" / "c.png", _rgb(6, 6, 3))
  Image.fromarray(np.dstack([_rgb(6, 6, 4), _gray(6, 6, 5)])).save(tmp_path / "trainB" / "d.png")
  out = folders.load_unaligned(tmp_path, "train", preprocess="crop", channels_a=None,
                               channels_b=None)
  assert out["A"].shape == (3, 6, 6, 1) and out["B"].shape == (2, 6, 6, 3)
  np.testing.assert_array_equal(out["A"][0, ..., 0], _gray(6, 6, 0))
  np.testing.assert_array_equal(out["A"][1, ..., 0], np.where(_gray(6, 6, 1) > 128, 255, 0))
  np.testing.assert_array_equal(out["A"][2, ..., 0], _gray(6, 6, 2))
  np.testing.assert_array_equal(out["B"][1], _rgb(6, 6, 4))  # Alpha dropped, as convert('RGB').


def test_mixed_channels_error_unless_explicit(tmp_path):
  _save(tmp_path / "trainA" / "a.png", _rgb(6, 6, 0))
  _save(tmp_path / "trainA" / "b.png", _gray(6, 6, 1))
  _save(tmp_path / "trainA" / "sub" / "c.png", _gray(6, 6, 2))
  _save(tmp_path / "trainB" / "d.png", _rgb(6, 6, 3))
  _raises(tmp_path, folders.load_unaligned,
          f"images in {tmp_path / 'trainA'} mix grayscale (2, e.g. b.png) and colour (1, e.g. "
          f"a.png): pass channels_a=3 to convert all to RGB or channels_a=1 to convert all to "
          f"grayscale", tmp_path, "train", channels_a=None, channels_b=None)
  out = folders.load_unaligned(tmp_path, "train", preprocess="crop", channels_a=3)
  assert out["A"].shape == (3, 6, 6, 3)
  out = folders.load_unaligned(tmp_path, "train", preprocess="crop", channels_a=1)
  assert out["A"].shape == (3, 6, 6, 1)


def test_high_bit_depth_refused(tmp_path):
  bad = tmp_path / "trainA" / "deep.png"
  bad.parent.mkdir()
  Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(bad)
  _save(tmp_path / "trainB" / "b.png", _rgb(4, 4, 0))
  _raises(tmp_path, folders.load_unaligned,
          f"image {bad} has mode 'I;16' (16-bit or float samples), which would be clipped to 8 "
          f"bits: save it as 8-bit grayscale or RGB", tmp_path, "train")


# ---------------------------------------------------------------------------------------------
# Errors: one line each, nothing written.


def test_missing_root(tmp_path):
  root = tmp_path / "nowhere"
  _raises(tmp_path, folders.load_aligned,
          f"dataset root {root} does not exist: set it to the folder that holds train/ (pix2pix's "
          f"aligned layout: each image holds A and B side by side)", root, "train")
  _raises(tmp_path, folders.load_unaligned,
          f"dataset root {root} does not exist: set it to the folder that holds testA/ and testB/ "
          f"(CycleGAN's unaligned layout)", root, "test")
  file = tmp_path / "file"
  file.write_text("x")
  _raises(tmp_path, folders.load_aligned,
          f"dataset root {file} is not a folder: set it to the folder that holds train/ (pix2pix's "
          f"aligned layout: each image holds A and B side by side)", file, "train")


def test_missing_or_empty_split_folder(tmp_path):
  _raises(tmp_path, folders.load_aligned,
          f"image folder {tmp_path / 'train'} does not exist: create it and put the train images "
          f"(A and B side by side, width = 2 x height) there", tmp_path, "train")
  (tmp_path / "train" / "sub").mkdir(parents=True)
  (tmp_path / "train" / "list.txt").write_text("a.png")
  _raises(tmp_path, folders.load_aligned,
          f"image folder {tmp_path / 'train'} holds no images (.jpg, .jpeg, .png, .ppm, .bmp, "
          f".tif, .tiff, any case, subfolders included): put the train images (A and B side by "
          f"side, width = 2 x height) there", tmp_path, "train")


def test_missing_or_empty_domain_folder(tmp_path):
  _save(tmp_path / "trainA" / "a.png", _rgb(4, 4, 0))
  _raises(tmp_path, folders.load_unaligned,
          f"image folder {tmp_path / 'trainB'} does not exist: create it and put the train images "
          f"of domain B there", tmp_path, "train")
  (tmp_path / "trainB").mkdir()
  _raises(tmp_path, folders.load_unaligned,
          f"image folder {tmp_path / 'trainB'} holds no images (.jpg, .jpeg, .png, .ppm, .bmp, "
          f".tif, .tiff, any case, subfolders included): put the train images of domain B there",
          tmp_path, "train")


def test_unreadable_and_corrupt_images(tmp_path):
  _save(tmp_path / "trainA" / "a.png", _rgb(4, 4, 0))
  _save(tmp_path / "trainB" / "b.png", _rgb(4, 4, 1))
  junk = tmp_path / "trainB" / "junk.jpg"
  junk.write_bytes(b"not an image at all")
  _raises(tmp_path, folders.load_unaligned,
          f"cannot read image {junk} (UnidentifiedImageError: cannot identify image file "
          f"'{junk}'): replace or remove the file", tmp_path, "train")
  junk.unlink()
  # A valid header with truncated pixel data fails when decoded, and is named too.
  buf = io.BytesIO()
  Image.fromarray(_rgb(64, 64, 2)).save(buf, "PNG")
  cut = tmp_path / "trainA" / "cut.png"
  cut.write_bytes(buf.getvalue()[:400])
  _raises(tmp_path, folders.load_unaligned,
          re.compile(re.escape(f"cannot read image {cut} (") + r"OSError: [^()]*truncated[^)]*"
                     + re.escape("): replace or remove the file")), tmp_path, "train")


def test_sizes_must_agree_after_preprocess(tmp_path):
  _save(tmp_path / "trainA" / "a.png", _rgb(8, 8, 0))
  _save(tmp_path / "trainA" / "sub" / "b.png", _rgb(8, 9, 1))
  _save(tmp_path / "trainB" / "c.png", _rgb(8, 8, 2))
  message = (f"images in {tmp_path / 'trainA'} have different sizes after preprocess {{!r}}: "
             f"a.png is {{}} but sub/b.png is {{}} (width x height): use "
             f"preprocess='resize_and_crop' (or 'scale_width' for one aspect ratio) so that every "
             f"image of a domain has one size")
  _raises(tmp_path, folders.load_unaligned, message.format("crop", "8x8", "9x8"), tmp_path,
          "train", preprocess="crop")
  _raises(tmp_path, folders.load_unaligned, message.format("scale_width", "16x16", "16x14"),
          tmp_path, "train", preprocess="scale_width", load_size=16)
  assert folders.load_unaligned(tmp_path, "train", load_size=8)["A"].shape == (2, 8, 8, 3)


def test_crop_size_checked(tmp_path):
  _save(tmp_path / "trainA" / "a.png", _rgb(8, 8, 0))
  _save(tmp_path / "trainB" / "b.png", _rgb(8, 8, 1))
  _raises(tmp_path, folders.load_unaligned,
          f"image {tmp_path / 'trainA' / 'a.png'} is 8x8 after preprocess 'crop', smaller than "
          f"crop_size 10: lower crop_size or raise load_size", tmp_path, "train",
          preprocess="crop", crop_size=10)


@pytest.mark.parametrize("kwargs,message", [
    (dict(preprocess="resize"), "unknown preprocess 'resize'; valid names: resize_and_crop, "
     "crop, scale_width, scale_width_and_crop, none"),
    (dict(channels_a=2), "channels_a must be 1 (grayscale), 3 (RGB) or None (from the files), "
     "got 2"),
    (dict(channels_b="rgb"), "channels_b must be 1 (grayscale), 3 (RGB) or None (from the "
     "files), got 'rgb'"),
    (dict(load_size=0), "load_size must be a positive int, got 0"),
    (dict(crop_size=2.5), "crop_size must be a positive int or None, got 2.5"),
])
def test_bad_arguments(tmp_path, kwargs, message):
  _save(tmp_path / "train" / "a.png", _rgb(4, 8, 0))
  for fn in (folders.load_aligned, folders.load_unaligned):
    _raises(tmp_path, fn, message, tmp_path, "train", **kwargs)


def test_bad_split(tmp_path):
  _raises(tmp_path, folders.load_aligned,
          "split must be a folder name such as 'train' or 'test', got '../x'", tmp_path, "../x")
