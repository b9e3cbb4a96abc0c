"""Model architectures, one file per network; each registers itself in ``MODELS``."""
