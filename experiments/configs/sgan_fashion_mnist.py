"""SGAN (Salimans et al. 2016) on Fashion-MNIST with 100 labels (10 per class, chosen by
config.seed): the Improved-GAN MNIST networks at 28x28 in [0, 1], feature matching, Adam(3e-3,
beta1 0.5), batches of 100 unlabelled and 100 labelled examples, test accuracy of an EMA of the
discriminator's weights (genjax.cli.gan_accuracy).

The paper's discriminator loss is ``CE_labelled + 1/2 (BCE_real + BCE_fake)``; with Adam,
which is invariant to the loss scale, ``supervised_weight=2`` on top of the unscaled BCE is the
same objective."""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("sgan", dataset, num_steps=48000)
  c.dataset.image_size = 0
  c.dataset.value_range = (0.0, 1.0)
  c.model.latent_dim = 100
  c.model.ngf = 500
  c.model.ndf = 1000
  c.model.num_classes = 10
  c.method.loss = "non_saturating"
  c.method.feature_matching = "l2"
  c.method.d_ema_decay = 0.999  # the paper tests the averaged discriminator (theirs: 0.9999
                                # from zeros over 180k steps; ours is shorter)
  c.method.labelled_per_class = 10
  c.method.supervised_weight = 2.0
  c.batch_size = 100
  c.optimizer.learning_rate = 3e-3
  c.optimizer.b1 = 0.5
  return c
