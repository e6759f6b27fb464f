"""What a language model writes, in TensorBoard's Text tab (``samples/generated``) after each
validation of ``pretrain``: a few validation texts' first words and the forward model's
continuation, so a run shows what it has learned beside its perplexity curve.

Sampled from a generator of its own, seeded by the step: the run's random state (its dropout
masks, which a resumed run must draw again) is not touched, and a run writes the same samples
at the same step."""

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from project import tags
from project.errors import UserError


class TextSamples(Callback):
    def __init__(self, count: int = 3, prompt_tokens: int = 5, length: int = 30) -> None:
        """
        Args:
            count: Samples per validation (0: none).
            prompt_tokens: Words of a validation text the model goes on from.
            length: Tokens the model writes per sample.
        """
        for knob, value in (("count", count), ("prompt_tokens", prompt_tokens), ("length", length)):
            if value < (0 if knob == "count" else 1):
                raise UserError(f"--samples.{knob} is {value}; fix: {0 if knob == 'count' else 1} or more")
        self.count, self.prompt_tokens, self.length = count, prompt_tokens, length

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.count or trainer.logger is None or not trainer.is_global_zero:
            return
        data = trainer.datamodule
        windows = data.dataset["validation"].data.column("input_ids")
        generator = torch.Generator().manual_seed(trainer.global_step)
        lines, was_training = [], pl_module.training
        pl_module.eval()
        try:
            for row in range(min(self.count, len(windows))):
                prompt = windows[row].as_py()[: self.prompt_tokens]
                written = pl_module.generate(prompt, self.length, generator)
                lines.append(f"**{data.tokenizer.decode(prompt)}** {data.tokenizer.decode(written)}")
        finally:
            pl_module.train(was_training)
        trainer.logger.experiment.add_text(tags.SAMPLES, "\n\n".join(lines), trainer.global_step)
