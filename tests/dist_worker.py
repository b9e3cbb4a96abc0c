"""Run by tests/test_distributed.py under ``paddle.distributed.launch``: train, then dump
this rank's final weights to ``OUT/rank<R>.npz``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import tests.tiny_models  # noqa: E402,F401
from ppRestore.config import load_config  # noqa: E402
from ppRestore.engine import dist  # noqa: E402
from ppRestore.engine.trainer import Trainer  # noqa: E402


def main(cfg_path: str, save_dir: str, out: str) -> None:
    trainer = Trainer.from_config(load_config(cfg_path), save_dir=save_dir)
    trainer.train()
    state = {k: v.numpy() for k, v in trainer.model.state_dict().items()}
    np.savez(os.path.join(out, f"rank{dist.rank()}.npz"), world=dist.world_size(), **state)


if __name__ == "__main__":
    main(*sys.argv[1:4])
