"""Domain classifier on Fashion-MNIST: the MNIST classifier's recipe, trained longer.

28x28 padded to 32x32, values in [0, 1]; random translations of up to 2 pixels; 4000 steps of
128. The committed checkpoint (experiments/classifiers/fashion_mnist, 91.61% test accuracy) took
17m26s on 2 CPU cores:

  .venv/bin/python -m genjax.cli.train --config=experiments/configs/classifier_fashion_mnist.py \\
      --workdir=experiments/classifiers/fashion_mnist
"""

from experiments.configs import classifier_mnist


def get_config():
  c = classifier_mnist.get_config()
  c.dataset.name = "fashion_mnist"
  c.num_steps = 4000
  c.sample_every = 4000
  return c
