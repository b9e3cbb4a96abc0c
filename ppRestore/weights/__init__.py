"""Weights: the safe loader (:mod:`.safe_load`), foreign-checkpoint conversion
(:mod:`.convert`) and the model zoo / download cache (:mod:`.zoo`)."""
