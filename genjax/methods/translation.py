"""Image-to-image translation: Pix2Pix (paired) and CycleGAN (unpaired), as in
junyanz/pytorch-CycleGAN-and-pix2pix.

The examples hold a source ``A`` and a target ``B`` (``genjax.data``). A family builds one
generator ``G`` (A -> B) and its discriminator ``D`` (Pix2Pix), or two of each (CycleGAN:
``G_A``: A -> B judged by ``D_A``, ``G_B``: B -> A judged by ``D_B``); the method reads which
from the roles it is given, and each discriminator's spec says whether it judges the image
alone or with its source (``sees_condition``: Pix2Pix's conditional PatchGAN).

One step, with the reference's objectives (``gan_mode`` 'vanilla' is binary cross-entropy with
logits, 'lsgan' the mean squared error, against target 1 for real and 0 for fake):

* the discriminators: ``0.5 * (L(D(real), 1) + L(D(fake), 0))`` each, the fakes detached and,
  with ``pool_size > 0``, drawn from a pool of past fakes kept in the train state (CycleGAN's
  50; a conditional discriminator's pool keeps (A, fake) pairs); the reference's order of the
  real and fake passes (fake first in Pix2Pix), which BatchNorm's running statistics follow;
  DiffAugment, penalties and clipping come from :class:`~genjax.methods.gan_parts.Critic`;
* the generators: ``gan_weight * L(D(fake), 1)`` plus ``lambda_L1 * |G(A) - B|`` (paired data)
  plus ``lambda_perceptual * |phi(G(A)) - phi(B)|`` (paired data; ``phi``: the features of the
  frozen network ``config.frozen.perceptual``, a genjax classifier run, fed as
  :class:`~genjax.metrics.features.ClassifierFeatures` feeds it) plus, with two generators,
  the cycle terms ``lambda_A * |G_B(G_A(A)) - A| + lambda_B * |G_A(G_B(B)) - B|`` and the
  identity terms ``lambda_identity * (lambda_B * |G_A(B) - B| + lambda_A * |G_B(A) - A|)``.

``update_order`` 'd_first' (Pix2Pix) updates the discriminators on this step's fakes first and
then the generators against the updated discriminators; 'g_first' (CycleGAN) the generators
first, then the discriminators on the fakes the generators made before their update. At test
time the reference keeps dropout and BatchNorm in training mode (it calls ``model.eval()`` only
with ``--eval``): ``sample_train_mode`` does the same for samples, evaluation and
``genjax.cli.translate``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from genjax import data
from genjax import errors
from genjax import kernels
from genjax import losses
from genjax.errors import ConfigError
from genjax.methods import gan_parts
from genjax.methods.base import FrozenSlot
from genjax.methods.base import Method
from genjax.methods.base import TrainState
from genjax.metrics import features

Array = jax.Array

# The reference's GANLoss: (D's loss on real + on fake (unhalved), G's loss), on logits.
GAN_MODES = {
    "vanilla": (losses.d_loss_bce, losses.g_loss_non_saturating),
    "lsgan": (lambda real, fake: 2.0 * losses.d_loss_least_squares(real, fake),
              lambda fake: 2.0 * losses.g_loss_least_squares(fake)),
}
ORDERS = ("d_first", "g_first")


class ImagePool:
  """The reference's pool of past fakes, as pure functions of arrays kept in the train state.

  ``query`` goes through the batch in order: while the pool is not full, an image is stored and
  returned; then, with probability 1/2, a random stored image is returned and replaced by the
  new one, else the new one is returned. Under pmap the global batch is gathered first, so
  every device keeps the same pool, as one device would.
  """

  def __init__(self, size: int, axis_name: str | None):
    self.size, self.axis_name = size, axis_name

  def init(self, shape: tuple[int, int, int]) -> dict[str, Array]:
    return {"images": jnp.zeros((self.size, *shape), jnp.float32),
            "count": jnp.zeros((), jnp.int32)}

  def query(self, pool: dict[str, Array], images: Array, key: Array):
    """(the images to show the discriminator, the new pool)."""
    local = images.shape[0]
    if self.axis_name is not None:
      images = jax.lax.all_gather(images, self.axis_name, tiled=True)
    n = images.shape[0]
    swap = jax.random.uniform(jax.random.fold_in(key, 0), (n,)) < 0.5
    slot = jax.random.randint(jax.random.fold_in(key, 1), (n,), 0, self.size)

    def one(carry, inputs):
      stored, count = carry
      image, use_stored, at = inputs
      image = image.astype(stored.dtype)
      filling = count < self.size
      index = jnp.where(filling, count, at)
      shown = jnp.where(filling | ~use_stored, image, stored[index])
      keep = filling | use_stored
      stored = stored.at[index].set(jnp.where(keep, image, stored[index]))
      return (stored, count + filling.astype(jnp.int32)), shown

    (stored, count), shown = jax.lax.scan(one, (pool["images"], pool["count"]),
                                          (jax.lax.stop_gradient(images), swap, slot))
    if self.axis_name is not None:
      shown = jax.lax.dynamic_slice_in_dim(shown, jax.lax.axis_index(self.axis_name) * local,
                                           local)
    return shown, {"images": stored, "count": count}


class Translation(Method):
  DEFAULTS = dict(
      gan_mode="vanilla",  # 'vanilla' (BCE with logits, Pix2Pix) or 'lsgan' (CycleGAN)
      gan_weight=1.0,  # weight of the generators' adversarial loss (0: L1 alone, an ablation)
      lambda_L1=100.0,  # Pix2Pix: weight of |G(A) - B| (paired data only; 0: cGAN alone)
      lambda_perceptual=0.0,  # weight of the L1 distance of G(A)'s and B's features in the
                              # frozen network config.frozen.perceptual (paired data only)
      lambda_A=10.0,  # CycleGAN: weight of the cycle A -> B -> A
      lambda_B=10.0,  # CycleGAN: weight of the cycle B -> A -> B
      lambda_identity=0.5,  # CycleGAN: identity terms, relative to lambda_A / lambda_B
      d_loss_scale=0.5,  # the discriminators' loss is halved, as in the reference
      pool_size=0,  # past fakes shown to each discriminator (CycleGAN: 50; 0 = none)
      update_order="d_first",  # 'd_first' (Pix2Pix) or 'g_first' (CycleGAN)
      sample_train_mode=True,  # dropout and BatchNorm batch statistics when sampling, as the
                               # reference's test.py without --eval
      **gan_parts.CRITIC_DEFAULTS,
  )
  KEYS = ("A", "B")
  FROZEN = {"perceptual": FrozenSlot("a frozen feature network for method.lambda_perceptual",
                                     families=("classifier",))}

  @classmethod
  def validate(cls, config) -> None:
    m = config.method
    errors.check_config_choice("method.gan_mode", m.gan_mode, GAN_MODES)
    errors.check_config_choice("method.update_order", m.update_order, ORDERS)
    gan_parts.validate_critic(config)
    if m.n_critic != 1 or m.critic_burst:
      raise ConfigError("config.method.n_critic must be 1 (and critic_burst ()) for "
                        "image-to-image translation")
    for key in ("gan_weight", "lambda_L1", "lambda_perceptual", "lambda_A", "lambda_B",
                "lambda_identity", "d_loss_scale"):
      if not m[key] >= 0:
        raise ConfigError(f"config.method.{key} must be >= 0, got {m[key]}")
    if not isinstance(m.pool_size, int) or m.pool_size < 0:
      raise ConfigError(f"config.method.pool_size must be an integer >= 0, got {m.pool_size!r}")
    for key in ("lambda_L1", "lambda_perceptual"):
      if m[key] and not data.paired(config.dataset):
        raise ConfigError(f"config.method.{key} needs paired examples, and "
                          f"{config.dataset.name!r} is unpaired: set --config.method.{key}=0")

  @classmethod
  def required_frozen(cls, config) -> tuple[str, ...]:
    return ("perceptual",) if config.method.lambda_perceptual else ()

  def __init__(self, config, image_shape, num_classes, axis_name=None,
               conv_backend=kernels.XLA):
    self.shapes = data.image_shapes(config.dataset)
    super().__init__(config, image_shape, num_classes, axis_name, conv_backend)
    roles = set(self.graphdefs)
    if roles == {"G", "D"}:
      self.directions = (("A", "B", "G", "D"),)
    elif roles == {"G_A", "G_B", "D_A", "D_B"}:
      self.directions = (("A", "B", "G_A", "D_A"), ("B", "A", "G_B", "D_B"))
    else:
      raise ConfigError(f"model {config.model.name!r} builds {sorted(roles)}; the translation "
                        f"method trains G and D, or G_A, G_B, D_A and D_B")
    self.cycle = len(self.directions) == 2
    a, b = self.shapes["A"][-1], self.shapes["B"][-1]
    if self.cycle and self.mc.lambda_identity and a != b:
      raise ConfigError(f"the identity terms feed each generator images of its output domain, "
                        f"and A has {a} channels but B {b}: set "
                        f"--config.method.lambda_identity=0")
    self.generators = tuple(g for _, _, g, _ in self.directions)
    self.critic = gan_parts.Critic(self.mc, GAN_MODES[self.mc.gan_mode], axis_name)
    self.pool = ImagePool(self.mc.pool_size, axis_name) if self.mc.pool_size else None
    self.paired = data.paired(config.dataset)
    self.groups = (("A", "B"),) if self.paired else (("A",), ("B",))

    self.SAMPLE_NET = self.generators[0]  # pylint: disable=invalid-name

  def build_kwargs(self) -> dict[str, Any]:
    return {"input_shape": self.shapes["A"]}

  def ema_decay(self, role: str) -> float:
    return self.config.ema_decay if role.startswith("G") else 0.0

  def learning_rate(self, role: str) -> float:
    if role.startswith("D") and self.mc.d_learning_rate:
      return self.mc.d_learning_rate
    return super().learning_rate(role)

  def init_extra(self) -> dict[str, Any]:
    if self.pool is None:
      return {}
    return {f"pool_{d}": self.pool.init(self.d_input(
        d, jnp.zeros(self.shapes[tgt]), jnp.zeros(self.shapes[src])).shape)
            for src, tgt, _, d in self.directions}

  # --- inputs and networks ------------------------------------------------------------------

  def _floats(self, images: Array) -> Array:
    ds = self.config.dataset
    return data.to_float(images, value_range=self.value_range, image_size=ds.image_size or None,
                         resize=ds.resize)

  def _crop(self) -> int | None:
    ds = self.config.dataset
    return ds.crop_size if "crop" in ds.preprocess else None

  def inputs(self, batch: dict[str, Array], key: Array) -> dict[str, Array]:
    """A and B as floats in the value range, randomly cropped and flipped (pairs together)."""
    x = {k: self._floats(batch[k]) for k in self.KEYS}
    return data.random_crop_flip(x, self.groups, size=self._crop(), flip=self.config.dataset.flip,
                                 rng=key, axis_name=self.axis_name)

  def images(self, images_uint8: Array) -> Array:
    """Images for sampling and evaluation: floats, centre-cropped where training crops."""
    x, size = self._floats(images_uint8), self._crop()
    if size is None:
      return x
    top, left = (x.shape[-3] - size) // 2, (x.shape[-2] - size) // 2
    return x[..., top:top + size, left:left + size, :]

  def translate(self, role: str, params, buffers, x: Array, rng, *, train: bool = True):
    """``(role's output on x, its new buffers)``; ``rng`` drives dropout where it has it."""
    g = self.net(role, params, buffers, train=train)
    out = g(x, rng=rng) if "rng" in g.spec.takes else g(x)
    return out, self.buffers_of(g)

  def d_input(self, role: str, image: Array, condition: Array) -> Array:
    """What discriminator ``role`` judges: the image, or the (condition, image) pair
    concatenated on channels where its spec ``sees_condition``."""
    if self.abstract_nets[role].spec.sees_condition:
      return jnp.concatenate([condition.astype(image.dtype), image], -1)
    return image

  def judge(self, role: str, params, buffers, d_in: Array):
    """``(the logits of discriminator role on its input d_in, its new buffers)``."""
    d = self.net(role, params, buffers)
    return d(d_in), self.buffers_of(d)

  def perceptual(self, frozen, fake: Array, real: Array) -> Array:
    """The mean L1 distance between the ``features`` the frozen classifier
    ``config.frozen.perceptual`` gives ``fake`` and ``real`` (images in the value range), fed
    as :func:`~genjax.metrics.features.classifier_inputs` feeds it; differentiable in ``fake``
    (the classifier's weights, an argument of the step, get no gradient)."""
    lo, hi = self.value_range
    net = self.frozen_net("perceptual", frozen)
    classifier = self.frozen["perceptual"].method

    def phi(x):
      x01 = (x.astype(jnp.float32) - lo) / (hi - lo)
      return net(features.classifier_inputs(classifier, x01))["features"].astype(jnp.float32)
    return jnp.mean(jnp.abs(phi(fake) - jax.lax.stop_gradient(phi(real))))

  # --- the update ---------------------------------------------------------------------------

  def step(self, state: TrainState, batch, frozen=None) -> tuple[TrainState, dict]:
    """One update; ``frozen``: the weights of the frozen networks (``attach_frozen``), needed
    where ``lambda_perceptual`` > 0."""
    mc, critic = self.mc, self.critic
    key = self.step_key(state)
    sub = lambda i: jax.random.fold_in(key, i)  # pylint: disable=unnecessary-lambda-assignment
    x = self.inputs(batch, sub(0))
    params, buffers, opt_state = dict(state.params), dict(state.buffers), dict(state.opt_state)
    extra, metrics = dict(state.extra), {}

    def forward(g_params):
      """Each generator on its source: the fakes, and the generators' new buffers."""
      fakes, new = {}, {}
      for i, (src, tgt, g, _) in enumerate(self.directions):
        fakes[tgt], new[g] = self.translate(g, g_params[g], buffers[g], x[src], sub(10 + i))
      return fakes, new

    def fakes_loss(fakes, d_params, d_buffers):
      """What the generators' loss owes to their fakes alone: adversarial, and L1 to B."""
      loss, terms, new = jnp.zeros((), jnp.float32), {}, {}
      for src, tgt, g, d in self.directions:
        logits, new[d] = self.judge(d, d_params[d], d_buffers[d],
                                    self.d_input(d, fakes[tgt], x[src]))
        terms[f"gan_{g}"] = critic.g_loss(logits)
        loss += mc.gan_weight * terms[f"gan_{g}"]
      if mc.lambda_L1 and not self.cycle:
        terms["l1"] = jnp.mean(jnp.abs(fakes["B"].astype(jnp.float32) - x["B"]))
        loss += mc.lambda_L1 * terms["l1"]
      if mc.lambda_perceptual and not self.cycle:
        terms["perceptual"] = self.perceptual(frozen, fakes["B"], x["B"])
        loss += mc.lambda_perceptual * terms["perceptual"]
      return loss, (terms, new)

    def cycle_loss(g_params, fakes, new):
      """CycleGAN's cycle and identity terms (they run the generators again)."""
      loss, terms, new = jnp.zeros((), jnp.float32), {}, dict(new)
      lam = {"A": mc.lambda_A, "B": mc.lambda_B}
      for i, (src, tgt, g, _) in enumerate(self.directions):
        back = self.generators[1 - i]
        rec, new[back] = self.translate(back, g_params[back], new[back], fakes[tgt],
                                        sub(20 + i))
        terms[f"cycle_{src}"] = jnp.mean(jnp.abs(rec.astype(jnp.float32) - x[src]))
        loss += lam[src] * terms[f"cycle_{src}"]
        if mc.lambda_identity:  # G maps into its target's domain: a target passes unchanged
          idt, new[g] = self.translate(g, g_params[g], new[g], x[tgt], sub(30 + i))
          terms[f"identity_{tgt}"] = jnp.mean(jnp.abs(idt.astype(jnp.float32) - x[tgt]))
          loss += mc.lambda_identity * lam[tgt] * terms[f"identity_{tgt}"]
      return loss, (terms, new)

    def generators_step(d_params, vjp=None):
      """Updates the generators against discriminators ``d_params``; with ``vjp`` (the fakes
      already made, and the generators' VJP) only the fakes' loss is differentiated again."""
      g_params = {g: params[g] for g in self.generators}
      if vjp is not None:
        fakes, g_vjp, new = vjp
        (loss, (terms, d_new)), fake_grads = jax.value_and_grad(fakes_loss, has_aux=True)(
            fakes, d_params, buffers)
        (grads,) = g_vjp(fake_grads)
      else:
        def total(g_params):
          fakes, new = forward(g_params)
          loss, (terms, d_new) = fakes_loss(fakes, d_params, buffers)
          if self.cycle:
            more, (cycle_terms, new) = cycle_loss(g_params, fakes, new)
            loss += more
            terms.update(cycle_terms)
          return loss, (fakes, terms, {**new, **d_new})
        (loss, (fakes, terms, new)), grads = jax.value_and_grad(total, has_aux=True)(g_params)
        d_new = {}
      for g in self.generators:
        params[g], opt_state[g] = self.update(state, g, grads[g])
      buffers.update(new)
      buffers.update(d_new)
      metrics.update(terms, loss_g=loss)
      return fakes

    def discriminators_step(fakes):
      for i, (src, tgt, _, d) in enumerate(self.directions):
        # A conditional discriminator's pool keeps (A, fake B) pairs, as the reference's.
        fake = self.d_input(d, jax.lax.stop_gradient(fakes[tgt]), x[src])
        if self.pool is not None:
          fake, extra[f"pool_{d}"] = self.pool.query(extra[f"pool_{d}"], fake, sub(40 + i))
        real_in = critic.augment(self.d_input(d, x[tgt], x[src]), sub(50 + i))
        fake_in = critic.augment(fake, sub(60 + i))
        u = critic.penalty_draws(sub(70 + i), fake.shape[0])

        def objective(p, d=d, real_in=real_in, fake_in=fake_in, u=u):
          if self.cycle:  # the reference's order, which BatchNorm's running statistics follow
            real_logits, new = self.judge(d, p, buffers[d], real_in)
            fake_logits, new = self.judge(d, p, new, fake_in)
          else:
            fake_logits, new = self.judge(d, p, buffers[d], fake_in)
            real_logits, new = self.judge(d, p, new, real_in)
          loss = mc.d_loss_scale * critic.d_loss(real_logits, fake_logits)
          terms = {}
          if critic.penalty_fn:
            d_fn = lambda v: self.judge(d, p, buffers[d], v)[0]  # pylint: disable=cell-var-from-loop
            # The condition (the source image, for a conditional D) is part of the input: one
            # function judges real and fake pairs.
            terms[f"penalty_{d}"] = critic.penalty(d_fn, d_fn, real_in, fake_in, u, state.step)
            loss += critic.weighted(terms[f"penalty_{d}"])
          return loss, (new, terms)

        params[d], opt_state[d], loss, (buffers[d], terms) = critic.update(
            self, state, d, objective)
        metrics[f"loss_{d}"] = loss
        metrics.update(terms)

    if mc.update_order == "g_first":
      fakes = generators_step({d: params[d] for *_, d in self.directions})
      discriminators_step(fakes)
    elif self.cycle:  # the cycle terms need the generators' full gradient after D's update
      discriminators_step(forward({g: params[g] for g in self.generators})[0])
      generators_step({d: params[d] for *_, d in self.directions})
    else:  # as the reference: one forward, D's step on its fakes, then G's through the new D
      fakes, g_vjp, new = jax.vjp(forward, {g: params[g] for g in self.generators},
                                  has_aux=True)
      discriminators_step(fakes)
      generators_step({d: params[d] for *_, d in self.directions}, (fakes, g_vjp, new))
    return self.finish(state, params, buffers, opt_state, metrics, extra)

  # --- evaluation and samples ---------------------------------------------------------------

  EVAL_CONDITION = ("A",)

  def eval_inputs(self, rng, n, condition):
    del rng, n
    return condition["A"]

  def eval_generate(self, state, inputs, frozen=None):
    del frozen  # the perceptual network is a training loss only
    return self.sample(state, self.images(inputs), jax.random.fold_in(state.rng, 0xE7A1))

  def eval_scores(self, state, condition, generated, frozen=None):
    """L1, PSNR and SSIM against the true target where the split has one (paired), and for
    CycleGAN the cycle error |G_B(G_A(A)) - A|."""
    del frozen
    from genjax.metrics import image  # pylint: disable=g-import-not-at-top
    out = {}
    if "B" in condition:
      b, span = self.images(condition["B"]), self.value_range[1] - self.value_range[0]
      out.update(l1=image.l1(generated, b), psnr=image.psnr(generated, b, span),
                 ssim=image.ssim(generated, b, span))
    if self.cycle:
      g = self.generators[1]
      back, _ = self.translate(g, state.ema.get(g, state.params[g]), state.buffers[g],
                               generated, None, train=False)
      out["cycle_l1"] = image.l1(jnp.clip(back.astype(jnp.float32), *self.value_range),
                                 self.images(condition["A"]))
    return out

  def sample(self, state: TrainState, a: Array, rng: Array | None) -> Array:
    """``G(a)`` (A -> B) in the value range: EMA weights where kept; dropout (``rng``) and batch
    statistics where ``sample_train_mode`` asks for the reference's test-time behaviour."""
    g = self.generators[0]
    params = state.ema.get(g, state.params[g])
    train = self.mc.sample_train_mode
    out, _ = self.translate(g, params, state.buffers[g], a, rng if train else None, train=train)
    return jnp.clip(out.astype(jnp.float32), *self.value_range)

  def sample_grids(self, state, examples, rng, frozen=None):
    """``translations``: rows of (A | G(A) | B), and for CycleGAN ``translations_BtoA``: rows
    of (B | G_B(B) | A)."""
    del frozen
    n = min(8, len(examples["A"]), len(examples["B"]))
    a, b = self.images(examples["A"][:n]), self.images(examples["B"][:n])
    grids = {"translations": self._rows([a, self.sample(state, a, rng), b])}
    if self.cycle:
      g = self.generators[1]
      out, _ = self.translate(g, state.ema.get(g, state.params[g]), state.buffers[g], b, None,
                              train=False)
      grids["translations_BtoA"] = self._rows(
          [b, jnp.clip(out.astype(jnp.float32), *self.value_range), a])
    return grids

  def _rows(self, columns: list[Array]) -> Array:
    """``[n, len(columns), H, W, C]``: one row per example; grayscale shown as RGB next to RGB."""
    c = max(col.shape[-1] for col in columns)
    columns = [jnp.repeat(col, c, -1) if col.shape[-1] != c else col for col in columns]
    return jnp.stack(columns, 1)

