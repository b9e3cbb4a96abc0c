"""Model compression: knowledge distillation (distill.py) and channel pruning (prune.py)."""
