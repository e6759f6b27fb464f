"""Calibration per validation and test: ECE before and after temperature scaling, the temperature
(fitted on validation, kept in the checkpoint, applied by predict) and a reliability diagram.

Does a class given probability 0.9 come true nine times in ten? A network trained on
cross-entropy is usually surer than it is right; neither its accuracy nor its F1 shows that, and
a user who thresholds the probabilities pays for it.

- ``{split}/ece``: the expected calibration error of the model's own probabilities (torchmetrics'
  ``MulticlassCalibrationError``, functional form, L1, equal-width confidence bins, over the
  split's gathered probabilities): the mean gap between confidence and accuracy, weighted by how
  many predictions each bin holds.
- Temperature scaling (Guo et al. 2017): one scalar T > 0 that the logits are divided by before
  the softmax; it changes no prediction, only how sure each one is. Fitted at the end of every
  validation during fit (all of that validation's logits, every DDP rank's) by minimising the
  NLL, and written into the model's ``temperature`` buffer before the checkpoint callbacks save
  (Lightning 2.6 runs ``on_validation_epoch_end`` before ``on_validation_end`` and
  ``on_train_epoch_end``, where ModelCheckpoint saves): each checkpoint carries the T fitted on
  the validation of its own weights, and validation_report.py, which ranks its mistakes at
  ``on_validation_end``, reads that T wherever either callback is registered. ``validate`` and
  ``test`` use the checkpoint's T as it is; ``predict`` applies it unless ``--calibrated false``.
- T is kept only where it can be trusted, else T = 1 (the probabilities as trained) with one
  warning line, the reason in the checkpoint (``calibration_note``), the model card and predict's
  report: a validation split of one class, or without a single mistake (the NLL then falls as T
  goes to 0: every probability would become 1.000000); a T outside [0.05, 20]; or one that does
  not lower the NLL of validation rows it was not fitted on (two halves, each scored with the T
  of the other), so scaling never makes held-out probabilities worse by that measure.
- ``{split}/ece_calibrated``: the ECE of softmax(logits / T). On validation during fit T was
  fitted on those very logits, so this figure is optimistic; ``test/ece_calibrated`` is not.
- ``val/temperature``; and ``{split}/reliability`` (Images): accuracy per confidence bin before
  and after, the diagonal being perfect calibration, with the share of predictions per bin.
"""

import math
import sys
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.figure import Figure
from torchmetrics import CatMetric
from torchmetrics.functional.classification import (
    binary_calibration_error,
    multiclass_calibration_error,
    multilabel_f1_score,
)

from project import tags
from project.compat import logged_step
from project.errors import UserError


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the mean NLL of ``logits / T`` on ``labels``. L-BFGS on log T
    (T stays positive whatever the step); a few milliseconds on a validation split."""
    with torch.inference_mode(False), torch.enable_grad():  # Lightning validates in inference mode
        # float64, on the CPU (once per validation; MPS has no float64): a diverged model's
        # logits (1e30 and more) overflow L-BFGS's float32 arithmetic.
        logits, labels = logits.detach().cpu().double(), labels.cpu()
        if not torch.isfinite(logits).all():
            return 1.0  # nothing to scale: the training-loss check (model.py) stops such a run
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

        def nll() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(logits / log_t.exp(), labels)
            loss.backward()
            return loss

        optimizer.step(nll)
        t = log_t.exp().item()
    return t if math.isfinite(t) and t > 0 else 1.0  # non-finite logits: leave the model's probabilities as they are


@rank_zero_only
def warning_line(text: str) -> None:
    """One line on stderr (Python's warnings add the source line under it)."""
    print(f"warning: {text}", file=sys.stderr, flush=True)


BOUNDS = (0.05, 20.0)  # a T beyond these says more about the validation split than about the model


def choose_temperature(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, str | None]:
    """The temperature to keep, and why it is 1 where it is not the fitted one (None: fitted)."""
    labels = labels.cpu()
    if labels.unique().numel() < 2:
        return 1.0, "the validation split holds one class"
    if (logits.argmax(-1).cpu() == labels).all():
        return 1.0, "the model makes no mistake on the validation split (nothing to calibrate on)"
    t = fit_temperature(logits, labels)
    if not BOUNDS[0] <= t <= BOUNDS[1]:
        return 1.0, f"the fitted temperature {t:.3g} is outside {BOUNDS[0]}-{BOUNDS[1]}"
    # Held out: each half scored with the T fitted on the other (a fixed split: every rank agrees).
    logits = logits.detach().cpu().double()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    halves = order[::2], order[1::2]
    scaled = plain = 0.0
    for fit_on, score_on in (halves, halves[::-1]):
        t_half = fit_temperature(logits[fit_on], labels[fit_on])
        scaled += F.cross_entropy(logits[score_on] / t_half, labels[score_on], reduction="sum").item()
        plain += F.cross_entropy(logits[score_on], labels[score_on], reduction="sum").item()
    if not scaled < plain:
        n = len(labels)
        return 1.0, f"scaling raised the held-out validation NLL ({plain / n:.4f} -> {scaled / n:.4f})"
    return t, None


def bin_accuracy(probabilities: torch.Tensor, labels: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per equal-width confidence bin (as torchmetrics bins them: a confidence on an edge goes up):
    how many predictions fall in it, and the share of them that are right (NaN in an empty bin)."""
    confidence, predicted = probabilities.max(-1)
    edges = torch.linspace(0, 1, bins + 1, device=confidence.device)
    index = (torch.bucketize(confidence, edges, right=True) - 1).clamp(0, bins - 1)  # 1.0: the top bin
    count = torch.bincount(index, minlength=bins)
    right = torch.bincount(index, weights=(predicted == labels).float(), minlength=bins)
    return count, right / count.where(count > 0, torch.nan)


def reliability_diagram(raw: torch.Tensor, calibrated: torch.Tensor, labels: torch.Tensor, bins: int,
                        ece: tuple[float, float], temperature: float) -> Figure:
    """Accuracy per confidence bin, raw and calibrated side by side, over the diagonal; below, the
    share of predictions per bin. Sized to be read at the ~400 px TensorBoard shows an image at."""
    figure = Figure(figsize=(4.5, 4), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = 1 / bins
    centres = (torch.arange(bins).numpy() + 0.5) * width  # numpy: matplotlib's own array type
    # The top class's probability is at least 1 / classes: start at that bin (0.5 for two classes).
    low = math.floor(bins / raw.shape[-1]) * width
    for shift, probs, name, colour in ((-0.25, raw, "as trained", "tab:red"),
                                       (0.25, calibrated, f"scaled, T = {temperature:.2f}", "tab:blue")):
        count, accuracy = (t.cpu().numpy() for t in bin_accuracy(probs, labels, bins))
        at = centres + shift * width
        top.bar(at, accuracy, width=width / 2, color=colour, label=name)
        bottom.bar(at, count / count.sum(), width=width / 2, color=colour)
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfectly calibrated")
    top.set(xlim=(low, 1), ylim=(0, 1), ylabel="accuracy")
    figure.suptitle(f"ECE {ece[0]:.3f} → {ece[1]:.3f} after scaling", fontsize=11)
    # Under the charts, not on them: bars reach any height in any bin.
    figure.legend(loc="outside lower center", ncols=3, fontsize=9, frameon=False, handlelength=1.2,
                  columnspacing=1.0)
    bottom.set(xlabel="confidence (top class probability)", ylabel="share")
    for axis in (top, bottom):
        axis.tick_params(labelsize=9)
        axis.xaxis.label.set_size(10)
        axis.yaxis.label.set_size(10)
    return figure


THRESHOLDS = (torch.arange(5, 96, 5) / 100)[:, None]  # the per-label thresholds tried: 0.05 to 0.95, one per row


def label_f1(probabilities: torch.Tensor, labels: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Each label's F1 at each row of ``thresholds`` ((rows, 1): one for every label, or (rows,
    labels): one each): (rows, labels)."""
    predicted = (probabilities[None] >= thresholds[:, None, :]).float()  # (rows, texts, labels)
    return 2 * (predicted * labels).sum(1) / (predicted.sum(1) + labels.sum(0)).clamp(min=1)


def best_thresholds(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """For each label, the threshold of ``THRESHOLDS`` with the best F1 here (a tie: the one
    nearest 0.5)."""
    score = label_f1(probabilities, labels, THRESHOLDS) - 1e-6 * (THRESHOLDS - 0.5).abs()
    return THRESHOLDS[score.argmax(0), 0]


def tune_thresholds(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Multi-label: for each label, the threshold with the best F1 on these (validation)
    probabilities, kept only where it is better than 0.5 on texts it was not chosen on (two
    halves, each scored at the threshold the other chose, as the temperature is judged above);
    else, and for a label without a positive text, 0.5. A threshold chosen on a few hundred texts
    can fit them rather than the label (measured on TREC made multi-label: benchmarks/multi_label.py)."""
    probabilities, labels = probabilities.detach().cpu().float(), labels.detach().cpu().float()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    halves = order[::2], order[1::2]
    half = torch.full((labels.shape[1],), 0.5)
    gain = torch.zeros(labels.shape[1])
    for fit_on, score_on in (halves, halves[::-1]):
        chosen = best_thresholds(probabilities[fit_on], labels[fit_on])
        f1 = label_f1(probabilities[score_on], labels[score_on], torch.stack([chosen, half]))  # (2, labels)
        gain += f1[0] - f1[1]
    keep = (gain > 0) & (labels.sum(0) > 0)
    return torch.where(keep, best_thresholds(probabilities, labels), half)


def label_reliability_diagram(probabilities: torch.Tensor, labels: torch.Tensor, bins: int, ece: float) -> Figure:
    """Multi-label: every (text, label) probability as one prediction; per equal-width bin of
    probability, the share of them whose label is there, over the diagonal; below, the share of
    predictions per bin."""
    figure = Figure(figsize=(4.5, 4), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    p, y = probabilities.flatten().cpu(), labels.flatten().cpu().float()
    edges = torch.linspace(0, 1, bins + 1)
    index = (torch.bucketize(p, edges, right=True) - 1).clamp(0, bins - 1)
    count = torch.bincount(index, minlength=bins).float()
    share = torch.bincount(index, weights=y, minlength=bins) / count.where(count > 0, torch.nan)
    centres = ((torch.arange(bins) + 0.5) / bins).numpy()
    top.bar(centres, share.numpy(), width=0.8 / bins, color="tab:blue", label="share of the label there")
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfectly calibrated")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="share present")
    bottom.bar(centres, (count / count.sum()).numpy(), width=0.8 / bins, color="tab:blue")
    bottom.set(xlabel="probability of a label", ylabel="share")
    figure.suptitle(f"ECE {ece:.3f} over all labels' probabilities", fontsize=11)
    figure.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False, handlelength=1.2)
    return figure


# Why a multi-label model keeps T = 1 (its note in the checkpoint, the card and predict's line).
MULTI_LABEL_NOTE = "multi-label: each label's sigmoid as trained, with a threshold per label tuned on validation"


class Calibration(Callback):
    """ECE before and after temperature scaling (T fitted on validation), and a reliability diagram."""

    def __init__(self, bins: int = 15) -> None:
        """
        Args:
            bins: Equal-width confidence bins of the expected calibration error (ECE) and of the
                reliability diagram, 2 to 100.
        """
        # At most 100: more leaves a few predictions per bin (a noisy ECE, a diagram of slivers),
        # and a huge number failed only at the first validation, for want of memory.
        if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= 100:
            raise UserError(f"--calibration.bins is {bins}; fix: 2 to 100 (15, the default, is usual)")
        self.bins = bins
        self.warned: set[str] = set()  # one warning line per reason in a run, not one per validation

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.classes = len(pl_module.hparams.label_names)
        # The split's logits and labels, for the temperature and the diagram: compute() gathers
        # every rank's (of uneven counts too), so all ranks fit the same T on the same data.
        self.logits = CatMetric(nan_strategy="disable").to(pl_module.device)
        self.labels = CatMetric(nan_strategy="disable").to(pl_module.device)

    def _batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, logits: torch.Tensor, batch: dict,
                   split: str) -> None:
        if trainer.sanity_checking:
            return
        self.logits.update(logits.detach().float())
        self.labels.update(batch["labels"])

    def _epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        if trainer.sanity_checking:
            return
        logits, labels = self.logits.compute(), self.labels.compute().long()  # a collective under DDP
        self.logits.reset()
        self.labels.reset()
        if pl_module.hparams.get("multi_label"):
            self._multi_label_end(trainer, pl_module, logits.reshape(-1, self.classes),
                                  labels.reshape(-1, self.classes), split)
            return
        # CatMetric returns a single update's values squeezed: one row's labels as a 0-d tensor.
        logits, labels = logits.reshape(-1, self.classes), labels.reshape(-1)
        if split == "val" and trainer.state.fn == "fit":
            # Rank 0's T on every rank: the same data, but a GPU's reductions need not agree bit for bit.
            fitted, why = trainer.strategy.broadcast(choose_temperature(logits, labels), src=0)
            pl_module.temperature.fill_(fitted)
            pl_module.calibration_note = why  # saved with the checkpoint (classifier.py)
            if why and why.split(" (")[0] not in self.warned:
                self.warned.add(why.split(" (")[0])
                warning_line(f"calibration: T = 1, the probabilities as trained (epoch {trainer.current_epoch + 1}): "
                             f"{why}")
        temperature = pl_module.temperature.item()
        # Probabilities, not logits: torchmetrics softmaxes only values outside [0, 1].
        raw, calibrated = logits.softmax(-1), (logits / temperature).softmax(-1)
        before, after = (multiclass_calibration_error(p, labels, self.classes, self.bins, "l1", validate_args=False)
                         for p in (raw, calibrated))
        # Every rank holds all the data here and computes the same figures: synced by max, which
        # leaves them as they are (a mean need not, and without sync Lightning warns under DDP).
        pl_module.log(f"{split}/ece", before, on_epoch=True, sync_dist=True, reduce_fx="max")
        pl_module.log(f"{split}/ece_calibrated", after, on_epoch=True, sync_dist=True, reduce_fx="max")
        # The NLL T minimises, after scaling (the split's loss is the NLL before): on test, the
        # proper score that says whether scaling helped, less noisy than ECE on a small split.
        nll = F.cross_entropy(logits / temperature, labels)
        pl_module.log(f"{split}/loss_calibrated", nll, on_epoch=True, sync_dist=True, reduce_fx="max")
        if split == "val":
            pl_module.log(tags.TEMPERATURE, temperature, on_epoch=True, sync_dist=True, reduce_fx="max")
        if not isinstance(trainer.logger, TensorBoardLogger) or not trainer.is_global_zero:
            return
        figure = reliability_diagram(raw, calibrated, labels, self.bins, (before.item(), after.item()), temperature)
        trainer.logger.experiment.add_figure(f"{split}/{tags.RELIABILITY}", figure, logged_step(trainer))

    def _multi_label_end(self, trainer: L.Trainer, pl_module: L.LightningModule, logits: torch.Tensor,
                         labels: torch.Tensor, split: str) -> None:
        """Multi-label: no temperature (T = 1, said in the note); each label's threshold tuned on
        validation during fit, kept in the checkpoint and used by test and predict; the ECE over
        every label's probability; on test, micro- and macro-F1 at 0.5 beside the model's own at
        the tuned thresholds."""
        probabilities = logits.float().sigmoid()
        if split == "val" and trainer.state.fn == "fit":
            pl_module.thresholds.copy_(trainer.strategy.broadcast(tune_thresholds(probabilities, labels), src=0))
            pl_module.calibration_note = MULTI_LABEL_NOTE
        ece = binary_calibration_error(probabilities.flatten(), labels.flatten(), self.bins, "l1", validate_args=False)
        pl_module.log(f"{split}/ece", ece, on_epoch=True, sync_dist=True, reduce_fx="max")
        if split == "test":
            for average, tag in (("micro", "micro_f1"), ("macro", "f1")):
                at_half = multilabel_f1_score(probabilities, labels, self.classes, average=average, validate_args=False)
                pl_module.log(f"test/{tag}_at_0.5", at_half, on_epoch=True, sync_dist=True, reduce_fx="max")
        if isinstance(trainer.logger, TensorBoardLogger) and trainer.is_global_zero:
            figure = label_reliability_diagram(probabilities, labels, self.bins, ece.item())
            trainer.logger.experiment.add_figure(f"{split}/{tags.RELIABILITY}", figure, logged_step(trainer))

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_end(trainer, pl_module, outputs, batch, "val")

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                          batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_end(trainer, pl_module, outputs, batch, "test")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_end(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_end(trainer, pl_module, "test")
