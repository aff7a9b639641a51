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

from experiments.configs._one_class import one_class_config
from experiments.configs._one_class import STEPS_PER_EPOCH


def get_config():
  c = one_class_config("deep_svdd", weight_decay=1e-6, eval_every=500)
  c.method.objective = "one-class"
  c.method.nu = 0.1
  c.method.radius_warmup_steps = 10 * STEPS_PER_EPOCH  # soft boundary only
  return c
