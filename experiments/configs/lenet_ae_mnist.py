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

from genjax.config import base_config

STEPS_PER_EPOCH = 30  # one class of ~6,000 images in batches of 200


def get_config():
  c = base_config("lenet_ae")
  c.dataset.name = "mnist"
  c.dataset.value_range = (0.0, 1.0)
  c.dataset.classes = (0,)  # the normal class: --config.dataset.classes='(k,)'
  c.dataset.normalize = "gcn_l1"  # GCN (l1), min-max scaled to [0, 1] by the class's extremes
  c.method.likelihood = "gaussian"
  c.method.sigma = 0.5 ** 0.5  # -log-likelihood = sum of squared errors + const
  c.batch_size = 200
  c.num_steps = 150 * STEPS_PER_EPOCH
  c.optimizer.learning_rate = 1e-4
  c.optimizer.b1 = 0.9  # torch.optim.Adam's defaults
  c.optimizer.weight_decay = 0.5e-3
  c.optimizer.schedule = "step"
  c.optimizer.hold_steps = 50 * STEPS_PER_EPOCH
  c.log_every = 100
  c.sample_every = 1500
  c.checkpoint_every = 500
  c.keep_checkpoints = 1
  c.eval.every = 1500
  c.eval.metrics = "auroc"  # reconstruction error, the whole test split, the class as normal
  return c
