"""jbatch: what batch size does to training, measured in JAX/Flax beside PyTorch.

Importing jbatch needs only jax, flax, optax, orbax, absl, chex, ml_collections
and numpy; TensorFlow, Grain, PyTorch and matplotlib load inside the modules
that use them.
"""

__version__ = "0.1.0"
