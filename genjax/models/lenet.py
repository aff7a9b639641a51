"""Deep SVDD's LeNet-type networks (Ruff et al., ICML 2018) for MNIST-like images.

The encoder is the reference's ``MNIST_LeNet`` (lukasruff/Deep-SVDD-PyTorch): two stages of
``conv 5x5 (pad 2) -> BatchNorm -> LeakyReLU -> 2x2 max-pool`` with 8 and 4 channels, then a
linear map to the ``rep_dim``-d representation. Every layer is bias-free and the BatchNorms
have no affine parameters (eps 1e-4): with a bias (or a BatchNorm shift) the network could map
every input to the hypersphere's centre by zeroing its weights, the trivial solution the paper
rules out. 7,272 parameters at 28x28 (tested against the reference's layer shapes).

The autoencoder (``MNIST_LeNet_Autoencoder``) pre-trains that encoder: the code is reshaped to
``rep_dim / 16`` maps of 4x4 and decoded by ``upsample x2 (nearest) -> transposed conv 5x5`` three
times (paddings 2, 3, 2: 4 -> 8 -> 14 -> 28 px) with the same BatchNorms and LeakyReLUs between,
and a sigmoid: the decoder's output is an image in [0, 1], the mean of a Gaussian likelihood
(the reference's squared error), 1,200 parameters more. Deep SVDD's network and the
autoencoder's encoder have the same parameter names (``encoder/...``), which is how a Deep SVDD
run takes the pre-trained encoder (``config.init.from_run``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from genjax.models import layers
from genjax.models.spec import Spec

METHOD = "one_class"

# torch.nn.Conv2d/Linear's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_torch_uniform = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
_CHANNELS = (8, 4)


def _batch_norm(features: int, *, axis_name, dtype, rngs) -> nnx.Module:
  """``nn.BatchNorm2d(features, eps=1e-4, affine=False)``: running statistics only."""
  return layers.TorchBatchNorm(features, epsilon=1e-4, affine=False, axis_name=axis_name,
                               dtype=dtype, rngs=rngs)


class LeNetEncoder(nnx.Module):
  """image (B, H, W, C) -> code (B, rep_dim); H and W multiples of 4."""

  def __init__(self, image_shape, rep_dim: int, *, axis_name=None, dtype=None,
               rngs: nnx.Rngs):
    h, w, c_in = image_shape
    if h % 4 or w % 4:
      raise ValueError(f"the LeNet encoder pools twice by 2: it needs image sides that are "
                       f"multiples of 4, got {h}x{w}")
    self.convs = nnx.List()
    self.norms = nnx.List()
    for c_out in _CHANNELS:
      self.convs.append(layers.Conv(c_in, c_out, 5, 1, 2, use_bias=False,
                                    kernel_init=_torch_uniform, dtype=dtype, rngs=rngs))
      self.norms.append(_batch_norm(c_out, axis_name=axis_name, dtype=dtype, rngs=rngs))
      c_in = c_out
    self.fc = layers.Linear(c_in * (h // 4) * (w // 4), rep_dim, use_bias=False,
                            kernel_init=_torch_uniform, dtype=dtype, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for conv, norm in zip(self.convs, self.norms):
      x = nnx.max_pool(jax.nn.leaky_relu(norm(conv(x))), (2, 2), (2, 2))
    # PyTorch flattens (C, H, W): the same order keeps fc's weights interchangeable with it.
    x = jnp.transpose(x, (0, 3, 1, 2))
    return self.fc(x.reshape(x.shape[0], -1))


class DeepSVDDNet(nnx.Module):
  """Deep SVDD's φ: image -> representation (B, rep_dim), whose distance to the centre scores
  anomalies."""

  def __init__(self, image_shape, rep_dim: int, *, axis_name=None, dtype=None,
               rngs: nnx.Rngs):
    self.rep_dim = rep_dim
    self.spec = Spec()
    self.encoder = LeNetEncoder(image_shape, rep_dim, axis_name=axis_name, dtype=dtype,
                                rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)


def _upsample(x: jax.Array) -> jax.Array:
  """``F.interpolate(x, scale_factor=2)`` (nearest)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class LeNetAutoencoder(nnx.Module):
  """The pre-training autoencoder: ``encode`` as :class:`DeepSVDDNet`, ``decode`` to images in
  [0, 1] (28x28 only, as the reference's)."""

  def __init__(self, image_shape, rep_dim: int, *, axis_name=None, dtype=None,
               rngs: nnx.Rngs):
    h, w, channels = image_shape
    if (h, w) != (28, 28) or rep_dim % 16:
      raise ValueError(f"the LeNet autoencoder decodes 28x28 images from rep_dim/16 maps of "
                       f"4x4: it needs 28x28 images and a rep_dim divisible by 16, got {h}x{w} "
                       f"and rep_dim={rep_dim}")
    self.rep_dim = rep_dim
    self.spec = Spec(returns=("recon", "z"))
    self.encoder = LeNetEncoder(image_shape, rep_dim, axis_name=axis_name, dtype=dtype,
                                rngs=rngs)
    c_in = rep_dim // 16
    self.deconvs = nnx.List()
    self.norms = nnx.List()
    for c_out, pad in zip((*_CHANNELS[::-1], channels), (2, 3, 2)):
      self.deconvs.append(layers.ConvTranspose(c_in, c_out, 5, 1, pad, use_bias=False,
                                               kernel_init=_torch_uniform, dtype=dtype,
                                               rngs=rngs))
      if c_out != channels:
        self.norms.append(_batch_norm(c_out, axis_name=axis_name, dtype=dtype, rngs=rngs))
      c_in = c_out

  def encode(self, x: jax.Array) -> jax.Array:
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    x = z.reshape(z.shape[0], -1, 4, 4).transpose(0, 2, 3, 1)  # PyTorch's view(B, C, 4, 4)
    x = _upsample(jax.nn.leaky_relu(x))
    for deconv, norm in zip(self.deconvs, self.norms):
      x = _upsample(jax.nn.leaky_relu(norm(deconv(x))))
    return jax.nn.sigmoid(self.deconvs[-1](x))

  def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> dict[str, jax.Array]:
    del rng  # deterministic
    z = self.encode(x)
    return {"recon": self.decode(z), "z": z}


def build(image_shape, *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          rep_dim: int = 32) -> dict[str, nnx.Module]:
  """Deep SVDD's network, ``model``."""
  return {"model": DeepSVDDNet(image_shape, rep_dim, axis_name=axis_name, dtype=dtype,
                               rngs=rngs)}
