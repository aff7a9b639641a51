"""genjax: JAX/Flax convolutional generative models."""

__version__ = "0.1.0"
