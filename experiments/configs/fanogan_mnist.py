"""f-AnoGAN's encoder on one MNIST class (Schlegl et al., Medical Image Analysis 2019), the rest
of the test split being the anomalies: AUROC of the izi_f score in metrics.jsonl.

Stage 1 is a WGAN-GP on the same class (experiments/configs/wgan_gp_mnist.py, whose images this
run sees as they are: 32x32, [-1, 1]); stage 2, this config, trains the encoder into its latent
space with the GAN frozen (Adam(2e-4, 0.5, 0.999), batch 64, as PyTorch-GAN's WGAN-GP that the
public f-AnoGAN re-implementations build on; kappa = 1, the paper's):

  python -m genjax.cli.train --config=experiments/configs/wgan_gp_mnist.py \
      --config.dataset.classes='(3,)' --config.eval.every=0 --workdir=runs/wgan_gp_mnist_3 \
      --config.model.ngf=32 --config.model.ndf=32 --config.num_steps=5000
  python -m genjax.cli.train --config=experiments/configs/fanogan_mnist.py \
      --config.dataset.classes='(3,)' --config.frozen.generator=runs/wgan_gp_mnist_3 \
      --config.frozen.discriminator=runs/wgan_gp_mnist_3#discriminator \
      --workdir=runs/fanogan_mnist_3
"""

from genjax.config import base_config


def get_config(dataset="mnist"):
  c = base_config("fanogan")
  c.dataset.name = dataset
  c.dataset.image_size = 32  # as the GAN zoo's runs (experiments/configs/_zoo.py)
  c.dataset.classes = (0,)  # the normal class: --config.dataset.classes='(k,)'
  c.model.latent_dim = 100  # the WGAN-GP generator's
  c.model.width = 32
  c.method.kappa = 1.0
  c.batch_size = 64
  c.num_steps = 3000  # ~32 epochs of one class
  c.optimizer.learning_rate = 2e-4
  c.optimizer.b1 = 0.5
  c.log_every = 100
  c.sample_every = 1000
  c.checkpoint_every = 1000
  c.keep_checkpoints = 1
  c.eval.every = 1000
  c.eval.metrics = "auroc"
  return c
