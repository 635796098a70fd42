"""erase-jax: the ERASE recommendation-unlearning benchmark in JAX."""

__version__ = "0.1.0"
