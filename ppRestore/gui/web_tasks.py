"""The web page's task list: which config and weights each entry runs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Tuple

__all__ = ["REPO_ROOT", "Task", "default_tasks"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Task:
    """One entry of the task list.

    Attributes:
        label: what the page shows.
        config: YAML path (relative to the repository root, or absolute).
        weights: default ``model_path`` (zoo name, file or URL); None: the zoo entry
            whose ``config`` is this one, if any, else the user must give weights.
        opts: ``-o key=value`` config overrides.
        model_dir: an exported model folder instead of config + weights.
    """

    label: str
    config: str | None = None
    weights: str | None = None
    opts: Tuple[str, ...] = ()
    model_dir: str | None = None

    def config_path(self) -> str | None:
        if not self.config:
            return None
        return self.config if os.path.isabs(self.config) else os.path.join(REPO_ROOT, self.config)

    def default_weights(self) -> str | None:
        if self.weights or self.model_dir:
            return self.weights
        from ..weights.zoo import ZOO

        mine = self.config_path()
        for name, entry in ZOO.items():
            cfg = entry.get("config")
            if (
                mine
                and cfg
                and os.path.realpath(os.path.join(REPO_ROOT, cfg)) == os.path.realpath(mine)
            ):
                return name
        return None


def default_tasks() -> List[Task]:
    """The shipped and official models, in the order the page lists them."""
    return [
        Task(
            "Denoise: colour U-Net (demo_color_denoise)", "configs/demo.yml", "demo_color_denoise"
        ),
        Task(
            "Denoise: DnCNN, grey per channel, sigma 25 (dncnn_s32_sigma25)",
            "configs/dncnn/dncnn_s32_sigma25.yml",
            "dncnn_s32_sigma25",
        ),
        Task("Super-resolution x2 (SRCNN)", "configs/srcnn/srcnn_x2.yml", "srcnn_x2"),
        Task("Super-resolution x3 (SRCNN)", "configs/srcnn/srcnn_x3.yml", "srcnn_x3"),
        Task("Super-resolution x4 (SRCNN)", "configs/srcnn/srcnn_x4.yml", "srcnn_x4"),
        Task(
            "Deblur (CMFNet, official weights)", "configs/cmfnet/cmfnet_deblur.yml", "cmfnet_deblur"
        ),
        Task(
            "Dehaze (CMFNet, official weights)", "configs/cmfnet/cmfnet_dehaze.yml", "cmfnet_dehaze"
        ),
        Task(
            "Remove rain drops (CMFNet, official weights)",
            "configs/cmfnet/cmfnet_deraindrop.yml",
            "cmfnet_deraindrop",
        ),
        Task("Remove handwriting (PmrNet document)", "configs/pmrnet/pmrnet_document.yml"),
        Task("Raw denoising (PmrNet, .npy / .dng in)", "configs/pmrnet/pmrnet_raw.yml"),
    ]
