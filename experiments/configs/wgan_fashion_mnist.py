"""WGAN (Arjovsky et al. 2017) on Fashion-MNIST: DCGAN's networks (BatchNorm in the critic, as in
the paper), the Wasserstein loss, weight clipping at 0.01, RMSProp at 5e-5 (torch's, eps outside
the root), 5 critic steps per generator step but 100 for the first 25 generator steps and every
500th (the reference code's schedule, which trains the critic near its optimum early on).
``num_steps`` counts critic steps: 80000 make 14974 generator updates, DCGAN's 15000. (At 15000
critic steps without the bursts, 3000 generator updates, its MNIST classifier-FID was 75.8 and
falling; experiments/RESULTS.md.)"""

from experiments.configs._zoo import zoo_config


def get_config(dataset="fashion_mnist"):
  c = zoo_config("dcgan", dataset, num_steps=80000)
  c.model.latent_dim = 100
  c.method.loss = "wasserstein"
  c.method.clip_value = 0.01
  c.method.n_critic = 5
  c.method.critic_burst = (100, 25, 500)
  c.optimizer.name = "rmsprop"
  c.optimizer.learning_rate = 5e-5
  c.optimizer.b2 = 0.99  # RMSProp's squared-gradient decay (PyTorch's alpha)
  return c
