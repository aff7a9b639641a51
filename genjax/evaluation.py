"""Evaluation of runs: sample quality, in the training loop (``config.eval``) and of a saved
checkpoint (:func:`evaluate_run`, ``python -m genjax.cli.evaluate``); and a GAN discriminator's
accuracy as a classifier (:func:`gan_accuracy`, ``python -m genjax.cli.gan_accuracy``).

The method generates ``eval.num_samples`` images; a feature extractor (the genjax-trained domain
classifier, or the FID InceptionV3 from a user-supplied weight file) embeds them with the batch
split over all devices; the real split's features are extracted once and cached per (dataset,
split, image preprocessing, extractor). Results are labelled with the extractor and the sample
counts, written to ``<workdir>/metrics.jsonl`` and TensorBoard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from genjax import config as config_lib
from genjax import data
from genjax import frozen
from genjax import kernels
from genjax import parallel
from genjax import paths
from genjax import runs
from genjax.errors import ConfigError
from genjax.errors import GenjaxError
from genjax.errors import KernelError
from genjax.methods import adversarial
from genjax.metrics import anomaly
from genjax.metrics import statistics
from genjax.metrics.options import METRICS
from genjax.metrics.options import parse_metrics
from genjax.metrics.options import SAMPLE_METRICS


@dataclasses.dataclass
class Extractor:
  """``fn(images in [0, 1], NHWC) -> {"features": [B, d], "logits": [B, C]}``."""
  name: str  # what results are labelled with, e.g. "classifier:fashion_mnist"
  fn: Callable[[jax.Array], dict[str, jax.Array]]
  fingerprint: str  # identifies the weights, for the real-statistics cache


def _file_fingerprint(path: pathlib.Path) -> str:
  files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
  h = hashlib.sha256()
  for f in files:
    st = f.stat()
    h.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}:"
             f"{st.st_mtime_ns}".encode())
  return h.hexdigest()[:12]


def make_extractor(ec, dataset: str,
                   conv_backend: kernels.ConvBackend = kernels.XLA) -> Extractor:
  """The feature extractor ``config.eval`` (``ec``) names for ``dataset``, its convolutions on
  ``conv_backend``'s kernels."""
  if ec.extractor == "classifier":
    root = paths.classifier_dir()
    path = (pathlib.Path(ec.weights).expanduser() if ec.weights else
            None if root is None else root / dataset)
    if path is None or not path.exists():
      where = f"at {path}" if path else f"for {dataset} (no default outside a checkout)"
      raise ConfigError(f"no domain classifier {where}: set --config.eval.weights=RUN or "
                        f"{paths.CLASSIFIER_DIR}=DIR (DIR/{dataset} a classifier run), or train "
                        f"one with experiments/configs/classifier_{dataset}.py (see README)")
  elif not ec.weights:
    raise ConfigError("the inception extractor needs the weight file: set "
                      "--config.eval.weights=/path/to/pt_inception-2015-12-05-6726825d.pth "
                      "(pytorch-fid's) or a converted .npz")
  else:
    path = pathlib.Path(ec.weights).expanduser()
  from genjax.metrics import features  # pylint: disable=g-import-not-at-top
  if ec.extractor == "classifier":
    fn = runs.load_classifier(str(path), conv_backend=conv_backend)
  else:
    inception = features.InceptionFeatures(str(path), conv_backend=conv_backend)

    def fn(x):
      out = inception(x)
      return {"features": out["pool3"], "logits": out["logits"]}
  return Extractor(f"{ec.extractor}:{path.name}", fn, _file_fingerprint(path))


class Evaluator:
  """Computes ``config.eval.metrics`` for a method's samples against the real split."""

  def __init__(self, config, method, extractor: Extractor | None = None):
    self.config, self.method, self.ec = config, method, config.eval
    self.metrics = parse_metrics(self.ec.metrics)
    # sample-quality metrics compare features; anomaly detection ranks the method's own scores
    self.extractor = extractor or (make_extractor(self.ec, config.dataset.name,
                                                  method.conv_backend)
                                   if set(self.metrics) & set(SAMPLE_METRICS) else None)
    self._check_rank()
    n = jax.device_count()
    self.batch = -(-self.ec.batch_size // n) * n
    self.sharding = NamedSharding(jax.make_mesh((n,), ("eval",), axis_types=(
        jax.sharding.AxisType.Auto,)), P("eval"))
    # the frozen networks' weights where the method has any attached, replicated on this
    # mesh: the last argument of each hook (genjax.methods.base)
    self._frozen = ((jax.device_put(method.frozen_weights, NamedSharding(self.sharding.mesh,
                                                                         P())),)
                    if method.frozen_weights else ())
    self._generate = jax.jit(method.eval_generate)
    self._scores = jax.jit(method.eval_scores)
    self._anomaly_scores = jax.jit(method.anomaly_scores)
    self._log_likelihood = jax.jit(method.log_likelihood) if "nll" in self.metrics else None
    self.target = data.DATASETS[config.dataset.name].target  # the real images compared
    self._real: dict[str, np.ndarray] | None = None

  def _check_rank(self) -> None:
    """Refuses, at start-up, an FID whose covariances would be rank-deficient: ``n`` samples
    give rank ``n - 1`` at most, so ``min(num_samples, num_real)`` must exceed the feature
    dimension (found by running the extractor on one blank image)."""
    if "fid" not in self.metrics or self.ec.allow_rank_deficient:
      return
    blank = jnp.zeros((1, *self.method.image_shape), jnp.float32)
    d = int(np.shape(self.extractor.fn(blank)["features"])[-1])
    n = min(self.ec.num_samples, self.ec.num_real)
    if n <= d:
      raise ConfigError(
          f"config.eval: FID from {n} samples of {d}-d {self.extractor.name} features has a "
          f"rank-deficient covariance (rank <= n - 1): set eval.num_samples and eval.num_real "
          f"above {d}, or eval.allow_rank_deficient=True")

  # --- features --------------------------------------------------------------------------

  def _to_unit(self, images: jax.Array) -> jax.Array:
    lo, hi = self.method.value_range
    return jnp.clip((images.astype(jnp.float32) - lo) / (hi - lo), 0.0, 1.0)

  def _gather(self, x: jax.Array) -> np.ndarray:
    if jax.process_count() > 1:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  def _embed(self, batches) -> dict[str, np.ndarray]:
    """Concatenated extractor outputs for an iterable of (images in value_range, count)."""
    out: dict[str, list[np.ndarray]] = {"features": [], "logits": []}
    for images, count in batches:
      result = self.extractor.fn(self._to_unit(images))
      for k in out:
        out[k].append(self._gather(result[k])[:count].astype(np.float32))
    return {k: np.concatenate(v) for k, v in out.items()}

  def _padded(self, x: np.ndarray) -> tuple[jax.Array, int]:
    count = x.shape[0]
    if count < self.batch:
      x = np.concatenate([x, np.repeat(x[-1:], self.batch - count, 0)])
    return jax.device_put(x, self.sharding), count

  def _per_example(self, images: np.ndarray, score) -> dict[str, np.ndarray]:
    """``score(x, i)``, a dict of per-example arrays, over the batches ``x`` of ``images``
    (``i``: the batch's first index; the last batch padded to the batch size and placed like
    the others), gathered and concatenated without the padding."""
    out: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), self.batch):
      x, count = self._padded(images[i:i + self.batch])
      for k, v in score(x, i).items():
        out.setdefault(k, []).append(self._gather(v)[:count])
    return {k: np.concatenate(v) for k, v in out.items()}

  def real_features(self) -> dict[str, np.ndarray]:
    """The real split's features, from the cache or extracted once."""
    if self._real is not None:
      return self._real
    ds = self.config.dataset
    key = json.dumps([ds.name, self.ec.split, self.method.image_shape, ds.resize,
                      list(self.method.value_range), self.ec.num_real, self.extractor.name,
                      self.extractor.fingerprint])
    cache = pathlib.Path(self.ec.cache_dir).expanduser() / (
        f"{ds.name}_{self.ec.split}_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz")
    if cache.exists():
      with np.load(cache) as f:
        self._real = {k: f[k] for k in ("features", "logits")}
      return self._real
    images = data.load_config(ds, self.ec.split)[self.target][:self.ec.num_real]
    to_float = jax.jit(self.method.images)
    self._real = self._embed(
        (to_float(x), c) for x, c in (self._padded(images[i:i + self.batch])
                                      for i in range(0, len(images), self.batch)))
    if jax.process_index() == 0:
      tmp = cache.with_suffix(".tmp.npz")
      try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **self._real)
        os.replace(tmp, cache)
      except OSError as e:  # a cache: the evaluation goes on without it
        if tmp.exists():
          tmp.unlink()
        logging.warning("cannot cache the real split's features in %s (%s): they are computed "
                        "again at the next evaluation; set config.eval.cache_dir to a writable "
                        "folder", cache.parent, e.strerror)
    return self._real

  def fake_features(self, state, rng: jax.Array, n: int) -> dict[str, np.ndarray]:
    """Features of ``n`` images made by the method (samples, or reconstructions of the split)."""
    condition = None
    if self.method.EVAL_CONDITION:
      split = data.load_config(self.config.dataset, self.ec.split)
      condition = {k: v for k, v in split.items() if len(v) == len(split[
          self.method.EVAL_CONDITION[0]])}  # the condition's keys, and what is aligned with it
    scores: dict[str, list[np.ndarray]] = {}

    def batches():
      for i in range(0, n, self.batch):
        count = min(self.batch, n - i)
        part = None if condition is None else {
            k: v[np.arange(i, i + self.batch) % len(v)] for k, v in condition.items()}
        inputs = self.method.eval_inputs(jax.random.fold_in(rng, i), self.batch, part)
        images = self._generate(state, jax.device_put(inputs, self.sharding), *self._frozen)
        if part is not None:
          for k, v in self._scores(state, jax.device_put(part, self.sharding), images,
                                   *self._frozen).items():
            scores.setdefault(k, []).append(self._gather(v)[:count])
        labels = part["label"] if part is not None and "label" in part else (
            self.method.eval_labels(inputs))
        if labels is not None:
          scores.setdefault("_labels", []).append(np.asarray(labels)[:count])
        yield images, count
    out = self._embed(batches())
    out.update({k: np.concatenate(v) for k, v in scores.items()})
    return out

  # --- metrics ---------------------------------------------------------------------------

  def anomaly_detection(self, state) -> dict[str, Any]:
    """AUROC of the method's anomaly scores of the whole eval split, the examples of
    ``config.dataset.classes`` being the normal ones (the negatives); ``auroc_by_class``: the
    AUROC of each anomalous class alone against the normal examples."""
    split = data.load_config(self.config.dataset, self.ec.split)
    images = split["image"]
    scores = self._per_example(images, lambda x, i: {
        "score": self._anomaly_scores(state, x, *self._frozen)})
    labels = np.asarray(split["label"])
    anomalous = ~np.isin(labels, np.asarray(self.config.dataset.classes))
    # which anomalies the detector takes for normal: each anomalous class alone against the
    # normal examples
    by_class = {str(k): anomaly.auroc(scores["score"][~anomalous | (labels == k)],
                                      labels[~anomalous | (labels == k)] == k)
                for k in np.unique(labels[anomalous]).tolist()}
    return {"split": self.ec.split, "auroc": anomaly.auroc(scores["score"], anomalous),
            "auroc_by_class": by_class, "normal_classes": list(self.config.dataset.classes),
            "num_scored": int(len(images)), "num_anomalous": int(anomalous.sum())}

  def negative_log_likelihood(self, state) -> dict[str, Any]:
    """The whole eval split's mean ``-log p(x)`` in nats, estimated by the IWAE bound of
    ``config.eval.nll_samples`` importance samples (an upper bound on the NLL that tightens as
    the samples grow), and minus the mean ELBO of the same samples. The noise (binarisation and
    importance samples) depends only on the batch's position, so every evaluation of a run
    scores the same binarised split."""
    images = data.load_config(self.config.dataset, self.ec.split)["image"]
    bounds = self._per_example(images, lambda x, i: self._log_likelihood(
        state, x, jax.random.fold_in(jax.random.PRNGKey(0), i), *self._frozen))
    return {"split": self.ec.split, "nll": -float(bounds["iwae"].astype(np.float64).mean()),
            "nll_elbo": -float(bounds["elbo"].astype(np.float64).mean()),
            "nll_samples": int(self.ec.nll_samples), "num_scored": int(len(images))}

  def __call__(self, state, rng: jax.Array) -> dict[str, Any]:
    """Metrics for ``state`` (one replicated copy); keys like ``fid``, ``kid_mean``,
    ``auroc``."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if self.extractor is not None:
      out.update(self.sample_quality(state, rng))
    if "auroc" in self.metrics:
      out.update(self.anomaly_detection(state))
    if "nll" in self.metrics:
      out.update(self.negative_log_likelihood(state))
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out.update(kernels.record(self.method.conv_backend, self.config.dtype))
    return out

  def sample_quality(self, state, rng: jax.Array) -> dict[str, Any]:
    """The sample-quality metrics of ``config.eval.metrics``."""
    real = self.real_features()
    fake = self.fake_features(state, rng, self.ec.num_samples)
    r, f = real["features"], fake["features"]
    out: dict[str, Any] = {"extractor": self.extractor.name, "num_samples": int(f.shape[0]),
                           "num_real": int(r.shape[0]), "split": self.ec.split}
    if "fid" in self.metrics:
      out["fid"] = statistics.fid(r, f, allow_rank_deficient=self.ec.allow_rank_deficient)
    if "kid" in self.metrics:
      size = min(1000, r.shape[0], f.shape[0])
      out["kid_mean"], out["kid_std"] = statistics.kid(r, f, subset_size=size,
                                                       seed=self.config.seed)
    if "is" in self.metrics:
      probs = jax.nn.softmax(jnp.asarray(fake["logits"], jnp.float32), axis=-1)
      out["is_mean"], out["is_std"] = statistics.inception_score(np.asarray(probs))
    if "modes" in self.metrics:
      out["class_kl"], out["class_fractions"] = statistics.class_balance(real["logits"],
                                                                         fake["logits"])
    if "pr" in self.metrics:
      out["precision"], out["recall"] = statistics.precision_recall(r, f)
    if "dc" in self.metrics:
      out["density"], out["coverage"] = statistics.density_coverage(r, f)
    # Scores of each generated image against what its condition says it should be (e.g. the
    # true target of a translation), and how often the extractor gives it its condition's label.
    for k, v in fake.items():
      if k not in ("features", "logits", "_labels"):
        out[k] = float(np.mean(v))
    if "_labels" in fake and fake["logits"].shape[-1] > int(fake["_labels"].max()):
      out["label_accuracy"] = float(np.mean(np.argmax(fake["logits"], -1) == fake["_labels"]))
    return out


def record(workdir: str, step: int, results: dict[str, Any], tb=None, source: str = "train"
           ) -> None:
  """Appends results to ``<workdir>/metrics.jsonl`` (and TensorBoard); process 0 only."""
  if jax.process_index() != 0:
    return
  _append(workdir, {"step": step, "source": source, **results})
  # anomaly detection alone has no extractor: its scalars go under eval_anomaly/
  label = results.get("extractor", "anomaly").split(":")[0]
  what = (f"{results['extractor']}, {results['num_samples']} samples" if "extractor" in results
          else f"{results['num_scored']} scored")
  logging.info("eval step %d (%s): %s", step, what, " ".join(
      f"{k}={v:.4g}" for k, v in results.items() if isinstance(v, float)))
  if tb is not None:
    for k, v in results.items():
      if isinstance(v, float) and k != "seconds":
        tb.add_scalar(f"eval_{label}/{k}", v, step)


def _append(workdir: str, line: dict[str, Any]) -> None:
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write(json.dumps(line) + "\n")


def evaluate_run(workdir: str, step: int | None = None, **overrides) -> dict[str, Any]:
  """Scores checkpoint ``step`` (newest if None) of ``workdir`` with its saved config, where
  ``overrides`` (``metrics``, ``num_samples``, ... : None keeps the run's) replace keys of its
  ``config.eval``; returns the results and records them. Its errors name an override key as
  the flag of genjax.cli.evaluate that sets it (``--weights``), not as ``config.eval.weights``."""
  strategy = parallel.make_strategy("mesh")
  _, state, config = runs.restore_run(workdir, step, sharding=strategy.state_sharding())
  step = int(state.step)
  for key, value in overrides.items():
    if value is not None:
      config.eval[key] = value
  try:
    return _evaluate_restored(workdir, step, state, config, strategy)
  except GenjaxError as e:  # name the command's flags (--weights), not the keys they set
    raise type(e)(_EVAL_KEY.sub(lambda m: f"--{m[1]}" if m[1] in overrides else m[0],
                                str(e))) from None


# a config.eval key as a message names it: config.eval.weights, --config.eval.weights, eval.split
_EVAL_KEY = re.compile(r"(?:--)?(?:config\.)?\beval\.(\w+)")


def _evaluate_restored(workdir: str, step: int, state, config, strategy) -> dict[str, Any]:
  if not parse_metrics(config.eval.metrics):
    raise ConfigError(f"nothing to evaluate: --metrics names no metric; valid: "
                      f"{', '.join(METRICS)}")
  config_lib.validate(config)
  # the run's networks on the kernels its config names, as in training (the state is the same)
  method = runs.build_method(config, conv_backend=kernels.resolve(
      config.conv_backend, mesh=strategy.data_mesh, dtype=config.dtype))
  method.attach_frozen(frozen.for_config(config, method))  # the networks it trained with
  rng = jax.random.PRNGKey(config.seed)
  results = Evaluator(config, method)(state, jax.random.fold_in(rng, 0x7FFFFFFE))
  if failure := kernels.take_failure():
    raise KernelError(f"a kernel failed during the evaluation ({failure}); nothing was recorded")
  record(workdir, step, results, source="evaluate")
  return {"step": step, **results}


def gan_accuracy(workdir: str, step: int | None = None, split: str = "test") -> dict[str, Any]:
  """Test accuracy of a GAN's discriminator as a classifier of split ``split``, recorded.

  SGAN: the discriminator's K real classes against the labels. InfoGAN: the Q head's categorical
  code, mapped one-to-one to the labels by the Hungarian algorithm. The run's saved config gives
  the model and data.
  """
  method, state, config = runs.restore_run(workdir, step)
  if not isinstance(method, adversarial.Adversarial):
    raise GenjaxError(f"{workdir} holds a {config.model.name!r} run, not a GAN")
  arrays = data.load_config(config.dataset, split)
  result = adversarial.class_accuracy(method, state, arrays["image"], arrays["label"])
  result = {"step": int(state.step), "split": split, "model": config.model.name, **result}
  if "mapping" in result:
    result["mapping"] = {str(k): v for k, v in result["mapping"].items()}
  _append(workdir, {"source": "gan_accuracy", **result})
  return result
