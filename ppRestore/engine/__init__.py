"""Training engine: :class:`Trainer`, checkpoints, evaluation (import submodules directly)."""
