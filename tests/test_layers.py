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


# --- GAN zoo blocks ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["conv", "conv_transpose", "linear"])
def test_spectral_norm_power_iteration_converges_to_the_largest_singular_value(kind):
  rngs = nnx.Rngs(0)
  if kind == "conv":
    layer, x = layers.SNConv(3, 6, 3, 1, 1, kernel_init=nnx.initializers.normal(1.0),
                             rngs=rngs), jnp.ones((2, 5, 5, 3))
  elif kind == "conv_transpose":
    layer, x = layers.SNConvTranspose(3, 6, 4, 2, 1, kernel_init=nnx.initializers.normal(1.0),
                                      rngs=rngs), jnp.ones((2, 4, 4, 3))
  else:
    layer, x = layers.SNLinear(7, 5, kernel_init=nnx.initializers.normal(1.0),
                               rngs=rngs), jnp.ones((2, 7))
  kernel = np.asarray(layer.kernel[...])
  top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
  assert abs(float(layer.sigma()) - top) / top > 1e-3  # the random start is not converged
  step = nnx.jit(lambda m, x: m(x))
  for _ in range(100):
    step(layer, x)
  assert float(layer.sigma()) == pytest.approx(top, rel=1e-4)
  # The normalised kernel has spectral norm 1.
  w = np.asarray(layer.normalized_kernel())
  assert np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0] == pytest.approx(
      1.0, rel=1e-4)


def test_spectral_norm_vector_is_a_buffer_updated_in_training_only():
  layer = layers.SNConv(2, 4, 3, rngs=nnx.Rngs(0))
  _, params, rest = nnx.split(layer, nnx.Param, ...)
  assert "u" not in params and "u" in rest  # in the train state's buffers, not optimized
  assert isinstance(layer.u, layers.PowerIteration) and not isinstance(layer.u, nnx.Param)
  x = jnp.ones((1, 6, 6, 2))
  u0 = np.asarray(layer.u[...])
  from genjax.methods.base import inference  # pylint: disable=g-import-not-at-top
  inference(layer)(x)
  np.testing.assert_array_equal(layer.u[...], u0)  # inference leaves the state alone
  layer(x)
  assert not np.allclose(layer.u[...], u0)
  # Gradients reach the kernel (through sigma) but not u.
  grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(layer)
  assert "u" not in grads and "kernel" in grads
  assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads))


def test_self_attention_starts_as_identity_and_matches_a_numpy_reference():
  block = layers.SelfAttention(16, spectral=False, rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4, 16)), jnp.float32)
  np.testing.assert_array_equal(block(x), x)  # gamma = 0
  block.gamma[...] = jnp.array(0.7)
  k = lambda conv: np.asarray(conv.kernel[...])[0, 0]  # pylint: disable=unnecessary-lambda-assignment
  xs = np.asarray(x).reshape(2, 12, 16)
  q, kk, v = xs @ k(block.f), xs @ k(block.g), xs @ k(block.h)
  logits = np.einsum("bic,bjc->bij", q, kk)
  attn = np.exp(logits - logits.max(-1, keepdims=True))
  attn /= attn.sum(-1, keepdims=True)
  expected = xs + 0.7 * ((attn @ v) @ k(block.o))
  np.testing.assert_allclose(block(x), expected.reshape(x.shape), rtol=1e-4, atol=1e-5)
  assert k(block.f).shape == (16, 2) and k(block.h).shape == (16, 8)


def test_conditional_batchnorm_is_batchnorm_with_a_per_class_affine():
  cbn = layers.ConditionalBatchNorm(3, 4, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(1)
  scale, shift = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
  cbn.scale.embedding[...] = jnp.asarray(scale, jnp.float32)
  cbn.shift.embedding[...] = jnp.asarray(shift, jnp.float32)
  x = rng.normal(size=(6, 2, 2, 3)).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 1, 1])
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  normed = (x - mean) / np.sqrt(var + 1e-5)
  expected = normed * scale[labels][:, None, None] + shift[labels][:, None, None]
  np.testing.assert_allclose(cbn(jnp.asarray(x), jnp.asarray(labels)), expected, rtol=1e-4,
                             atol=1e-5)
  assert layers.count_params(cbn) == 2 * 4 * 3  # no class-independent affine


def test_projection_head_closed_form():
  head = layers.ProjectionHead(5, 3, spectral=False, rngs=nnx.Rngs(0))
  phi = jnp.asarray(np.random.default_rng(2).normal(size=(4, 5)), jnp.float32)
  labels = jnp.array([0, 2, 1, 2])
  w, b = np.asarray(head.psi.kernel[...]), np.asarray(head.psi.bias[...])
  emb = np.asarray(head.embed.kernel[...])  # (classes, features)
  expected = (np.asarray(phi) @ w)[:, 0] + b[0] + np.sum(emb[labels] * np.asarray(phi), -1)
  np.testing.assert_allclose(head(phi, labels), expected, rtol=1e-5, atol=1e-5)


def test_weight_norm_linear_columns_have_norm_g():
  layer = layers.WeightNormLinear(6, 3, rngs=nnx.Rngs(0))
  layer.g[...] = jnp.array([1.0, 2.0, 0.5])
  w = np.asarray(layer(jnp.eye(6)) - layer.b[...])  # rows of the identity pick out the weights
  np.testing.assert_allclose(np.linalg.norm(w, axis=0), [1.0, 2.0, 0.5], rtol=1e-5)


def test_weight_norm_data_dependent_init_standardises_the_first_batch_then_stays():
  layer = layers.WeightNormLinear(6, 4, data_init=True, train_scale=False, rngs=nnx.Rngs(0))
  _, params, rest = nnx.split(layer, nnx.Param, ...)
  assert "g" not in params and {"scale", "shift", "initialized"} <= set(rest)
  rng = np.random.default_rng(0)
  x1 = jnp.asarray(rng.normal(2.0, 3.0, size=(64, 6)), jnp.float32)
  from genjax.methods.base import inference  # pylint: disable=g-import-not-at-top
  before = np.asarray(inference(layer)(x1))  # inference does not initialise
  assert not bool(layer.initialized[...])
  y1 = np.asarray(layer(x1))
  np.testing.assert_allclose(y1.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(y1.std(0), 1.0, rtol=1e-3)
  assert bool(layer.initialized[...]) and not np.allclose(before, y1)
  scale = np.asarray(layer.scale[...])
  x2 = jnp.asarray(rng.normal(size=(64, 6)), jnp.float32)
  layer(x2)  # a second batch changes nothing
  np.testing.assert_array_equal(layer.scale[...], scale)
  np.testing.assert_allclose(inference(layer)(x1), y1, rtol=1e-5, atol=1e-5)


def _bn_pair(features=6, **kw):
  """genjax's BatchNorm and nnx.BatchNorm with the same (perturbed) parameters and state."""
  ours = layers.BatchNorm(features, rngs=nnx.Rngs(0), **kw)
  ref = nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, scale_init=layers.dcgan_scale_init,
                      rngs=nnx.Rngs(0), **kw)
  bias = jnp.asarray(np.random.default_rng(7).normal(size=features), jnp.float32)
  for m in (ours, ref):
    m.bias[...] = bias
    m.mean[...] = jnp.full((features,), 0.3)
    m.var[...] = jnp.full((features,), 2.0)
  return ours, ref


def _bn_value_and_grads(module, x, g):
  """BatchNorm's training-mode output, the gradients of <y, g> in x, scale and bias (through a
  fresh jit) and the running averages it leaves."""
  graph, state = nnx.split(module)

  def loss(x, state):
    m = nnx.merge(graph, state)
    y = m(x)
    return jnp.vdot(y.astype(jnp.float32), g), (y, nnx.state(m, nnx.BatchStat))

  (_, (y, stats)), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(x, state)
  params = nnx.state(nnx.merge(graph, grads[1]), nnx.Param)
  return y, grads[0], params, stats


@pytest.mark.parametrize("shape", [(4, 5, 3, 6), (10, 6)])
def test_batch_norm_equals_nnx_batch_norm_forward_gradients_and_running_stats(shape):
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(2.0, 3.0, size=shape), jnp.float32)
  g = jnp.asarray(rng.normal(size=shape), jnp.float32)
  ours, ref = _bn_pair()
  assert type(ours) is not nnx.BatchNorm  # the fused path is under test
  for a, b in zip(jax.tree.leaves(_bn_value_and_grads(ours, x, g)),
                  jax.tree.leaves(_bn_value_and_grads(ref, x, g))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # Evaluation mode is nnx.BatchNorm's own path.
  np.testing.assert_array_equal(ours(x, use_running_average=True),
                                ref(x, use_running_average=True))


def test_batch_norm_bfloat16_computes_in_float32_and_rounds_once():
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(1.0, 2.0, size=(8, 4, 4, 6)), jnp.bfloat16)
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  ours, _ = _bn_pair(dtype=jnp.bfloat16)
  ref, _ = _bn_pair()
  y, dx, params, stats = _bn_value_and_grads(ours, x, g)
  ry, rdx, rparams, rstats = _bn_value_and_grads(ref, x.astype(jnp.float32), g)
  assert y.dtype == dx.dtype == jnp.bfloat16
  np.testing.assert_array_equal(y, ry.astype(jnp.bfloat16))  # one rounding of the f32 result
  # The gradients see y's cotangent rounded to bfloat16.
  for a, b in zip(jax.tree.leaves((dx, params)), jax.tree.leaves((rdx, rparams))):
    np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=0, atol=1e-2 * np.abs(b).max())
  for a, b in zip(jax.tree.leaves(stats), jax.tree.leaves(rstats)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_batch_norm_without_affine_equals_nnx():
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(6, 3, 3, 4)), jnp.float32)
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  ours = layers.FusedBatchNorm(4, use_scale=False, use_bias=False, momentum=0.9, epsilon=1e-5,
                               rngs=nnx.Rngs(0))
  ref = nnx.BatchNorm(4, use_scale=False, use_bias=False, momentum=0.9, epsilon=1e-5,
                      rngs=nnx.Rngs(0))
  for a, b in zip(jax.tree.leaves(_bn_value_and_grads(ours, x, g)),
                  jax.tree.leaves(_bn_value_and_grads(ref, x, g))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_batch_norm_under_pmap_uses_the_global_batch():
  """Synced over ``axis_name``: each device's output and input gradient are those of the whole
  batch normalised at once, and the parameter gradients sum to the whole batch's."""
  n = jax.local_device_count()
  rng = np.random.default_rng(6)
  x = jnp.asarray(rng.normal(1.0, 2.0, size=(n * 2, 3, 3, 4)), jnp.float32)
  g = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  ours, _ = _bn_pair(4, axis_name="d")
  _, ref = _bn_pair(4)
  graph, state = nnx.split(ours)

  def shard(x, g, state):
    def loss(x, state):
      return jnp.vdot(nnx.merge(graph, state)(x), g)
    dx, dstate = jax.grad(loss, (0, 1))(x, state)
    return nnx.merge(graph, state)(x), dx, nnx.state(nnx.merge(graph, dstate), nnx.Param)

  y, dx, dparams = jax.pmap(shard, axis_name="d", in_axes=(0, 0, None))(
      x.reshape(n, 2, 3, 3, 4), g.reshape(n, 2, 3, 3, 4), state)
  ry, rdx, rparams, _ = _bn_value_and_grads(ref, x, g)
  np.testing.assert_allclose(y.reshape(x.shape), ry, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx.reshape(x.shape), rdx, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(dparams), jax.tree.leaves(rparams)):
    np.testing.assert_allclose(a.sum(0), b, rtol=1e-5, atol=1e-5)


def test_batch_norm_second_order_gradient_equals_autodiff():
  """A gradient penalty differentiates BatchNorm's input gradient again."""
  rng = np.random.default_rng(8)
  x, scale, bias = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((6, 2, 2, 3), 3, 3))

  def plain(x, scale, bias):  # nnx.BatchNorm's training-mode arithmetic, left to autodiff
    mean, mean_sq = x.mean((0, 1, 2)), jnp.square(x).mean((0, 1, 2))
    var = jnp.maximum(0.0, mean_sq - jnp.square(mean))
    return (x - mean) * (jax.lax.rsqrt(var + 1e-5) * scale) + bias

  def penalty(bn):
    def f(scale, bias):
      dx = jax.grad(lambda x: jnp.sum(jnp.tanh(bn(x, scale, bias)) ** 3))(x)
      return jnp.sum(dx ** 2)
    return jax.jit(jax.grad(f, (0, 1)))(scale, bias)

  fused = lambda x, scale, bias: layers._batch_norm(x, scale, bias, 1e-5, None)[0]  # pylint: disable=protected-access
  for a, b in zip(penalty(fused), penalty(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
