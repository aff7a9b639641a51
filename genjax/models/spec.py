"""The contract between a network and the methods that train it.

Every network a family builds carries a :class:`Spec` as its ``spec`` attribute: what its
``__call__`` takes besides its first argument, what it returns, and the sizes of its latent
inputs. Methods read the spec of the (abstract) networks to decide what to feed them and which
objectives apply; they never inspect signatures or run a network to find out.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Spec:
  """What a network takes and returns.

  Attributes:
    takes: keyword arguments of ``__call__`` besides the first (positional) input:
      ``"labels"`` (int class labels, (B,)), ``"rng"`` (a key for noise or dropout; None makes
      the pass deterministic).
    returns: the keys of the dict ``__call__`` returns (e.g. ``("logit", "features")``); empty
      for a network that returns one array.
    latent_dim: Gaussian noise dimensions of a generator's first input (0: it maps images).
    num_classes: > 0 for a class-conditional generator (it takes ``labels``).
    num_categorical: InfoGAN: values of the one categorical code appended to the noise.
    num_continuous: InfoGAN: U(-1, 1) codes appended to the noise.
    sees_condition: a discriminator that judges an image together with the image it was made
      from, concatenated on channels (pix2pix's conditional PatchGAN).
  """
  takes: tuple[str, ...] = ()
  returns: tuple[str, ...] = ()
  latent_dim: int = 0
  num_classes: int = 0
  num_categorical: int = 0
  num_continuous: int = 0
  sees_condition: bool = False

  def __post_init__(self):
    unknown = set(self.takes) - {"labels", "rng"}
    if unknown:
      raise ValueError(f"Spec.takes: unknown arguments {sorted(unknown)}; known: labels, rng")
