"""VAE and IWAE on dynamically binarised MNIST (Burda et al., ICLR 2016), their architecture with
one stochastic layer: 784-200-200-50 tanh encoder (the Gaussian posterior's mean and
log-variance), 50-200-200-784 tanh decoder with Bernoulli outputs, 425,284 parameters at 28x28.

The test NLL (``nll`` in metrics.jsonl, nats) is the IWAE bound of 5,000 importance samples on
the test split, binarised once (the same binarisation at every evaluation), as in their
Table 1. ``method.objective`` and ``method.num_samples`` pick the row:

  python -m genjax.cli.train --config=experiments/configs/iwae_mnist.py --workdir=runs/iwae_k5 \\
      --config.method.objective=iwae --config.method.num_samples=5

Their optimiser is Adam (beta1 0.9, beta2 0.999, eps 1e-4), batch 20, 3^i passes at learning
rate 1e-3 * 10^(-i/7) for i = 0..7: 3,280 passes (``optimizer.schedule = "burda"``). The
committed ``num_steps`` runs the first PASSES of them, stages 0 and 1; a longer run is the same
command with a larger ``--config.num_steps`` (on the same workdir it resumes and goes on with
their schedule). experiments/likelihood.py trains the table's rows.
"""

from genjax.config import base_config

STEPS_PER_PASS = 3000  # 60,000 training images in batches of 20
PASSES = 4  # stage 0 (1 pass at 1e-3) and stage 1 (3 passes at 1e-3 * 10^(-1/7))


def get_config():
  c = base_config("vae")
  c.dataset.name = "mnist"
  c.dataset.image_size = 28
  c.dataset.value_range = (0.0, 1.0)
  c.model.arch = "mlp"
  c.model.latent_dim = 50
  c.model.hidden = (200, 200)
  c.method.likelihood = "bernoulli"
  c.method.binarize = True
  c.method.objective = "elbo"
  c.method.num_samples = 1
  c.batch_size = 20
  c.num_steps = PASSES * STEPS_PER_PASS
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-4
  c.optimizer.schedule = "burda"
  c.optimizer.hold_steps = STEPS_PER_PASS
  c.log_every = 1000
  c.sample_every = PASSES * STEPS_PER_PASS
  c.checkpoint_every = STEPS_PER_PASS
  c.keep_checkpoints = 1
  # The NLL curve: IWAE bounds of 100 samples every pass; the table's figure is the final
  # checkpoint's 5,000-sample bound (python -m genjax.cli.evaluate --nll_samples=5000).
  c.eval.every = STEPS_PER_PASS
  c.eval.metrics = "nll"
  c.eval.nll_samples = 100
  return c
