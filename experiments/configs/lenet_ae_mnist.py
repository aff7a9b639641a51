"""Deep SVDD's pre-training: the LeNet autoencoder on one MNIST class (Ruff et al., ICML 2018).

The reference's command (lukasruff/Deep-SVDD-PyTorch, README): Adam (torch's L2 weight decay
0.5e-3), lr 1e-4 and 1e-5 after epoch 50 of 150, batch 200, squared-error loss (a Gaussian
likelihood with sigma = sqrt(1/2)). One epoch of one class (5,421-6,742 MNIST digits) is about
30 steps of 200: 150 epochs are 4,500 steps here for every class. Its reconstruction-error AUROC
on the whole test split is the paper's autoencoder baseline; its encoder starts Deep SVDD
(experiments/configs/deep_svdd_mnist.py). One class per run:

  python -m genjax.cli.train --config=experiments/configs/lenet_ae_mnist.py \
      --config.dataset.classes='(3,)' --workdir=runs/lenet_ae_mnist_3
"""

from experiments.configs._one_class import one_class_config


def get_config():
  c = one_class_config("lenet_ae", weight_decay=0.5e-3, eval_every=1500)
  c.method.likelihood = "gaussian"
  c.method.sigma = 0.5 ** 0.5  # -log-likelihood = sum of squared errors + const
  # eval.metrics=auroc: the reconstruction error, the whole test split, the class as normal
  return c
