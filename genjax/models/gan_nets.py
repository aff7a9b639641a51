"""Configurable DCGAN-style networks shared by the GAN zoo's families (not a family itself).

The families (sngan, sagan, cgan, acgan, infogan) differ only in the options they pass here:
spectral normalisation, self-attention, how the generator is conditioned on a class, and which
heads the discriminator has. All of them train with ``genjax.methods.adversarial``, which reads
their ``spec`` (:mod:`genjax.models.spec`).

Generator: ``ConvT(in, w*2^(n-1), 4, 1, 0)`` to 4x4, then ``n-1`` x ``[ConvT(4, 2, 1), norm,
ReLU]`` (self-attention after the stage that reaches ``attention_size``) and ``ConvT(w, C, 4, 2,
1)`` with tanh, where ``image_size = 4 * 2^n``: DCGAN's generator when nothing is switched on.

Discriminator: ``Conv(C, w, 4, 2, 1)``, LeakyReLU(0.2), then ``n-1`` x ``[Conv(4, 2, 1), norm,
LeakyReLU(0.2)]`` to 4x4 (self-attention after the stage that reaches ``attention_size``); the
flattened 4x4 map is the feature vector ``phi``. Heads on ``phi``: the real/fake ``logit``
(a linear map, i.e. DCGAN's last 4x4 conv), plus a class projection (cGAN), an auxiliary
classifier (AC-GAN) or InfoGAN's Q network. Returns a dict: ``logit`` (B,), ``features`` (B, F)
and the heads' outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import errors
from genjax.models import layers
from genjax.models.spec import Spec

Array = jax.Array
CONDITIONING = ("none", "concat", "cbn")  # generator: none, one-hot concatenated to z, cond. BN
G_NORMS = ("batch", "none")
D_NORMS = ("batch", "none")


class Generator(nnx.Module):
  """``(z (B, input_dim)[, labels (B,)]) -> image (B, S, S, C)`` in [-1, 1].

  Its ``spec`` gives ``latent_dim`` (Gaussian noise dimensions), ``num_classes`` (> 0:
  class-conditional, it takes ``labels``), ``num_categorical`` / ``num_continuous`` (InfoGAN
  codes appended to the noise: one categorical code with that many values, and that many
  U(-1, 1) codes).
  """

  def __init__(self, latent_dim: int, channels: int, image_size: int, width: int, *,
               norm: str = "batch", conditioning: str = "none", num_classes: int = 0,
               num_categorical: int = 0, num_continuous: int = 0, spectral: bool = False,
               attention_size: int = 0, axis_name=None, dtype=None, rngs: nnx.Rngs):
    errors.check_choice("generator norm", norm, G_NORMS)
    errors.check_choice("conditioning", conditioning, CONDITIONING)
    if (conditioning != "none") != (num_classes > 0):
      raise ValueError(f"conditioning={conditioning!r} needs num_classes > 0 (and none needs 0), "
                       f"got {num_classes}")
    n = layers.num_up_layers(image_size)
    self.num_classes, self.conditioning = num_classes, conditioning
    self.spec = Spec(takes=("labels",) if num_classes else (), latent_dim=latent_dim,
                     num_classes=num_classes, num_categorical=num_categorical,
                     num_continuous=num_continuous)
    in_dim = latent_dim + num_categorical + num_continuous + (
        num_classes if conditioning == "concat" else 0)
    chans = [width * 2 ** i for i in reversed(range(n))]
    self.convs, self.norms, self.attention = nnx.List(), nnx.List(), nnx.List()
    c_in, size = in_dim, 1
    for i, c in enumerate(chans):
      self.convs.append(layers.conv_transpose_layer(
          c_in, c, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, spectral=spectral, use_bias=False,
          dtype=dtype, rngs=rngs))
      size = 4 if i == 0 else size * 2
      if conditioning == "cbn":
        self.norms.append(layers.ConditionalBatchNorm(c, num_classes, axis_name=axis_name,
                                                      dtype=dtype, rngs=rngs))
      elif norm == "batch":
        self.norms.append(layers.BatchNorm(c, axis_name=axis_name, dtype=dtype, rngs=rngs))
      else:
        self.norms.append(layers.Identity())
      self.attention.append(layers.SelfAttention(c, spectral=spectral, dtype=dtype, rngs=rngs)
                            if size == attention_size else layers.Identity())
      c_in = c
    self.out = layers.conv_transpose_layer(c_in, channels, 4, 2, 1, spectral=spectral,
                                           use_bias=False, dtype=dtype, rngs=rngs)

  def __call__(self, z: Array, labels: Array | None = None) -> Array:
    if self.num_classes and labels is None:
      raise ValueError("this generator is class-conditional: pass labels")
    if self.conditioning == "concat":
      z = jnp.concatenate([z, jax.nn.one_hot(labels, self.num_classes, dtype=z.dtype)], -1)
    x = z.reshape(z.shape[0], 1, 1, -1)
    for conv, norm, attention in zip(self.convs, self.norms, self.attention):
      x = conv(x)
      x = norm(x, labels) if self.conditioning == "cbn" else norm(x)
      x = attention(nnx.relu(x))
    return jnp.tanh(self.out(x))


class Discriminator(nnx.Module):
  """``(image (B, S, S, C)[, labels (B,)]) -> {"logit", "features", heads...}``.

  Args:
    head: ``"none"``, ``"projection"`` (cGAN: ``logit += <embed(y), phi>``; needs labels) or
      ``"classifier"`` (AC-GAN: ``class_logits`` (B, num_classes)).
    num_categorical, num_continuous: InfoGAN's Q network (``Linear(F, q_width)``, LeakyReLU,
      ``Linear(q_width, categorical + continuous)``) giving ``code_logits`` and ``code_mean``.
  """

  HEADS = ("none", "projection", "classifier")

  def __init__(self, channels: int, image_size: int, width: int, *, norm: str = "batch",
               spectral: bool = False, attention_size: int = 0, head: str = "none",
               num_classes: int = 0, num_categorical: int = 0, num_continuous: int = 0,
               q_width: int = 128, axis_name=None, dtype=None, rngs: nnx.Rngs):
    errors.check_choice("discriminator norm", norm, D_NORMS)
    errors.check_choice("discriminator head", head, self.HEADS)
    if (head != "none") != (num_classes > 0):
      raise ValueError(f"head={head!r} needs num_classes > 0 (and none needs 0), got "
                       f"{num_classes}")
    n = layers.num_up_layers(image_size)
    self.head, self.num_classes = head, num_classes
    self.num_categorical, self.num_continuous = num_categorical, num_continuous
    self.spec = Spec(takes=("labels",) if head == "projection" else (),
                     returns=("logit", "features") +
                     (("class_logits",) if head == "classifier" else ()) +
                     (("code_logits", "code_mean") if num_categorical + num_continuous else ()))
    bias = norm == "none"  # without a norm after them the convs need their own biases
    self.first = layers.conv(channels, width, 4, 2, 1, spectral=spectral, use_bias=bias,
                             dtype=dtype, rngs=rngs)
    self.first_attention = (layers.SelfAttention(width, spectral=spectral, dtype=dtype,
                                                 rngs=rngs)
                            if image_size // 2 == attention_size else layers.Identity())
    self.convs, self.norms, self.attention = nnx.List(), nnx.List(), nnx.List()
    c, size = width, image_size // 2
    for _ in range(n - 1):
      self.convs.append(layers.conv(c, 2 * c, 4, 2, 1, spectral=spectral, use_bias=bias,
                                    dtype=dtype, rngs=rngs))
      self.norms.append(layers.BatchNorm(2 * c, axis_name=axis_name, dtype=dtype, rngs=rngs)
                        if norm == "batch" else layers.Identity())
      c, size = 2 * c, size // 2
      self.attention.append(layers.SelfAttention(c, spectral=spectral, dtype=dtype, rngs=rngs)
                            if size == attention_size else layers.Identity())
    features = c * 16
    if head == "projection":
      self.out = layers.ProjectionHead(features, num_classes, spectral=spectral, dtype=dtype,
                                       rngs=rngs)
    else:
      self.out = layers.linear(features, 1, spectral=spectral, dtype=dtype, rngs=rngs)
    self.classifier = (layers.linear(features, num_classes, spectral=spectral, dtype=dtype,
                                     rngs=rngs) if head == "classifier" else None)
    codes = num_categorical + num_continuous
    self.q = (nnx.List([layers.linear(features, q_width, spectral=spectral, dtype=dtype,
                                      rngs=rngs),
                        layers.linear(q_width, codes, spectral=spectral, dtype=dtype,
                                      rngs=rngs)]) if codes else None)

  def __call__(self, x: Array, labels: Array | None = None) -> dict[str, Array]:
    x = self.first_attention(nnx.leaky_relu(self.first(x), 0.2))
    for conv, norm, attention in zip(self.convs, self.norms, self.attention):
      x = attention(nnx.leaky_relu(norm(conv(x)), 0.2))
    phi = x.reshape(x.shape[0], -1)
    if self.head == "projection":
      if labels is None:
        raise ValueError("the projection discriminator needs labels")
      out = {"logit": self.out(phi, labels)}
    else:
      out = {"logit": self.out(phi)[:, 0]}
    out["features"] = phi
    if self.classifier is not None:
      out["class_logits"] = self.classifier(phi)
    if self.q is not None:
      h = nnx.leaky_relu(self.q[0](phi), 0.2)
      codes = self.q[1](h)
      out["code_logits"] = codes[:, :self.num_categorical]
      out["code_mean"] = codes[:, self.num_categorical:]
    return out
