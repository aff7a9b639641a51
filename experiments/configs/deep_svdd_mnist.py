"""One-class Deep SVDD on one MNIST class (Ruff et al., ICML 2018), the rest of the test split
being the anomalies: AUROC in metrics.jsonl at every evaluation.

The reference's command (lukasruff/Deep-SVDD-PyTorch, README) with the paper's weight decay
(lambda = 1e-6, torch's L2 term): Adam, lr 1e-4 and 1e-5 after epoch 50 of 150, batch 200,
the LeNet network of 7,272 bias-free parameters. One epoch of one class is about 30 steps of
200: 150 epochs are 4,500 steps for every class. Its encoder comes from the pre-training run
of the same class (experiments/configs/lenet_ae_mnist.py); without ``init.from_run`` the run
starts from random weights (the paper's ablation). Soft-boundary Deep SVDD:
``--config.method.objective=soft-boundary --config.method.nu=0.1`` (R from the 10th epoch on).

  python -m genjax.cli.train --config=experiments/configs/deep_svdd_mnist.py \
      --config.dataset.classes='(3,)' --config.init.from_run=runs/lenet_ae_mnist_3 \
      --workdir=runs/deep_svdd_mnist_3
"""

from experiments.configs import lenet_ae_mnist
from genjax.config import base_config

STEPS_PER_EPOCH = lenet_ae_mnist.STEPS_PER_EPOCH


def get_config():
  c = base_config("deep_svdd")
  c.dataset.name = "mnist"
  c.dataset.value_range = (0.0, 1.0)
  c.dataset.classes = (0,)  # the normal class: --config.dataset.classes='(k,)'
  c.dataset.normalize = "gcn_l1"  # GCN (l1), min-max scaled to [0, 1] by the class's extremes
  c.method.objective = "one-class"
  c.method.nu = 0.1
  c.method.radius_warmup_steps = 10 * STEPS_PER_EPOCH  # soft boundary only
  c.batch_size = 200
  c.num_steps = 150 * STEPS_PER_EPOCH
  c.optimizer.learning_rate = 1e-4
  c.optimizer.b1 = 0.9  # torch.optim.Adam's defaults
  c.optimizer.weight_decay = 1e-6
  c.optimizer.schedule = "step"
  c.optimizer.hold_steps = 50 * STEPS_PER_EPOCH
  c.log_every = 100
  c.sample_every = 1500
  c.checkpoint_every = 500
  c.keep_checkpoints = 1
  c.eval.every = 500
  c.eval.metrics = "auroc"
  return c
