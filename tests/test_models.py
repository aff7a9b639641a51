"""Model families: shapes, exact reference parameter counts, and PyTorch equivalence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from genjax import models
from genjax.models import dcgan
from genjax.models import layers


def test_dcgan64_parameter_counts_match_pytorch_examples():
  nets = nnx.eval_shape(lambda: dcgan.build((64, 64, 3), rngs=nnx.Rngs(0), latent_dim=100,
                                            ngf=64, ndf=64))
  assert layers.count_params(nets["generator"]) == 3_576_704
  assert layers.count_params(nets["discriminator"]) == 2_765_568


@pytest.mark.parametrize("family", sorted(models.FAMILIES))
@pytest.mark.parametrize("shape", [(32, 32, 1), (64, 64, 3)])
def test_output_shapes(family, shape):
  build = lambda: models.get(family).build(shape, rngs=nnx.Rngs(0))  # pylint: disable=unnecessary-lambda-assignment
  x = jnp.zeros((2, *shape))
  if family == "dcgan":
    assert jax.eval_shape(lambda: build()["generator"](jnp.zeros((2, 100)))).shape == (2, *shape)
    out = jax.eval_shape(lambda: build()["discriminator"](x))
    assert out["logit"].shape == (2,)
    assert out["features"].shape == (2, 4 * 4 * 64 * 2 ** (len(build()["discriminator"].body.blocks)))
  elif models.get(family).METHOD == "adversarial":  # the GAN zoo
    kw = models.defaults(family)
    z = jnp.zeros((2, kw["latent_dim"] + kw.get("num_categorical", 0) +
                   kw.get("num_continuous", 0)))
    labels = jnp.zeros((2,), jnp.int32)
    cond = family in ("cgan", "acgan")
    g_args = (z, labels) if cond else (z,)
    assert jax.eval_shape(lambda: build()["generator"](*g_args)).shape == (2, *shape)
    out = jax.eval_shape(lambda: build()["discriminator"](x, *((labels,) if cond else ())))
    assert out["logit"].shape == (2,) and out["features"].shape[0] == 2
    if family in ("acgan", "sgan"):
      assert out["class_logits"].shape == (2, 10)
    if family == "infogan":
      assert out["code_logits"].shape == (2, 10) and out["code_mean"].shape == (2, 2)
  elif models.get(family).METHOD == "translation":  # 1-channel A -> B of `shape`
    net = f"unet_{shape[0]}" if family == "pix2pix" else "resnet_6blocks"
    nets = jax.eval_shape(lambda: nnx.state(models.get(family).build(
        shape, rngs=nnx.Rngs(0), input_shape=(*shape[:2], 1), netG=net, ngf=8, ndf=8)))
    a = jnp.zeros((2, *shape[:2], 1))
    built = lambda: models.get(family).build(shape, rngs=nnx.Rngs(0), input_shape=a.shape[1:],  # pylint: disable=unnecessary-lambda-assignment
                                             netG=net, ngf=8, ndf=8)
    g, d = ("G", "D") if family == "pix2pix" else ("G_A", "D_A")
    assert set(nets) == ({"G", "D"} if family == "pix2pix" else {"G_A", "G_B", "D_A", "D_B"})
    assert jax.eval_shape(lambda: built()[g](a)).shape == (2, *shape)
    d_in = jnp.zeros((2, *shape[:2], shape[2] + (1 if family == "pix2pix" else 0)))
    assert jax.eval_shape(lambda: built()[d](d_in)).shape == (2, shape[0] // 8 - 2,
                                                               shape[1] // 8 - 2)
  elif family == "deep_svdd":
    assert jax.eval_shape(lambda: build()["model"](x)).shape == (2, 32)
  elif family == "lenet_ae":  # the reference's decoder makes 28x28 images only (test_one_class)
    with pytest.raises(ValueError, match="needs 28x28 images"):
      build()
  elif family == "fanogan":
    assert jax.eval_shape(lambda: build()["encoder"](x)).shape == (2, 100)
  elif family == "classifier":
    out = jax.eval_shape(lambda: build()["model"](x))
    assert out["logits"].shape == (2, 10) and out["features"].shape == (2, 128)
  else:
    out = jax.eval_shape(lambda: build()["model"](x, jax.random.PRNGKey(0)))
    assert out["recon"].shape == (2, *shape)
    latent = models.defaults(family)["latent_dim"]
    assert out["z"].shape == (2, latent)
    if family == "vae":
      assert out["kl"].shape == (2,) and out["mu"].shape == (2, latent)


def test_build_rejects_image_sizes_the_architecture_cannot_make():
  with pytest.raises(ValueError, match="power of two"):
    dcgan.build((28, 28, 1), rngs=nnx.Rngs(0))


# --- PyTorch peer: the pytorch/examples DCGAN, given our weights, gives our outputs. ------------

def _torch_dcgan(nz, ngf, ndf, nc):
  nn = torch.nn
  g = nn.Sequential(
      nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(),
      nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4),
      nn.ReLU(),
      nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),
      nn.ReLU(),
      nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(),
      nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
  d = nn.Sequential(
      nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
      nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2),
      nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),
      nn.LeakyReLU(0.2),
      nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8),
      nn.LeakyReLU(0.2),
      nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))
  return g, d


def _in_forward_order(body):
  """The convs and norms of a ConvEncoder/ConvDecoder in the order the forward pass uses them."""
  first = [body.first] if isinstance(body, layers.ConvEncoder) else []
  return first + [m for block in body.blocks for m in block] + [body.out]


def _copy_into_torch(module, torch_seq):
  """Copies our convs/BNs, in order, into the torch Sequential's convs/BNs."""
  ours = _in_forward_order(module.body)
  theirs = [m for m in torch_seq
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.BatchNorm2d))]
  assert len(ours) == len(theirs)
  with torch.no_grad():
    for a, b in zip(ours, theirs):
      if isinstance(a, nnx.BatchNorm):
        b.weight.copy_(torch.from_numpy(np.asarray(a.scale[...])))
        b.bias.copy_(torch.from_numpy(np.asarray(a.bias[...])))
      else:
        k = np.asarray(a.kernel[...])
        order = (2, 3, 0, 1) if isinstance(b, torch.nn.ConvTranspose2d) else (3, 2, 0, 1)
        b.weight.copy_(torch.from_numpy(k.transpose(order)))


def test_dcgan64_matches_pytorch_examples_with_the_same_weights():
  nets = nnx.jit(lambda: dcgan.build((64, 64, 3), rngs=nnx.Rngs(0), latent_dim=100, ngf=16,
                                     ndf=16))()
  tg, td = _torch_dcgan(100, 16, 16, 3)
  _copy_into_torch(nets["generator"], tg)
  _copy_into_torch(nets["discriminator"], td)
  z = np.random.default_rng(0).normal(size=(4, 100)).astype(np.float32)
  # Train mode: BatchNorm normalises with the batch statistics.
  fake = nnx.jit(lambda g, z: g(z))(nets["generator"], jnp.asarray(z))
  t_fake = tg(torch.from_numpy(z)[:, :, None, None])
  np.testing.assert_allclose(fake, t_fake.detach().numpy().transpose(0, 2, 3, 1), atol=2e-5)
  logits = nnx.jit(lambda d, x: d(x)["logit"])(nets["discriminator"], fake)
  t_logits = td(t_fake).reshape(-1)
  np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-4, atol=1e-4)
  # Running statistics after that one update (PyTorch uses the unbiased variance; Flax the biased
  # one, so compare the means, which agree exactly in definition).
  bn = nets["generator"].body.blocks[0][1]
  t_bn = [m for m in tg if isinstance(m, torch.nn.BatchNorm2d)][0]
  np.testing.assert_allclose(bn.mean[...], t_bn.running_mean.numpy(), rtol=1e-4, atol=1e-6)


def test_infogan_paper_networks_at_28px():
  from genjax.models import infogan  # pylint: disable=g-import-not-at-top
  build = lambda: infogan.build((28, 28, 1), rngs=nnx.Rngs(0), arch="paper")  # pylint: disable=unnecessary-lambda-assignment
  assert jax.eval_shape(lambda: build()["generator"](jnp.zeros((2, 74)))).shape == (2, 28, 28, 1)
  out = jax.eval_shape(lambda: build()["discriminator"](jnp.zeros((2, 28, 28, 1))))
  assert out["logit"].shape == (2,) and out["features"].shape == (2, 1024)
  assert out["code_logits"].shape == (2, 10) and out["code_mean"].shape == (2, 2)
  with pytest.raises(ValueError, match="unknown InfoGAN arch"):
    infogan.build((28, 28, 1), rngs=nnx.Rngs(0), arch="big")
