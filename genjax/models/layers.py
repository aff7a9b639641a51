"""Shared building blocks for genjax models (Flax NNX).

Conventions shared by every model file:
- NHWC activations, kernels stored as (kh, kw, in, out).
- ``dtype`` is the compute dtype (e.g. bfloat16); parameters stay in ``param_dtype`` (float32).
- ``axis_name`` is set by the launcher under ``jax.pmap`` so that BatchNorm statistics are
  reduced over the global batch; models only pass it through.
- Padding follows PyTorch's integer semantics, so reference architectures and their parameter
  counts carry over one to one.
- The conv layers run on the kernels of their ``conv_backend`` field (a
  :class:`genjax.kernels.ConvBackend`, XLA's by default); models never set it: whoever builds
  the networks gives all their conv layers one backend with :func:`on_conv_backend`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Sequence, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import errors, kernels, parallel

Array = jax.Array
Dtype = Any
M = TypeVar("M")

# N(0, 0.02) for conv/linear weights and N(1, 0.02) for norm scales: the DCGAN paper's init,
# also used by pix2pix/CycleGAN.
dcgan_normal = nnx.initializers.normal(0.02)


def dcgan_scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _pair(v) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


def _correlate(x: Array, kernel: Array) -> Array:
  """Stride-1 "full" correlation: pads by kernel size - 1 on every side."""
  kh, kw = kernel.shape[:2]
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((kh - 1, kh - 1), (kw - 1, kw - 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@jax.custom_vjp
def _full_conv(x: Array, kernel: Array) -> Array:
  return _correlate(x, kernel)


def _full_conv_fwd(x, kernel):
  return _correlate(x, kernel), (x, kernel)


def _full_conv_bwd(res, g):
  # XLA:CPU lowers the kernel gradient of small-kernel convolutions (e.g. 2x2, the phase kernels of
  # a 4x4/stride-2 transposed conv) to a pathologically slow loop (34 s where a GEMM takes 0.15 s
  # for 64x16x16x256 -> 512 channels). Compute it as one GEMM per tap instead; the input gradient
  # is XLA's own, which is fast.
  x, kernel = res
  kh, kw = kernel.shape[:2]
  _, vjp_x = jax.vjp(lambda x_: _correlate(x_, kernel), x)
  (dx,) = vjp_x(g)
  xp = jnp.pad(x, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
  ho, wo = g.shape[1:3]
  dk = jnp.stack([
      jnp.stack([jnp.einsum("bhwc,bhwd->cd", xp[:, i:i + ho, j:j + wo], g,
                            preferred_element_type=jnp.float32) for j in range(kw)])
      for i in range(kh)])
  return dx, dk.astype(kernel.dtype)


_full_conv.defvjp(_full_conv_fwd, _full_conv_bwd)


def conv_transpose(x: Array, kernel: Array, stride: int | tuple[int, int] = 1,
                   padding: int | tuple[int, int] = 0,
                   output_padding: int | tuple[int, int] = 0) -> Array:
  """Transposed convolution with PyTorch's semantics, computed by phase decomposition.

  ``y[o] = sum_{i, t : o = i * stride - padding + t} x[i] * kernel[t]`` per spatial axis, with
  output size ``(H - 1) * stride - 2 * padding + k + output_padding`` (``torch.nn.ConvTranspose2d``
  with the kernel transposed to (kh, kw, in, out)).

  Instead of a zero-dilated input (``lax.conv_transpose``), whose kernel gradient XLA's CPU backend
  computes very slowly, the ``stride**2`` output phases are computed by one ordinary stride-1
  convolution with ``ceil(k / stride)``-tap kernels and ``stride**2 * out`` output channels,
  followed by depth-to-space and a crop. The result is exactly the same linear map, so its
  gradients are ordinary convolutions.

  Args:
    x: (B, H, W, Cin).
    kernel: (kh, kw, Cin, Cout).
    stride, padding, output_padding: ints or (h, w) pairs.
  """
  sy, sx = _pair(stride)
  py, px = _pair(padding)
  opy, opx = _pair(output_padding)
  kh, kw, cin, cout = kernel.shape
  b, h, w, _ = x.shape
  out_h, out_w = kernels.transposed_output_hw((h, w), (kh, kw), (sy, sx), (py, px), (opy, opx))
  if h == 1 and w == 1:
    # A 1x1 input (e.g. DCGAN's latent projection) is a matrix product: y[o] = x * kernel[o + p].
    y = jnp.einsum("bc,hwcd->bhwd", x[:, 0, 0, :], kernel)
    y = jnp.pad(y, ((0, 0), (0, max(0, out_h + py - kh)), (0, max(0, out_w + px - kw)), (0, 0)))
    return y[:, py:py + out_h, px:px + out_w, :]
  my, mx = -(-kh // sy), -(-kw // sx)
  k = jnp.pad(kernel, ((0, my * sy - kh), (0, mx * sx - kw), (0, 0), (0, 0)))
  # tap t = m * s + r  ->  (m, r); flip m so that the full convolution becomes a correlation.
  k = k.reshape(my, sy, mx, sx, cin, cout)[::-1, :, ::-1]
  k = k.transpose(0, 2, 4, 1, 3, 5).reshape(my, mx, cin, sy * sx * cout)
  z = _full_conv(x, k)
  hq, wq = h + my - 1, w + mx - 1
  z = z.reshape(b, hq, wq, sy, sx, cout).transpose(0, 1, 3, 2, 4, 5).reshape(b, hq * sy, wq * sx,
                                                                            cout)
  z = jnp.pad(z, ((0, 0), (0, max(0, out_h + py - hq * sy)), (0, max(0, out_w + px - wq * sx)),
                  (0, 0)))
  return z[:, py:py + out_h, px:px + out_w, :]


def lax_conv_transpose(x: Array, kernel: Array, stride: int | tuple[int, int] = 1,
                       padding: int | tuple[int, int] = 0,
                       output_padding: int | tuple[int, int] = 0) -> Array:
  """:func:`conv_transpose` by ``lax.conv_transpose`` (a zero-dilated input): the reference
  formulation, slow to differentiate on XLA:CPU; kept for comparisons and profiling."""
  (sy, sx), (py, px), (opy, opx) = _pair(stride), _pair(padding), _pair(output_padding)
  kh, kw = kernel.shape[:2]
  pads = ((kh - 1 - py, kh - 1 - py + opy), (kw - 1 - px, kw - 1 - px + opx))
  return jax.lax.conv_transpose(x, kernel[::-1, ::-1], (sy, sx), pads,
                                dimension_numbers=("NHWC", "HWIO", "NHWC"))


CONV_TRANSPOSE_IMPLS = {"phase": conv_transpose, "lax": lax_conv_transpose}


def transposed_conv(x: Array, kernel: Array, stride: int | tuple[int, int] = 1,
                    padding: int | tuple[int, int] = 0,
                    output_padding: int | tuple[int, int] = 0, *, impl: str = "phase",
                    backend: kernels.ConvBackend = kernels.XLA) -> Array:
  """:func:`conv_transpose` on ``backend``'s kernels: oneDNN's, or XLA's in the formulation
  ``impl`` names."""
  if backend.name == "onednn":
    return kernels.onednn_conv_transpose(x, kernel, _pair(stride), _pair(padding),
                                         _pair(output_padding), mesh=backend.mesh)
  return CONV_TRANSPOSE_IMPLS[impl](x, kernel, stride, padding, output_padding)


class _OnConvBackend(nnx.Module):
  """A conv layer: it runs on the kernels of its static ``conv_backend`` field, which
  :func:`on_conv_backend` sets (``nnx.view``) on all the conv layers of a network at once."""

  def set_view(self, conv_backend: kernels.ConvBackend | None = None):
    if conv_backend is not None:
      self.conv_backend = conv_backend


def on_conv_backend(module: M, backend: kernels.ConvBackend) -> M:
  """``module`` (a view sharing its arrays) with every conv layer in it on ``backend``'s
  kernels: how networks get the launcher's ``config.conv_backend``, resolved once."""
  return nnx.view(module, conv_backend=backend, raise_if_not_found=False)


class ConvTranspose(_OnConvBackend):
  """``torch.nn.ConvTranspose2d`` equivalent (same parameter count and semantics), NHWC.

  ``impl``: ``'phase'`` (:func:`conv_transpose`, the fast one) or ``'lax'``
  (:func:`lax_conv_transpose`), the formulation used on the ``'xla'`` conv backend; the
  parameters are the same either way.
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int],
               stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
               output_padding: int | tuple[int, int] = 0, *, use_bias: bool = True,
               kernel_init: Callable = dcgan_normal, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32, impl: str = "phase",
               conv_backend: kernels.ConvBackend = kernels.XLA, rngs: nnx.Rngs):
    errors.check_choice("transposed-convolution impl", impl, CONV_TRANSPOSE_IMPLS)
    self.impl, self.conv_backend = impl, conv_backend
    kh, kw = _pair(kernel_size)
    self.kernel = nnx.Param(kernel_init(rngs.params(), (kh, kw, in_features, out_features),
                                        param_dtype))
    self.bias = (nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None)
    self.stride, self.padding, self.output_padding = stride, padding, output_padding
    self.dtype = dtype

  def __call__(self, x: Array) -> Array:
    dtype = self.dtype or x.dtype
    y = transposed_conv(x.astype(dtype), self.kernel[...].astype(dtype), self.stride,
                        self.padding, self.output_padding, impl=self.impl,
                        backend=self.conv_backend)
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y


def conv2d(x: Array, kernel: Array, stride: tuple[int, int],
           padding: tuple[tuple[int, int], tuple[int, int]],
           precision: jax.lax.PrecisionLike = None, *,
           backend: kernels.ConvBackend = kernels.XLA) -> Array:
  """NHWC x HWIO convolution, explicit ((top, bottom), (left, right)) padding, on ``backend``'s
  kernels. ``precision`` is XLA's (e.g. HIGHEST: no TF32 on GPUs); oneDNN computes in the
  inputs' dtype."""
  if backend.name == "onednn":
    return kernels.onednn_conv(x, kernel, stride, padding, mesh=backend.mesh)
  return jax.lax.conv_general_dilated(x, kernel, stride, padding, precision=precision,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Conv(_OnConvBackend):
  """``torch.nn.Conv2d`` equivalent (integer padding), NHWC, kernel (kh, kw, in, out).

  The parameters, their initialisation and the keys it draws are ``nnx.Conv``'s, so checkpoints
  and seeds carry over; it runs on :func:`conv2d`'s kernels. ``dtype=None`` computes in the
  promoted dtype of the input and the kernel, as ``nnx.Conv`` does.
  """

  def __init__(self, in_features: int, out_features: int, kernel_size: int | tuple[int, int],
               stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, *,
               use_bias: bool = True, kernel_init: Callable = dcgan_normal,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32,
               precision: jax.lax.PrecisionLike = None,
               conv_backend: kernels.ConvBackend = kernels.XLA, rngs: nnx.Rngs):
    self.kernel = nnx.Param(kernel_init(rngs.params(), (*_pair(kernel_size), in_features,
                                                        out_features), param_dtype))
    if use_bias:
      rngs.params()  # nnx.Conv draws a key for its zero bias; so do we, for the same later draws
    self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None
    self.stride, self.padding, self.dtype = _pair(stride), _pair(padding), dtype
    self.precision, self.conv_backend = precision, conv_backend

  def __call__(self, x: Array) -> Array:
    kernel = self.kernel[...]
    dtype = self.dtype or jnp.result_type(x, kernel)
    (py, px) = self.padding
    y = conv2d(x.astype(dtype), kernel.astype(dtype), self.stride, ((py, py), (px, px)),
               self.precision, backend=self.conv_backend)
    return y if self.bias is None else y + self.bias[...].astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm(x: Array, scale: Array, bias: Array, epsilon: float, axis_name: str | None):
  """Training-mode BatchNorm over all axes but the last, statistics (and arithmetic) in float32:
  ``(y, mean, var)``, with ``y`` in ``x``'s dtype and the biased batch variance
  ``E[x^2] - E[x]^2`` (clipped at 0) as ``nnx.BatchNorm`` computes it."""
  return _batch_norm_fwd(x, scale, bias, epsilon, axis_name)[0]


def _batch_norm_fwd(x, scale, bias, epsilon, axis_name):
  axes = tuple(range(x.ndim - 1))
  xf = x.astype(jnp.float32)
  mean, mean_sq = xf.mean(axes), jnp.square(xf).mean(axes)
  if axis_name is not None:
    mean, mean_sq = jax.lax.pmean((mean, mean_sq), axis_name)
  var = jnp.maximum(0.0, mean_sq - jnp.square(mean))
  inv = jax.lax.rsqrt(var + epsilon)
  y = (xf - mean) * (inv * scale.astype(jnp.float32)) + bias.astype(jnp.float32)
  return (y.astype(x.dtype), mean, var), (x, mean, inv, scale, bias)


def _batch_norm_bwd(epsilon, axis_name, res, cotangents):
  """The closed-form input gradient, ``scale / sigma * (g - E[g] - xhat E[g xhat])``, from two
  reductions and one elementwise pass over the saved input (the statistics' own cotangents are
  not used: they only feed the running averages, under stop_gradient)."""
  del epsilon
  x, mean, inv, scale, bias = res
  axes = tuple(range(x.ndim - 1))
  g = cotangents[0].astype(jnp.float32)
  xhat = (x.astype(jnp.float32) - mean) * inv
  d_bias, d_scale = g.sum(axes), (g * xhat).sum(axes)
  count = x.size // x.shape[-1]
  mean_g, mean_gx = d_bias / count, d_scale / count
  if axis_name is not None:
    mean_g, mean_gx = jax.lax.pmean((mean_g, mean_gx), axis_name)
  dx = (inv * scale.astype(jnp.float32)) * (g - mean_g - xhat * mean_gx)
  return dx.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(bias.dtype)


_batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)


class FusedBatchNorm(nnx.BatchNorm):
  """``nnx.BatchNorm`` (the same parameters, state and running averages) whose training-mode
  normalisation is :func:`_batch_norm`, one function with a hand-written VJP. Autodiff of
  ``nnx.BatchNorm`` keeps float32 copies of bfloat16 activations and, with ``dtype`` bfloat16,
  normalises in bfloat16 arithmetic (the mean rounded to bfloat16); this computes in float32 and
  rounds once. DCGAN-64's step, serialised: 267-272 vs 280-285 ms in bfloat16, 405-412 vs
  414-422 ms in float32. Evaluation mode, masks, other feature axes and axis index groups take
  ``nnx.BatchNorm``'s own path."""

  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    if use_running_average is None:
      use_running_average = self.use_running_average
    if (use_running_average or mask is not None or self.axis not in (-1, x.ndim - 1) or
        self.axis_index_groups is not None or not self.use_fast_variance):
      return super().__call__(x, use_running_average, mask=mask)
    params = [p[...] for p in (self.scale, self.bias) if p is not None]
    dtype = self.dtype or jnp.result_type(x, self.mean[...], *params)
    ones = jnp.ones(x.shape[-1], self.param_dtype)
    scale = self.scale[...] if self.scale is not None else ones
    bias = self.bias[...] if self.bias is not None else jnp.zeros_like(ones)
    y, mean, var = _batch_norm(x.astype(dtype), scale, bias, self.epsilon, self.axis_name)
    self._update_running_stats(x, jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var))
    return y

  def _update_running_stats(self, x: Array, mean: Array, var: Array) -> None:
    """Moves the running averages towards the batch's ``mean`` and (biased) ``var`` of ``x``
    (the local shard under pmap) by ``1 - momentum``."""
    del x
    self.mean[...] = self.momentum * self.mean[...] + (1 - self.momentum) * mean
    self.var[...] = self.momentum * self.var[...] + (1 - self.momentum) * var


class TorchBatchNorm(FusedBatchNorm):
  """``torch.nn.BatchNorm2d`` exactly, running statistics included: momentum 0.1, eps 1e-5,
  ``running_var`` averages the *unbiased* batch variance (``n / (n - 1)`` times the biased one
  that normalises, ``n`` the global number of values per channel) and ``num_batches_tracked``
  counts the training-mode calls. Use it where PyTorch weight files must round-trip (the
  pix2pix/CycleGAN networks); :func:`BatchNorm` keeps Flax's biased running variance. The
  unbiased update is on the fused path (every call without a mask or other axes). ``epsilon``
  and ``affine`` are ``BatchNorm2d``'s ``eps`` and ``affine`` (False: no scale nor shift)."""

  def __init__(self, num_features: int, *, epsilon: float = 1e-5, affine: bool = True,
               axis_name: str | None = None, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32, scale_init: Callable = dcgan_scale_init,
               rngs: nnx.Rngs):
    super().__init__(num_features, momentum=0.9, epsilon=epsilon, use_scale=affine,
                     use_bias=affine, axis_name=axis_name, dtype=dtype,
                     param_dtype=param_dtype, scale_init=scale_init, rngs=rngs)
    self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

  def _update_running_stats(self, x: Array, mean: Array, var: Array) -> None:
    n = x.size // x.shape[-1]
    if self.axis_name is not None:
      n *= jax.lax.axis_size(self.axis_name)
    super()._update_running_stats(x, mean, var * (n / max(n - 1, 1)))
    self.num_batches_tracked[...] += 1


def BatchNorm(num_features: int, *, axis_name: str | None = None, dtype: Dtype | None = None,
              param_dtype: Dtype = jnp.float32, scale_init: Callable = dcgan_scale_init,
              rngs: nnx.Rngs) -> nnx.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5), synced over ``axis_name``."""
  return FusedBatchNorm(num_features, momentum=0.9, epsilon=1e-5, axis_name=axis_name,
                        dtype=dtype, param_dtype=param_dtype, scale_init=scale_init, rngs=rngs)


def Linear(in_features: int, out_features: int, *, use_bias: bool = True,
           kernel_init: Callable = dcgan_normal, dtype: Dtype | None = None,
           param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs) -> nnx.Linear:
  return nnx.Linear(in_features, out_features, use_bias=use_bias, kernel_init=kernel_init,
                    dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def num_up_layers(image_size: int, base: int = 4) -> int:
  """Number of x2 stages from ``base`` to ``image_size``; raises if it is not a power of two."""
  n = math.log2(image_size / base) if image_size >= base else -1
  if n < 1 or n != int(n):
    raise ValueError(f"image_size must be {base} times a power of two (e.g. 32 or 64), "
                     f"got {image_size}")
  return int(n)


def count_params(module: nnx.Module) -> int:
  """Number of trainable parameters (``nnx.Param``), as ``sum(p.numel())`` in PyTorch."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


class Identity(nnx.Module):

  def __call__(self, x: Array) -> Array:
    return x


class InstanceNorm(nnx.Module):
  """``torch.nn.InstanceNorm2d`` with its defaults (``affine=False``, no running statistics):
  each example's channels normalised over H, W by their own mean and biased variance, in float32
  whatever the input dtype; no parameters, no state."""

  def __init__(self, epsilon: float = 1e-5):
    self.epsilon = epsilon

  def __call__(self, x: Array) -> Array:
    xf = x.astype(jnp.float32)
    centred = xf - xf.mean((1, 2), keepdims=True)
    var = jnp.square(centred).mean((1, 2), keepdims=True)
    return (centred * jax.lax.rsqrt(var + self.epsilon)).astype(x.dtype)


def reflect_pad(x: Array, pad: int) -> Array:
  """``torch.nn.ReflectionPad2d(pad)`` of an NHWC array (the edge is not repeated)."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


def dropout(x: Array, rate: float, rng: Array | None, axis_name: str | None = None) -> Array:
  """Inverted dropout, ``torch.nn.Dropout(rate)`` in training mode: each element is kept with
  probability ``1 - rate`` and scaled by ``1 / (1 - rate)``. ``rng=None`` (or ``rate=0``) is the
  identity. The mask is drawn for the global batch (:func:`genjax.parallel.batch_random`), so a
  pmapped step drops the same elements as single-device training."""
  if rng is None or not rate:
    return x
  keep = parallel.batch_random(lambda key, shape: jax.random.bernoulli(key, 1.0 - rate, shape),
                              rng, x.shape, axis_name)
  return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


NORMS = ("batch", "none")


def _norm(kind: str, features: int, *, axis_name, dtype, rngs) -> nnx.Module:
  errors.check_choice("norm", kind, NORMS)
  if kind == "batch":
    return BatchNorm(features, axis_name=axis_name, dtype=dtype, rngs=rngs)
  return Identity()


class ConvDecoder(nnx.Module):
  """The DCGAN generator body: a latent vector up to an image by 4x4 stride-2 transposed convs.

  ``ConvT(latent, w*2^(n-1), 4, 1, 0)`` to 4x4, then ``n-1`` x ``[ConvT(/2 channels, 4, 2, 1),
  norm, ReLU]`` and a last ``ConvT(w, out_channels, 4, 2, 1)``, where ``image_size = 4 * 2^n``.
  Returns the pre-activation output (the caller applies tanh/sigmoid as its likelihood needs).
  ``conv_transpose`` picks :class:`ConvTranspose`'s ``impl``. The inner convs have biases only
  when no norm follows them (``norm="none"``).
  """

  def __init__(self, latent_dim: int, out_channels: int, image_size: int, width: int = 64, *,
               norm: str = "batch", out_bias: bool = False, axis_name: str | None = None,
               dtype: Dtype | None = None, conv_transpose: str = "phase", rngs: nnx.Rngs):
    n = num_up_layers(image_size)
    chans = [width * 2 ** i for i in reversed(range(n))]  # e.g. 512, 256, 128, 64
    self.blocks = nnx.List()
    c_in = latent_dim
    for i, c in enumerate(chans):
      conv = ConvTranspose(c_in, c, 4, 1 if i == 0 else 2, 0 if i == 0 else 1,
                           use_bias=norm == "none", dtype=dtype, impl=conv_transpose, rngs=rngs)
      self.blocks.append(nnx.List([conv, _norm(norm, c, axis_name=axis_name, dtype=dtype,
                                               rngs=rngs)]))
      c_in = c
    self.out = ConvTranspose(c_in, out_channels, 4, 2, 1, use_bias=out_bias, dtype=dtype,
                             impl=conv_transpose, rngs=rngs)

  def __call__(self, z: Array) -> Array:
    x = z.reshape(z.shape[0], 1, 1, -1)
    for conv, norm in self.blocks:
      x = nnx.relu(norm(conv(x)))
    return self.out(x)


class ConvEncoder(nnx.Module):
  """The DCGAN discriminator body: an image down to a vector by 4x4 stride-2 convs.

  ``Conv(C, w, 4, 2, 1)``, LeakyReLU(0.2), then ``n-1`` x ``[Conv(x2 channels, 4, 2, 1), norm,
  LeakyReLU(0.2)]`` to 4x4 and a last ``Conv(w*2^(n-1), out_features, 4, 1, 0)``; returns
  ``(B, out_features)``. Bias-free convs as in pytorch/examples, except with ``norm="none"``:
  then every conv has a bias, since a bias-free LeakyReLU network is positively homogeneous
  (``f(c x) = c f(x)``) and scores all near-zero images alike.
  """

  def __init__(self, in_channels: int, out_features: int, image_size: int, width: int = 64, *,
               norm: str = "batch", out_bias: bool = False, axis_name: str | None = None,
               dtype: Dtype | None = None, rngs: nnx.Rngs):
    n = num_up_layers(image_size)
    bias = norm == "none"
    self.first = Conv(in_channels, width, 4, 2, 1, use_bias=bias, dtype=dtype, rngs=rngs)
    self.blocks = nnx.List()
    c = width
    for _ in range(n - 1):
      self.blocks.append(nnx.List([
          Conv(c, 2 * c, 4, 2, 1, use_bias=bias, dtype=dtype, rngs=rngs),
          _norm(norm, 2 * c, axis_name=axis_name, dtype=dtype, rngs=rngs)]))
      c *= 2
    self.out = Conv(c, out_features, 4, 1, 0, use_bias=out_bias, dtype=dtype, rngs=rngs)

  def body(self, x: Array) -> Array:
    """The last 4x4 feature map, (B, 4, 4, w*2^(n-1)), before the output conv."""
    x = nnx.leaky_relu(self.first(x), 0.2)
    for conv, norm in self.blocks:
      x = nnx.leaky_relu(norm(conv(x)), 0.2)
    return x

  def __call__(self, x: Array) -> Array:
    return self.out(self.body(x)).reshape(x.shape[0], -1)


class MLP(nnx.Module):
  """A fully connected network between tensors: flattens each example, ``Linear`` layers of
  ``hidden`` widths with tanh between them (none after the last), and reshapes the output to
  ``out_shape``. Glorot-uniform weights, zero biases (Burda et al. 2016's MLP VAE)."""

  def __init__(self, in_features: int, hidden: Sequence[int], out_shape: Sequence[int], *,
               dtype: Dtype | None = None, rngs: nnx.Rngs):
    self.out_shape = tuple(out_shape)
    widths = [in_features, *hidden, math.prod(self.out_shape)]
    self.layers = nnx.List([
        Linear(a, b, kernel_init=nnx.initializers.xavier_uniform(), dtype=dtype, rngs=rngs)
        for a, b in zip(widths[:-1], widths[1:])])

  def __call__(self, x: Array) -> Array:
    x = x.reshape(x.shape[0], -1)
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = jnp.tanh(x)
    return x.reshape(x.shape[0], *self.out_shape)


# --- GAN zoo blocks: spectral normalisation, self-attention, conditioning ----------------------

class PowerIteration(nnx.Variable):
  """The left singular vector estimate of spectral normalisation: state, not a parameter, so it
  lives in the train state's ``buffers`` (checkpointed, never given to the optimizer)."""


def _l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  return x / jnp.sqrt(jnp.sum(jnp.square(x)) + eps)


def spectral_normalize(kernel: Array, u: Array, num_iterations: int = 1
                       ) -> tuple[Array, Array, Array]:
  """``(kernel / sigma, new u, sigma)`` with sigma estimated by power iteration.

  The kernel is seen as the matrix ``M = kernel.reshape(-1, out)`` (fan-in by output features,
  the transpose of PyTorch's ``weight.reshape(out, -1)``); ``u`` (out,) carries the estimate of
  its top right singular vector across calls. Each iteration is ``v = Mu/|Mu|, u = M^T v/|M^T v|``
  and ``sigma = v^T M u`` (Miyato et al. 2018, algorithm 1). With ``num_iterations=0`` the stored
  ``u`` is used as it is (inference). Gradients do not flow through ``u`` and ``v``.
  """
  m = kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)
  u = u.astype(jnp.float32)
  for _ in range(num_iterations):
    v = _l2_normalize(m @ u)
    u = _l2_normalize(m.T @ v)
  u = jax.lax.stop_gradient(u)
  v = jax.lax.stop_gradient(_l2_normalize(m @ u))
  sigma = v @ (m @ u)
  return (kernel / sigma.astype(kernel.dtype)), u, sigma


class _SpectralKernel(nnx.Module):
  """Mixin: ``self.kernel`` (Param, out features last) divided by its spectral norm.

  In training mode every call advances the power iteration and stores ``u``; under
  ``nnx.view(module, use_running_average=True)`` (genjax's inference mode) the stored ``u`` is
  used unchanged, so evaluation does not alter the state.
  """

  def _init_spectral(self, kernel_shape: tuple[int, ...], *, use_bias: bool,
                     kernel_init: Callable, num_iterations: int, dtype: Dtype | None,
                     param_dtype: Dtype, rngs: nnx.Rngs):
    """The kernel (out features last), an optional zero bias and the power-iteration state."""
    out_features = kernel_shape[-1]
    self.kernel = nnx.Param(kernel_init(rngs.params(), kernel_shape, param_dtype))
    self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else None
    self.dtype = dtype
    self.u = PowerIteration(_l2_normalize(jax.random.normal(rngs.params(), (out_features,))))
    self.num_iterations = num_iterations
    self.use_running_average = False

  def set_view(self, use_running_average: bool | None = None):
    if use_running_average is not None:
      self.use_running_average = use_running_average

  def normalized_kernel(self) -> Array:
    iterations = 0 if self.use_running_average else self.num_iterations
    w, u, _ = spectral_normalize(self.kernel[...], self.u[...], iterations)
    if iterations:
      self.u[...] = u
    return w

  def sigma(self) -> Array:
    """The current spectral-norm estimate (no update)."""
    return spectral_normalize(self.kernel[...], self.u[...], 0)[2]


class SNConv(_SpectralKernel, _OnConvBackend):
  """A ``Conv`` (PyTorch-style integer padding) whose kernel is spectrally normalised."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, stride: int = 1,
               padding: int = 0, *, use_bias: bool = True, kernel_init: Callable = dcgan_normal,
               num_iterations: int = 1, dtype: Dtype | None = None,
               param_dtype: Dtype = jnp.float32,
               conv_backend: kernels.ConvBackend = kernels.XLA, rngs: nnx.Rngs):
    self._init_spectral((*_pair(kernel_size), in_features, out_features), use_bias=use_bias,
                        kernel_init=kernel_init, num_iterations=num_iterations, dtype=dtype,
                        param_dtype=param_dtype, rngs=rngs)
    self.stride, self.padding = _pair(stride), _pair(padding)
    self.conv_backend = conv_backend

  def set_view(self, use_running_average: bool | None = None,
               conv_backend: kernels.ConvBackend | None = None):
    _SpectralKernel.set_view(self, use_running_average)
    _OnConvBackend.set_view(self, conv_backend)

  def _apply(self, x: Array, kernel: Array) -> Array:
    (py, px) = self.padding
    return conv2d(x, kernel, self.stride, ((py, py), (px, px)), backend=self.conv_backend)

  def __call__(self, x: Array) -> Array:
    dtype = self.dtype or x.dtype
    y = self._apply(x.astype(dtype), self.normalized_kernel().astype(dtype))
    return y if self.bias is None else y + self.bias[...].astype(dtype)


class SNConvTranspose(SNConv):
  """A ``ConvTranspose`` (PyTorch semantics) whose kernel is spectrally normalised."""

  def _apply(self, x: Array, kernel: Array) -> Array:
    return transposed_conv(x, kernel, self.stride, self.padding, backend=self.conv_backend)


class SNLinear(_SpectralKernel):
  """A ``Linear`` whose (in, out) kernel is spectrally normalised."""

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
               kernel_init: Callable = dcgan_normal, num_iterations: int = 1,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    self._init_spectral((in_features, out_features), use_bias=use_bias, kernel_init=kernel_init,
                        num_iterations=num_iterations, dtype=dtype, param_dtype=param_dtype,
                        rngs=rngs)

  def __call__(self, x: Array) -> Array:
    dtype = self.dtype or x.dtype
    y = x.astype(dtype) @ self.normalized_kernel().astype(dtype)
    return y if self.bias is None else y + self.bias[...].astype(dtype)


def conv(in_features: int, out_features: int, kernel_size: int, stride: int = 1,
         padding: int = 0, *, spectral: bool = False, **kwargs) -> nnx.Module:
  """``Conv`` or, with ``spectral``, ``SNConv``."""
  return (SNConv if spectral else Conv)(in_features, out_features, kernel_size, stride, padding,
                                        **kwargs)


def conv_transpose_layer(in_features: int, out_features: int, kernel_size: int, stride: int = 1,
                         padding: int = 0, *, spectral: bool = False, **kwargs) -> nnx.Module:
  """``ConvTranspose`` or, with ``spectral``, ``SNConvTranspose``."""
  return (SNConvTranspose if spectral else ConvTranspose)(in_features, out_features, kernel_size,
                                                          stride, padding, **kwargs)


def linear(in_features: int, out_features: int, *, spectral: bool = False,
           **kwargs) -> nnx.Module:
  """``Linear`` or, with ``spectral``, ``SNLinear``."""
  return (SNLinear if spectral else Linear)(in_features, out_features, **kwargs)


class SelfAttention(nnx.Module):
  """SAGAN's self-attention block (Zhang et al. 2019), NHWC.

  ``f, g = 1x1 convs to C/8`` (queries, keys), ``h = 1x1 conv to C/2`` (values), attention
  ``softmax_j(f_i . g_j)`` over all positions, a 1x1 conv ``o`` back to C, and
  ``y = x + gamma * o(attention @ h)`` with the learnt scalar ``gamma`` starting at 0, so the
  block starts as the identity. All convs are spectrally normalised when ``spectral``.
  """

  def __init__(self, features: int, *, spectral: bool = True, dtype: Dtype | None = None,
               rngs: nnx.Rngs):
    qk, v = max(1, features // 8), max(1, features // 2)
    kw = dict(spectral=spectral, use_bias=False, kernel_init=nnx.initializers.xavier_uniform(),
              dtype=dtype, rngs=rngs)
    self.f = conv(features, qk, 1, **kw)
    self.g = conv(features, qk, 1, **kw)
    self.h = conv(features, v, 1, **kw)
    self.o = conv(v, features, 1, **kw)
    self.gamma = nnx.Param(jnp.zeros((), jnp.float32))

  def __call__(self, x: Array) -> Array:
    b, h, w, _ = x.shape
    q = self.f(x).reshape(b, h * w, -1)
    k = self.g(x).reshape(b, h * w, -1)
    v = self.h(x).reshape(b, h * w, -1)
    attn = jax.nn.softmax(jnp.einsum("bic,bjc->bij", q, k).astype(jnp.float32), axis=-1)
    out = jnp.einsum("bij,bjc->bic", attn.astype(v.dtype), v).reshape(b, h, w, -1)
    return x + self.gamma[...].astype(x.dtype) * self.o(out)


class ConditionalBatchNorm(nnx.Module):
  """Class-conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018): BatchNorm without
  its own affine, then a per-class scale (initialised to 1) and shift (initialised to 0)."""

  def __init__(self, features: int, num_classes: int, *, axis_name: str | None = None,
               dtype: Dtype | None = None, rngs: nnx.Rngs):
    self.bn = FusedBatchNorm(features, use_scale=False, use_bias=False, momentum=0.9,
                             epsilon=1e-5, axis_name=axis_name, dtype=dtype, rngs=rngs)
    self.scale = nnx.Embed(num_classes, features, embedding_init=nnx.initializers.ones,
                           rngs=rngs)
    self.shift = nnx.Embed(num_classes, features, embedding_init=nnx.initializers.zeros,
                           rngs=rngs)

  def __call__(self, x: Array, labels: Array) -> Array:
    y = self.bn(x)
    expand = (slice(None),) + (None,) * (x.ndim - 2) + (slice(None),)
    return (y * self.scale(labels)[expand].astype(y.dtype) +
            self.shift(labels)[expand].astype(y.dtype))


class ProjectionHead(nnx.Module):
  """The projection discriminator's output (Miyato & Koyama 2018):
  ``logit = psi(phi) + <embed(y), phi>`` for features ``phi`` (B, F) and labels ``y`` (B,).

  The class embedding is a (spectrally normalised, when ``spectral``) linear map of the one-hot
  label, as in the paper.
  """

  def __init__(self, features: int, num_classes: int, *, spectral: bool = True,
               dtype: Dtype | None = None, rngs: nnx.Rngs):
    self.num_classes = num_classes
    self.psi = linear(features, 1, spectral=spectral, dtype=dtype, rngs=rngs)
    self.embed = linear(num_classes, features, spectral=spectral, use_bias=False,
                        kernel_init=nnx.initializers.xavier_uniform(), dtype=dtype, rngs=rngs)

  def __call__(self, features: Array, labels: Array) -> Array:
    onehot = jax.nn.one_hot(labels, self.num_classes, dtype=features.dtype)
    return self.psi(features)[:, 0] + jnp.sum(self.embed(onehot) * features, axis=-1)


class DataInit(nnx.Variable):
  """Per-unit scale and shift of a weight-normalised layer, set from its first training batch
  (data-dependent initialisation); state, not parameters, so they live in ``buffers``."""


class WeightNormLinear(nnx.Module):
  """``y = x (v / |v|_col) g + b``: weight normalisation (Salimans & Kingma 2016) of a dense
  layer, as in the Improved-GAN networks.

  With ``data_init``, the first call in training mode also sets a per-unit scale ``1/std`` and
  shift ``-mean/std`` of ``x (v / |v|_col)`` over that batch (over the global batch under pmap),
  so the layer starts with standardised outputs; both are then fixed (``DataInit`` buffers).
  ``train_scale=False`` drops the trainable ``g``, so the unit's scale stays the data-dependent
  one (Improved-GAN's hidden layers), which keeps e.g. the ratio to added Gaussian noise fixed.
  """

  def __init__(self, in_features: int, out_features: int, *, init_scale: float = 0.05,
               data_init: bool = False, train_scale: bool = True, axis_name: str | None = None,
               dtype: Dtype | None = None, param_dtype: Dtype = jnp.float32, rngs: nnx.Rngs):
    self.v = nnx.Param(init_scale * jax.random.normal(rngs.params(), (in_features, out_features),
                                                      param_dtype))
    self.g = nnx.Param(jnp.ones((out_features,), param_dtype)) if train_scale else None
    self.b = nnx.Param(jnp.zeros((out_features,), param_dtype))
    self.dtype, self.axis_name, self.data_init = dtype, axis_name, data_init
    if data_init:
      self.scale = DataInit(jnp.ones((out_features,), jnp.float32))
      self.shift = DataInit(jnp.zeros((out_features,), jnp.float32))
      self.initialized = DataInit(jnp.zeros((), jnp.bool_))
      self.use_running_average = False

  def set_view(self, use_running_average: bool | None = None):
    if use_running_average is not None and self.data_init:
      self.use_running_average = use_running_average

  def __call__(self, x: Array) -> Array:
    dtype = self.dtype or x.dtype
    v = self.v[...]
    w = v / jnp.sqrt(jnp.sum(jnp.square(v), 0) + 1e-12)
    if self.g is not None:
      w = w * self.g[...]
    y = x.astype(dtype) @ w.astype(dtype)
    if self.data_init:
      scale, shift = self.scale[...], self.shift[...]
      if not self.use_running_average:
        y32 = jax.lax.stop_gradient(y.astype(jnp.float32))
        mean = jnp.mean(y32, 0)
        sq = jnp.mean(jnp.square(y32), 0)
        if self.axis_name is not None:
          mean, sq = jax.lax.pmean((mean, sq), self.axis_name)
        inv_std = jax.lax.rsqrt(jnp.maximum(sq - jnp.square(mean), 0.0) + 1e-8)
        done = self.initialized[...]
        scale = jnp.where(done, scale, inv_std)
        shift = jnp.where(done, shift, -mean * inv_std)
        self.scale[...], self.shift[...] = scale, shift
        self.initialized[...] = jnp.ones((), jnp.bool_)
      y = y * scale.astype(dtype) + shift.astype(dtype)
    return y + self.b[...].astype(dtype)
