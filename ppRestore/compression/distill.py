"""Knowledge distillation for restoration models: a frozen teacher guides a student.

Pixel-space distillation (the student's output is pulled towards the teacher's output,
plus optional feature losses at named layers through learned 1x1 adapters), not the
softened-logits KL divergence of classification distillation (Hinton et al., "Distilling
the Knowledge in a Neural Network", 2015): a restoration network has no class
distribution, its "dark knowledge" is the teacher's image. Feature hints follow FitNets
(Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015), whose regressor is the
1x1 adapter here.

A config enables it with a ``distill:`` section next to the usual ``loss:``::

    distill:
      teacher:
        config: configs/dncnn/dncnn_s_sigma25.yml   # its model: section (or model: {...})
        weights: dncnn_s_sigma25_saoyan.pdparams     # file, URL, zoo name or foreign checkpoint
      gt_weight: 1.0            # weight of the ordinary loss: section (student vs ground truth)
      output_weight: 1.0        # weight of the student-vs-teacher output loss
      output_loss: {type: MSELoss}
      features:                 # optional: FitNets-style hints
        - {student: body.7, teacher: body.7, weight: 0.1, loss: {type: MSELoss}}

Nothing in the trainer's step changes: :class:`DistillLoss` wraps the ordinary loss. It
records the student's input with a forward pre-hook on the student (so the teacher sees
the same batch) and the named layers' outputs with forward post-hooks; both only record
while the student is in training mode, so evaluation is untouched. The 1x1 adapters are
trained with the student (their parameters go to the same optimizer) but are not part of
the student's checkpoint: the saved weights are the plain student; a resumed run
restores the student, its optimizer state and the adapters' optimizer moments (saved
under structured names, :meth:`DistillLoss.checkpoint_view`), but the adapter weights
themselves start afresh.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

import paddle
import paddle.nn as nn

__all__ = ["DistillLoss", "build_distill_loss", "load_teacher"]

_KNOWN = {"teacher", "gt_weight", "output_weight", "output_loss", "features"}
_FEAT_KNOWN = {"student", "teacher", "weight", "loss"}


def _sublayer(model: nn.Layer, name: str, role: str) -> nn.Layer:
    layers = dict(model.named_sublayers())
    if name not in layers:
        some = ", ".join(list(layers)[:12])
        raise ValueError(
            f"distill: the {role} has no layer named '{name}' (some names: {some}, ...)"
        )
    return layers[name]


def load_teacher(teacher_cfg: Dict[str, Any], base_dir: str | None = None) -> nn.Layer:
    """Build the teacher from ``{config: YAML | model: {...}, weights: SPEC}``, frozen, in eval mode.

    ``weights`` is resolved like ``--model_path`` (a file, URL, zoo name, or a foreign
    checkpoint the project converts on load). A relative ``config`` is tried as given
    and then next to the config that names it (``base_dir``).
    """
    from ..builder import build_model
    from ..weights.safe_load import load_model_weights

    unknown = set(teacher_cfg) - {"config", "model", "weights"}
    if unknown:
        raise ValueError(f"distill.teacher: unknown key(s) {', '.join(sorted(unknown))}")
    if "weights" not in teacher_cfg:
        raise ValueError("distill.teacher needs 'weights:' (a file, zoo name or checkpoint)")
    model_cfg = teacher_cfg.get("model")
    if model_cfg is None:
        path = teacher_cfg.get("config")
        if not path:
            raise ValueError("distill.teacher needs 'config:' (a YAML) or 'model:' (a section)")
        from ..config import load_config

        if not os.path.exists(path) and base_dir and os.path.exists(os.path.join(base_dir, path)):
            path = os.path.join(base_dir, path)
        model_cfg = load_config(path)["model"]
    model_cfg = {k: v for k, v in dict(model_cfg).items() if k != "pretrained"}
    teacher = build_model(model_cfg)
    load_model_weights(teacher, str(teacher_cfg["weights"]))
    teacher.eval()
    for p in teacher.parameters():
        p.stop_gradient = True
    return teacher


def _channels_of(layer: nn.Layer, model: nn.Layer, x: paddle.Tensor) -> int:
    """Output channels of ``layer`` found by one tiny forward pass through ``model``."""
    seen: List[int] = []

    def hook(_layer: nn.Layer, _inp: Any, out: Any) -> None:
        t = out[0] if isinstance(out, (list, tuple)) else out
        seen.append(int(t.shape[1]))

    h = layer.register_forward_post_hook(hook)
    was = model.training
    model.eval()
    try:
        with paddle.no_grad():
            model(x)
    finally:
        h.remove()
        if was:
            model.train()
    if not seen:
        raise ValueError("distill: a feature layer was not called in the forward pass")
    return seen[0]


class DistillLoss(nn.Layer):
    """``gt_weight * loss(student, gt) + output_weight * d(student, teacher) + sum(feature hints)``.

    Args:
        base: the config's ordinary loss (a :class:`~ppRestore.losses.CombinedLoss`).
        student: the model being trained (hooks are attached to it).
        teacher: a frozen model with the same input/output convention.
        gt_weight, output_weight: weights of the two pixel terms.
        output_loss: the student-vs-teacher pixel loss.
        features: ``[(student_layer, teacher_layer, weight, loss)]`` name pairs.
        probe_shape: input shape of the one forward pass that reads feature widths.
    """

    def __init__(
        self,
        base: nn.Layer,
        student: nn.Layer,
        teacher: nn.Layer,
        gt_weight: float = 1.0,
        output_weight: float = 1.0,
        output_loss: nn.Layer | None = None,
        features: List[tuple] | None = None,
        probe_shape: tuple | None = None,
    ) -> None:
        super().__init__()
        self.base = base
        self.teacher = [teacher]  # a list: keep it out of this layer's parameters/state
        self.gt_weight, self.output_weight = float(gt_weight), float(output_weight)
        self.output_loss = output_loss or nn.MSELoss()
        self._input: List[paddle.Tensor] = []
        self._s_feats: Dict[int, paddle.Tensor] = {}
        self._t_feats: Dict[int, paddle.Tensor] = {}
        self.feature_names: List[tuple] = []
        self.feature_weights: List[float] = []
        self.feature_losses = nn.LayerList()
        self.adapters = nn.LayerList()
        self._hooks = [student.register_forward_pre_hook(self._record_input(student))]
        feats = features or []
        if feats:
            c = int(getattr(student, "in_channels", 1) or 1)
            probe = paddle.rand(probe_shape or (1, c, 32, 32))
        for i, (s_name, t_name, w, loss) in enumerate(feats):
            s_layer = _sublayer(student, s_name, "student")
            t_layer = _sublayer(teacher, t_name, "teacher")
            cs = _channels_of(s_layer, student, probe)
            ct = _channels_of(t_layer, teacher, probe)
            # FitNets' regressor: map student features to the teacher's width (1x1 conv).
            self.adapters.append(nn.Conv2D(cs, ct, 1))
            self.feature_names.append((s_name, t_name))
            self.feature_weights.append(float(w))
            self.feature_losses.append(loss or nn.MSELoss())
            self._hooks.append(
                s_layer.register_forward_post_hook(self._record(self._s_feats, i, student))
            )
            self._hooks.append(
                t_layer.register_forward_post_hook(self._record(self._t_feats, i, None))
            )

    # hooks -------------------------------------------------------------------------
    def _record_input(self, student: nn.Layer):
        def hook(_layer: nn.Layer, inputs: Any) -> None:
            if student.training:
                self._input[:] = [inputs[0]]

        return hook

    def _record(self, store: Dict[int, paddle.Tensor], i: int, student: nn.Layer | None):
        def hook(_layer: nn.Layer, _inp: Any, out: Any) -> None:
            if student is None or student.training:
                store[i] = out[0] if isinstance(out, (list, tuple)) else out

        return hook

    def remove_hooks(self) -> None:
        """Detach from the student (e.g. before exporting it from the same process)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # loss --------------------------------------------------------------------------
    @property
    def needs_aux(self) -> bool:
        return bool(getattr(self.base, "needs_aux", False))

    def extra_parameters(self) -> List[paddle.Tensor]:
        """The adapters' parameters (to train alongside the student's)."""
        return list(self.adapters.parameters())

    def checkpoint_view(self, student: nn.Layer) -> Any:
        """The student as the checkpoint code sees it: its own weights, but parameter
        names that include the adapters (``distill.adapters.N.*``), so their optimizer
        moments are saved under structured names and found again on resume."""
        return _StudentWithAdapters(student, self.adapters)

    def forward(
        self, pred: paddle.Tensor, target: paddle.Tensor, aux: Dict[str, Any] | None = None
    ) -> tuple:
        if not self._input:
            raise RuntimeError(
                "distill: the student's input was not recorded (is it in train mode?)"
            )
        total, terms = self.base(pred, target, aux)
        terms = dict(terms)
        total = self.gt_weight * total
        self._t_feats.clear()
        with paddle.no_grad():
            t_out = self.teacher[0](self._input[0])
        if isinstance(t_out, (list, tuple)):
            t_out = t_out[0]
        kd = self.output_loss(pred, t_out.astype(pred.dtype).detach())
        terms["kd_out"] = kd
        total = total + self.output_weight * kd
        for i, (adapter, w, loss) in enumerate(
            zip(self.adapters, self.feature_weights, self.feature_losses)
        ):
            s, t = self._s_feats.get(i), self._t_feats.get(i)
            if s is None or t is None:
                raise RuntimeError(f"distill: feature {self.feature_names[i]} was not recorded")
            if s.shape[-2:] != t.shape[-2:]:
                raise ValueError(
                    f"distill: feature {self.feature_names[i]}: student {s.shape[-2:]} and "
                    f"teacher {t.shape[-2:]} spatial sizes differ"
                )
            val = loss(adapter(s), t.detach())
            terms[f"kd_{self.feature_names[i][0]}"] = val
            total = total + w * val
        self._input.clear()
        self._s_feats.clear()
        return total, terms


def build_distill_loss(
    distill_cfg: Dict[str, Any], student: nn.Layer, base: nn.Layer, base_dir: str | None = None
) -> DistillLoss:
    """Build a :class:`DistillLoss` from a config's ``distill:`` section."""
    from ..registry import LOSSES

    if not isinstance(distill_cfg, dict):
        raise ValueError("distill: must be a mapping with at least 'teacher:'")
    unknown = set(distill_cfg) - _KNOWN
    if unknown:
        raise ValueError(
            f"distill: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KNOWN))}"
        )
    if "teacher" not in distill_cfg:
        raise ValueError("distill: needs a 'teacher:' section ({config: ..., weights: ...})")
    teacher = load_teacher(dict(distill_cfg["teacher"]), base_dir)
    out_cfg = distill_cfg.get("output_loss") or {"type": "MSELoss"}
    feats = []
    for f in distill_cfg.get("features") or []:
        bad = set(f) - _FEAT_KNOWN
        if bad or "student" not in f:
            raise ValueError(
                f"distill.features: entries are {{student, teacher, weight, loss}}, got {dict(f)}"
            )
        loss = LOSSES.build(dict(f["loss"])) if f.get("loss") else None
        feats.append((f["student"], f.get("teacher", f["student"]), f.get("weight", 1.0), loss))
    return DistillLoss(
        base,
        student,
        teacher,
        gt_weight=distill_cfg.get("gt_weight", 1.0),
        output_weight=distill_cfg.get("output_weight", 1.0),
        output_loss=LOSSES.build(dict(out_cfg)),
        features=feats,
    )


class _StudentWithAdapters:
    """``state_dict`` of the student; ``named_parameters`` of student + adapters."""

    def __init__(self, student: nn.Layer, adapters: nn.LayerList) -> None:
        self.student, self.adapters = student, adapters

    def state_dict(self) -> Dict[str, Any]:
        return self.student.state_dict()

    def named_parameters(self):
        yield from self.student.named_parameters()
        for name, p in self.adapters.named_parameters():
            yield f"distill.adapters.{name}", p
