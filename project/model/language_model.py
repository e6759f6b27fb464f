"""The language model of ``pretrain``, top to bottom: token ids -> embedding -> the classifier's own
recurrent encoder -> next-token (and, bidirectional, previous-token) log-probabilities.

It is the classifier without its head: the same ``embedding`` and ``encoder`` modules under the
same names, so ``fit --model.init_from`` copies them over (pretrained.py). A bidirectional model
is a forward and a backward language model side by side (ULMFiT's bidirectional pair): each
direction is a stack of its own (``separate_directions``), since a backward state that had read
the forward one's would have seen the token it is asked for. The forward state at ``t`` has read
``x[:t+1]`` and predicts ``x[t+1]``; the backward state at ``t`` has read ``x[t:]`` and predicts
``x[t-1]``. The loss is the mean of the two directions' per-token cross-entropy.

Regularisation is AWD-LSTM's (Merity et al. 2018), each scaled by ``drop_mult``: locked dropout
on the word vectors, between layers and on the output, DropConnect on the recurrent weights,
and word dropout. The output layer is ``nn.AdaptiveLogSoftmaxWithLoss`` by default: a full
softmax over a 20,000-word vocabulary costs ~20x the LSTM layer it sits on (benchmarks/
unlabelled.py measures both)."""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from project import tags
from project.errors import UserError
from project.model.base import RecurrentModule, check_knobs
from project.model.encoders import CellType, Dropout, RecurrentEncoder, check_memory

Softmax = Literal["adaptive", "full"]


def cutoffs(vocab_size: int) -> list[int]:
    """The adaptive softmax's clusters: the most frequent tenth of the vocabulary (most tokens of
    any text, Zipf's law) in the head, the next four tenths, then the rest (trained tokenizers
    number tokens by frequency)."""
    return sorted({c for c in (vocab_size // 10, vocab_size // 2) if 0 < c < vocab_size})


class LanguageModel(RecurrentModule):
    validation_tags = tags.LM_VALIDATION  # what metrics.json records per validation

    def __init__(
        self,
        vocab_size: int,
        cell_type: CellType = "lstm",
        embedding_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        embedding_dropout: float = 0.25,
        word_dropout: float = 0.02,
        layer_dropout: float = 0.15,
        weight_drop: float = 0.2,
        output_dropout: float = 0.1,
        drop_mult: float = 1.0,
        softmax: Softmax = "adaptive",
        optimizer: Literal["adamw", "sgd"] = "adamw",
        learning_rate: float = 2e-2,
        weight_decay: float = 0.01,
        lr_schedule: Literal["constant", "onecycle", "cosine", "linear"] = "onecycle",
        warmup: float = 0.25,
    ) -> None:
        """
        Args:
            vocab_size: Rows of the embedding table; taken from the data, not typed.
            cell_type: Recurrent cell: ``rnn`` (tanh), ``lstm`` or ``gru``; the classifier
                started from this model has the same.
            embedding_dim: Size of each word vector.
            hidden_size: Hidden units per direction and layer.
            num_layers: Stacked recurrent layers.
            bidirectional: Train a backward language model beside the forward one, for a
                bidirectional classifier.
            embedding_dropout: Locked dropout on the word vectors (AWD-LSTM's input dropout).
            word_dropout: Share of tokens whose whole vector is dropped (its embedding dropout).
            layer_dropout: Locked dropout between stacked layers (its hidden dropout).
            weight_drop: DropConnect on the recurrent weights (its weight dropout).
            output_dropout: Locked dropout on the top layer's states, before the softmax.
            drop_mult: Scales every dropout above (ULMFiT's one knob for all of them).
            softmax: ``adaptive`` (``nn.AdaptiveLogSoftmaxWithLoss``: frequent tokens cost a small
                softmax, rare ones a second, smaller one) or ``full``.
            optimizer: ``adamw``, or ``sgd`` with Nesterov momentum 0.9.
            learning_rate: Peak learning rate. 2e-2: on BBC News (seed 42, 5 epochs) validation
                perplexity 183 against 250 at 3e-3, and the classifier started from it 70.9% test
                accuracy on 10% of the labels against 48.0%.
            weight_decay: Decoupled weight decay (AdamW) or L2 (SGD).
            lr_schedule: ``onecycle``, ``cosine``, ``linear`` or ``constant``, as fit's.
            warmup: Share of the training steps spent warming up (all schedules but ``constant``).
        """
        super().__init__()
        self.save_hyperparameters(logger=False)
        drops = check_knobs(
            {"embedding_dim": embedding_dim, "hidden_size": hidden_size, "num_layers": num_layers}, {},
            {"embedding_dropout": embedding_dropout, "word_dropout": word_dropout, "layer_dropout": layer_dropout,
             "weight_drop": weight_drop, "output_dropout": output_dropout},
            drop_mult, learning_rate, weight_decay, warmup)
        if vocab_size < 3:
            raise UserError(f"the vocabulary has {vocab_size} tokens; fix: give more text, or a lower --data.min_frequency")
        check_memory(vocab_size, embedding_dim, hidden_size, num_layers, bidirectional, cell_type)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.embedding_dropout = Dropout(drops["embedding_dropout"], locked=True)
        self.word_dropout = Dropout(drops["word_dropout"])
        self.encoder = RecurrentEncoder(cell_type, embedding_dim, hidden_size, num_layers, bidirectional,
                                        drops["layer_dropout"], locked=True, weight_drop=drops["weight_drop"],
                                        separate_directions=True)
        self.encoder.init_orthogonal()
        self.output_dropout = Dropout(drops["output_dropout"], locked=True)
        self.decoders = nn.ModuleList(
            nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, cutoffs(vocab_size), div_value=4.0)
            if softmax == "adaptive" else nn.Linear(hidden_size, vocab_size)
            for _ in range(2 if bidirectional else 1)
        )
        self.val_nll = MeanMetric()

    def states(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, directions * hidden)``: every direction's state, aligned in time."""
        x = self.embedding_dropout(self.embedding(input_ids))
        if self.training and self.word_dropout.p > 0:
            x = x * self.word_dropout(torch.ones_like(x[..., :1]))  # (B, T, 1): one draw per token
        return self.output_dropout(self.encoder(x, lengths))

    def _nll(self, decoder: nn.Module, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(decoder, nn.AdaptiveLogSoftmaxWithLoss):
            return decoder(states, targets).loss
        return F.cross_entropy(decoder(states), targets)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The mean next-token (and previous-token) cross-entropy over the batch's real
        positions, and how many targets each direction had."""
        states = self.states(input_ids, lengths)
        hidden = self.hparams.hidden_size
        # Position t < length - 1 has a next token; the same mask, one step on, has a previous one.
        steps = torch.arange(input_ids.size(1) - 1, device=input_ids.device)
        has_next = steps < lengths.to(input_ids.device).unsqueeze(1) - 1
        losses = [self._nll(self.decoders[0], states[:, :-1, :hidden][has_next], input_ids[:, 1:][has_next])]
        if self.hparams.bidirectional:
            losses.append(self._nll(self.decoders[1], states[:, 1:, hidden:][has_next], input_ids[:, :-1][has_next]))
        return torch.stack(losses).mean(), int(has_next.sum())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, targets = self(batch["input_ids"], batch["lengths"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=targets, sync_dist=True)
        return self.checked(loss)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, targets = self(batch["input_ids"], batch["lengths"])
        self.val_nll.update(loss, targets)  # weighted by targets: the mean over every token

    def on_validation_epoch_end(self) -> None:
        nll = self.val_nll.compute()  # summed over DDP ranks by torchmetrics
        self.val_nll.reset()
        self.log_dict({tags.VAL_LOSS: nll, tags.VAL_PERPLEXITY: torch.exp(nll)})

    @torch.no_grad()
    def generate(self, prefix: list[int], steps: int, generator: torch.Generator, temperature: float = 1.0) -> list[int]:
        """``steps`` tokens sampled from the forward model after ``prefix`` (TensorBoard's
        samples, samples.py), from ``generator`` alone: the run's random state is left as it was."""
        ids = list(prefix)
        for _ in range(steps):
            x = torch.tensor([ids], device=self.device)
            state = self.states(x, torch.tensor([len(ids)]))[:, -1, : self.hparams.hidden_size]
            decoder = self.decoders[0]
            logits = decoder.log_prob(state) if isinstance(decoder, nn.AdaptiveLogSoftmaxWithLoss) else decoder(state)
            probs = (logits.float() / temperature).softmax(-1).cpu()
            ids.append(int(torch.multinomial(probs, 1, generator=generator)))
        return ids[len(prefix):]
