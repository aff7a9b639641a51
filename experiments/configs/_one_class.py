"""Shared settings of Deep SVDD and its pre-training (Ruff et al., ICML 2018): the reference's
protocol (lukasruff/Deep-SVDD-PyTorch): one class as the training set, GCN (l1) then min-max
scaling by that class's extremes to [0, 1], Adam (torch's defaults, its L2 weight decay), lr 1e-4
and 1e-5 after epoch 50 of 150, batch 200, the AUROC on the whole test split."""

from genjax.config import base_config

STEPS_PER_EPOCH = 30  # one class of ~6,000 images in batches of 200


def one_class_config(family: str, *, weight_decay: float, eval_every: int):
  c = base_config(family)
  c.dataset.name = "mnist"
  c.dataset.value_range = (0.0, 1.0)
  c.dataset.classes = (0,)  # the normal class: --config.dataset.classes='(k,)'
  c.dataset.normalize = "gcn_l1"  # GCN (l1), min-max scaled to [0, 1] by the class's extremes
  c.batch_size = 200
  c.num_steps = 150 * STEPS_PER_EPOCH
  c.optimizer.learning_rate = 1e-4
  c.optimizer.b1 = 0.9  # torch.optim.Adam's defaults
  c.optimizer.weight_decay = weight_decay
  c.optimizer.schedule = "step"
  c.optimizer.hold_steps = 50 * STEPS_PER_EPOCH
  c.log_every = 100
  c.sample_every = 1500
  c.checkpoint_every = 500
  c.keep_checkpoints = 1
  c.eval.every = eval_every
  c.eval.metrics = "auroc"
  return c
