"""Cloud TPU VM launch tools and the sweep runner (see launch/README.md)."""
