"""The phase-decomposed transposed convolution equals lax.conv_transpose and PyTorch's."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from genjax.models import layers

# (input size, kernel, stride, padding, output_padding): every combination genjax's models use
# (DCGAN/AE/VAE decoders: 1x1 -> 4x4 with k4 s1 p0, then k4 s2 p1), plus odd ones that exercise
# kernels not divisible by the stride, output padding and stride 3.
CASES = [(1, 4, 1, 0, 0), (4, 4, 2, 1, 0), (8, 4, 2, 1, 0), (5, 4, 2, 1, 0), (5, 3, 2, 1, 1),
         (6, 3, 1, 1, 0), (7, 5, 3, 2, 0), (4, 4, 2, 0, 0), (3, 2, 2, 0, 0), (5, 3, 2, 0, 1),
         (3, 1, 1, 0, 0)]


def _reference(x, kernel, stride, padding, output_padding):
  """PyTorch's ConvTranspose2d semantics via lax.conv_transpose (zero-dilated input)."""
  k = kernel.shape[0]
  pad = ((k - 1 - padding, k - 1 - padding + output_padding),) * 2
  return jax.lax.conv_transpose(x, kernel[::-1, ::-1], (stride, stride), pad,
                                dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("size,k,stride,padding,out_pad", CASES)
def test_conv_transpose_matches_lax_forward_and_gradients(size, k, stride, padding, out_pad):
  rng = np.random.default_rng(size * 100 + k * 10 + stride)
  x = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 3, 5)), jnp.float32)
  ours = layers.conv_transpose(x, w, stride, padding, out_pad)
  ref = _reference(x, w, stride, padding, out_pad)
  assert ours.shape == ref.shape == (2, (size - 1) * stride - 2 * padding + k + out_pad,) * 1 + (
      ours.shape[2], 5)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
  # Gradients with respect to input and kernel, through a random cotangent.
  g = jnp.asarray(rng.normal(size=ref.shape), jnp.float32)
  grads = jax.grad(lambda x, w: jnp.vdot(layers.conv_transpose(x, w, stride, padding, out_pad),
                                         g), (0, 1))(x, w)
  ref_grads = jax.grad(lambda x, w: jnp.vdot(_reference(x, w, stride, padding, out_pad), g),
                       (0, 1))(x, w)
  for a, b in zip(grads, ref_grads):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("size,k,stride,padding,out_pad", CASES[:6])
def test_conv_transpose_module_matches_torch(size, k, stride, padding, out_pad):
  layer = layers.ConvTranspose(3, 4, k, stride, padding, out_pad, use_bias=True,
                               rngs=nnx.Rngs(0))
  assert layer.kernel[...].shape == (k, k, 3, 4)  # torch weight (in, out, kh, kw) transposed
  t = torch.nn.ConvTranspose2d(3, 4, k, stride, padding, out_pad)
  with torch.no_grad():
    t.weight.copy_(torch.from_numpy(np.array(layer.kernel[...]).transpose(2, 3, 0, 1)))
    t.bias.copy_(torch.linspace(-1, 1, 4))
  layer.bias[...] = jnp.linspace(-1, 1, 4)
  x = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
  expected = t(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(layer(jnp.asarray(x)), expected, rtol=1e-5, atol=1e-5)


def test_conv_transpose_bf16_compute_keeps_fp32_params():
  layer = layers.ConvTranspose(3, 4, 4, 2, 1, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  y = layer(jnp.ones((1, 4, 4, 3)))
  assert y.dtype == jnp.bfloat16 and layer.kernel[...].dtype == jnp.float32


def test_num_up_layers_rejects_sizes_that_do_not_divide():
  assert [layers.num_up_layers(s) for s in (8, 32, 64, 128)] == [1, 3, 4, 5]
  for bad in (28, 48, 4, 2):
    with pytest.raises(ValueError, match="power of two"):
      layers.num_up_layers(bad)


def test_batchnorm_has_pytorch_defaults():
  bn = layers.BatchNorm(3, rngs=nnx.Rngs(0))
  assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-5)
  assert list(itertools.chain(bn.scale.shape, bn.bias.shape)) == [3, 3]


def test_conv_transpose_impls_share_parameters_and_outputs():
  phase = layers.ConvTranspose(3, 4, 4, 2, 1, rngs=nnx.Rngs(0))
  lax_ = layers.ConvTranspose(3, 4, 4, 2, 1, impl="lax", rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(phase.kernel[...], lax_.kernel[...])
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 5, 3)), jnp.float32)
  np.testing.assert_allclose(phase(x), lax_(x), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="unknown transposed-convolution impl 'fft'"):
    layers.ConvTranspose(3, 4, 4, 2, 1, impl="fft", rngs=nnx.Rngs(0))

