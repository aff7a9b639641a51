"""The LeNet autoencoder that pre-trains Deep SVDD's encoder (:mod:`genjax.models.lenet`),
trained by the autoencoding method with the reference's squared error: a Gaussian likelihood
with ``sigma = sqrt(1/2)``, whose negative log-likelihood is the sum of squared errors plus a
constant. Its reconstruction error is also an anomaly score of its own (the paper's baseline)."""

from __future__ import annotations

from flax import nnx

from genjax.models.lenet import LeNetAutoencoder

METHOD = "autoencoding"
# The decoder ends in a sigmoid: its output is a Gaussian mean in [0, 1], not Bernoulli logits.
LIKELIHOODS = ("gaussian",)


def build(image_shape, *, rngs: nnx.Rngs, axis_name=None, dtype=None,
          rep_dim: int = 32) -> dict[str, nnx.Module]:
  return {"model": LeNetAutoencoder(image_shape, rep_dim, axis_name=axis_name, dtype=dtype,
                                    rngs=rngs)}
