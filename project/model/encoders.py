"""Recurrent encoders that are exact on right-padded batches and run the fused padded kernel.

Why not ``pack_padded_sequence``: on CPU the packed path steps through time with a shrinking
batch and no fused kernel, 30-40x slower than the padded kernel on long texts.

Why padding is still harmless here: a forward RNN over right-padded input is already exact at
every real position, because the padding comes after it. Only the backward direction is wrong
(it would start inside the padding). So each sequence is reversed *within its own length*
(padding stays at the end), a forward RNN runs over that, and its outputs are reversed back.
Every direction of every layer is then one call of the padded kernel, and the outputs at real
positions equal those of a batch without padding. Positions past a sequence's length hold
values that nothing downstream may read: poolers (``Pool``, below) mask them.

On CUDA the same parameters run cuDNN's fused kernel instead: all layers and both directions in
one call, over a packed batch, which cuDNN handles natively and exactly (its variable-length
path is fast there, unlike the CPU's). The multi-layer ``torch.nn`` module it needs is a
parameterless template on the ``meta`` device, called with this module's own tensors
(``torch.func.functional_call``), so a checkpoint trained on either device runs on the other.

Under CPU mixed precision (``bf16-mixed``, ``16-mixed``) the recurrent layers run in the autocast
dtype where torch has a kernel for it, and in fp32 where it has none: oneDNN's LSTM needs bf16
instructions (AVX-512 BF16 or AMX) and has no fp16 at all, and an AVX2-only CPU raised "could not
create a primitive descriptor" at the first step. ``autocast_runs`` finds out by running the cell
once (not by reading CPU flags, which say nothing about the build of oneDNN); the rest of the model
stays mixed.

``check_memory`` refuses sizes of embedding and encoder that cannot fit, before they are built.
"""

import functools
import warnings
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from project.errors import UserError

CellType = Literal["rnn", "lstm", "gru"]
CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask is ``uniform >= p``: torch's CPU dropout draws its mask with
    ``bernoulli_``, one thread at ~9 ns per element, 2x slower forward + backward (17 vs 8 ms on a
    BBC batch's word vectors, 5% of its training step). Same distribution; other devices, and
    evaluation, are torch's own.

    ``locked``: on ``(B, T, D)`` input, one mask per text, the same at every time step
    (variational dropout, Gal & Ghahramani 2016; AWD-LSTM's locked dropout): a unit dropped for a
    text is dropped for all of it, so the recurrence cannot route around it."""

    def __init__(self, p: float = 0.5, locked: bool = False) -> None:
        super().__init__(p)
        self.locked = locked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.p:
            return super().forward(x)
        if self.locked and x.dim() == 3:
            keep = torch.rand(x.size(0), 1, x.size(2), device=x.device) >= self.p
            return x * keep.to(x.dtype).mul_(1 / (1 - self.p))
        if x.device.type != "cpu":
            return super().forward(x)
        return x * (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1 / (1 - self.p))


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse ``x[b, :lengths[b]]`` along time for each row, keeping the padding in place."""
    steps = torch.arange(x.size(1), device=x.device)
    last = lengths.to(x.device).unsqueeze(1) - 1
    index = torch.where(steps <= last, last - steps, steps)  # (B, T), its own inverse
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


@functools.cache
def autocast_runs(cell: str, dtype: torch.dtype) -> bool:
    """Whether torch's CPU ``cell`` layer runs under ``torch.autocast("cpu", dtype)`` on this
    machine: a real forward and backward of a tiny layer, once per process."""
    with torch.random.fork_rng(devices=[]):  # the layer's random init leaves the run's seed alone
        layer = CELLS[cell](2, 2, batch_first=True)
    x = torch.ones(1, 2, 2, requires_grad=True)
    try:
        with torch.autocast("cpu", dtype=dtype):
            out = layer(x)[0]
        out.float().sum().backward()
    except RuntimeError:  # oneDNN: "could not create a primitive descriptor for the LSTM ..."
        return False
    return True


class RecurrentEncoder(nn.Module):
    """Stack of (bi)directional RNN / LSTM / GRU layers over right-padded ``(B, T, E)`` input.

    Each direction of each layer is a single-layer ``nn.RNN``/``nn.LSTM``/``nn.GRU``, so the
    parameter count equals that of the matching multi-layer ``torch.nn`` module.

    ``separate_directions``: each direction is a stack of its own (layer ``i`` of a direction
    reads layer ``i - 1`` of that direction only), as a forward and a backward language model
    are: pretrain.py trains such a pair, and a classifier started from it has this shape. With
    one layer it is the same as a joint stack.

    ``weight_drop``: DropConnect on the hidden-to-hidden weights (AWD-LSTM, Merity et al. 2018):
    one mask per weight matrix per training step, drawn for every layer and direction in one
    order before either path runs, so the padded and the packed path drop the same weights.
    """

    packed: bool | None = None  # None: packed on CUDA, padded elsewhere; the tests set it to compare

    def __init__(
        self,
        cell_type: CellType,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        locked: bool = False,
        weight_drop: float = 0.0,
        separate_directions: bool = False,
    ) -> None:
        super().__init__()
        cell = CELLS[cell_type]
        self.cell_type = cell_type
        self.bidirectional = bidirectional
        self.separate = separate_directions and bidirectional and num_layers > 1
        self.weight_drop = weight_drop
        self.output_size = hidden_size * (2 if bidirectional else 1)
        upper = hidden_size if self.separate else self.output_size  # what layers above the first read
        self.layers = nn.ModuleList(
            nn.ModuleList(
                cell(input_size if i == 0 else upper, hidden_size, batch_first=True)
                for _ in range(2 if bidirectional else 1)
            )
            for i in range(num_layers)
        )
        # Applied to the input of every layer but the first, as torch.nn's own ``dropout``.
        self.dropout = Dropout(dropout, locked)
        # The packed path's multi-layer modules: no parameters of their own (meta), not registered
        # (so not in the state dict), called with the parameters above. Separate directions: one
        # unidirectional stack per direction, the backward one over each text reversed.
        stacks = [(d, False) for d in range(2)] if self.separate else [(None, bidirectional)]
        self.__dict__["fused"] = [
            (cell(input_size, hidden_size, num_layers, batch_first=True, device="meta",
                  dropout=dropout if num_layers > 1 and not locked else 0.0, bidirectional=both),
             {f"{name}_l{i}{'_reverse' if d else ''}": (i, d if own is None else own, f"{name}_l0")
              for i in range(num_layers) for d in range(2 if both else 1)
              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}, own)
            for own, both in stacks
        ]

    def init_orthogonal(self) -> None:
        """Orthogonal recurrent weights per gate (a product of them neither grows nor shrinks a
        state), Xavier input weights, zero biases, and an LSTM forget-gate bias of 1 so cells
        remember by default early in training (Jozefowicz et al. 2015)."""
        for directions in self.layers:
            for rnn in directions:
                hidden = rnn.hidden_size
                for gate in rnn.weight_hh_l0.data.split(hidden):
                    nn.init.orthogonal_(gate)
                for gate in rnn.weight_ih_l0.data.split(hidden):
                    nn.init.xavier_uniform_(gate)
                nn.init.zeros_(rnn.bias_ih_l0)
                nn.init.zeros_(rnn.bias_hh_l0)
                if isinstance(rnn, nn.LSTM):  # gates in order input, forget, cell, output
                    nn.init.ones_(rnn.bias_ih_l0.data[hidden : 2 * hidden])

    def dropped_weights(self) -> dict[tuple[int, int], torch.Tensor]:
        """This step's hidden-to-hidden weights of each (layer, direction) under ``weight_drop``;
        empty in evaluation or without it (the modules' own weights then run)."""
        if not self.training or not self.weight_drop:
            return {}
        keep = 1 - self.weight_drop
        return {(i, d): rnn.weight_hh_l0 * (torch.rand_like(rnn.weight_hh_l0) < keep).to(rnn.weight_hh_l0.dtype) / keep
                for i, directions in enumerate(self.layers) for d, rnn in enumerate(directions)}

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, aligned: bool = True) -> torch.Tensor:
        """Return ``(B, T, output_size)``; forward state at ``t`` has read ``x[:t+1]``, backward
        state at ``t`` has read ``x[t:length]``.

        ``aligned=False`` leaves the last layer's backward states reversed within each length
        (its state at ``t`` has read ``x[length-1-t:length]``): a pooling that does not care
        about order, mean or max, then skips a gather and its backward (2% of a BBC step)."""
        dropped = self.dropped_weights()
        # Locked dropout between layers has no form in cuDNN's multi-layer call: in training such an
        # encoder takes the padded path, exact on any device (each layer still one cuDNN call on CUDA).
        locked_between = self.training and self.dropout.locked and self.dropout.p and len(self.layers) > 1
        if (self.packed if self.packed is not None else x.is_cuda) and not locked_between:
            return self._packed(x, lengths, dropped)
        if (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and not autocast_runs(self.cell_type, torch.get_autocast_dtype("cpu"))):
            with torch.autocast("cpu", enabled=False):  # no kernel in that dtype here: fp32 (module docstring)
                return self._padded(x.float(), lengths, aligned, dropped)
        return self._padded(x, lengths, aligned, dropped)

    def _layer(self, i: int, d: int, x: torch.Tensor, dropped: dict) -> torch.Tensor:
        rnn = self.layers[i][d]
        if (i, d) not in dropped:
            return rnn(x)[0]
        return torch.func.functional_call(rnn, {"weight_hh_l0": dropped[i, d]}, (x,))[0]

    def _padded(self, x: torch.Tensor, lengths: torch.Tensor, aligned: bool, dropped: dict) -> torch.Tensor:
        """Each direction of each layer as one call of the padded kernel (module docstring)."""
        if self.separate:  # each direction its own stack; the backward one reads each text reversed
            forward, backward = x, reverse_within_length(x, lengths)
            for i in range(len(self.layers)):
                if i > 0:
                    forward, backward = self.dropout(forward), self.dropout(backward)
                forward, backward = self._layer(i, 0, forward, dropped), self._layer(i, 1, backward, dropped)
            return torch.cat([forward, reverse_within_length(backward, lengths) if aligned else backward], dim=-1)
        for i in range(len(self.layers)):
            if i > 0:
                x = self.dropout(x)
            outputs = [self._layer(i, 0, x, dropped)]
            if self.bidirectional:
                backward = self._layer(i, 1, reverse_within_length(x, lengths), dropped)
                last = i == len(self.layers) - 1
                outputs.append(backward if last and not aligned else reverse_within_length(backward, lengths))
            x = torch.cat(outputs, dim=-1)
        return x

    def _packed(self, x: torch.Tensor, lengths: torch.Tensor, dropped: dict) -> torch.Tensor:
        """cuDNN's fused kernel over the packed batch; every state aligned, zeros past a length.
        ``lengths`` should be on the host (model.py keeps them there): packing reads them, and
        reading a GPU tensor would make the host wait for the GPU at every step. The batch is
        sorted here rather than by ``enforce_sorted=False``, whose blocking copy of the order to
        the GPU would wait for all queued work too: the order goes over pinned, without waiting."""
        host = lengths.cpu()
        order = host.argsort(descending=True)
        index = order.pin_memory().to(x.device, non_blocking=True) if x.is_cuda else order
        outputs = []
        for fused, names, own in self.fused:
            params = {name: dropped.get((i, d)) if own_name == "weight_hh_l0" and (i, d) in dropped
                      else getattr(self.layers[i][d], own_name) for name, (i, d, own_name) in names.items()}
            fused.train(self.training)  # its dropout between layers, in training only
            source = reverse_within_length(x, lengths) if own == 1 else x
            packed = pack_padded_sequence(source.index_select(0, index), host[order], batch_first=True)
            with warnings.catch_warnings():  # cuDNN gathers the per-direction weights each call: a copy of
                # a few MB, said in a warning each step; one flat buffer would break the CPU path's modules.
                warnings.filterwarnings("ignore", message=r".*not part of single contiguous chunk of memory")
                out = torch.func.functional_call(fused, params, (packed,))[0]
            out = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]
            out = torch.empty_like(out).index_copy_(0, index, out)  # back in the batch's order
            outputs.append(reverse_within_length(out, lengths) if own == 1 else out)
        return torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]


Pooling = Literal["last", "mean", "max", "attention", "concat"]


class Pool(nn.Module):
    """One vector per sequence from encoder states ``(B, T, D)``, reading real positions only."""

    def __init__(self, pooling: Pooling, size: int, bidirectional: bool) -> None:
        super().__init__()
        self.pooling, self.bidirectional = pooling, bidirectional
        self.output_size = size * (3 if pooling == "concat" else 1)
        if pooling == "attention":  # additive attention: score_t = v . tanh(W h_t)
            self.score = nn.Sequential(nn.Linear(size, size), nn.Tanh(), nn.Linear(size, 1, bias=False))

    def forward(self, states: torch.Tensor, lengths: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        lengths = lengths.to(states.device, non_blocking=True)  # from pinned host memory: no wait
        pooling = pooling or self.pooling
        if pooling == "concat":  # ULMFiT's [last, max, mean]
            return torch.cat([self(states, lengths, kind) for kind in ("last", "max", "mean")], dim=-1)
        if pooling == "last":
            # Forward state after the last real token; backward state after reading back to t=0.
            last = states[torch.arange(states.size(0), device=states.device), lengths - 1]
            if not self.bidirectional:
                return last
            half = states.size(-1) // 2
            return torch.cat([last[:, :half], states[:, 0, half:]], dim=-1)
        real = (torch.arange(states.size(1), device=states.device) < lengths.unsqueeze(1)).unsqueeze(-1)
        if pooling == "mean":
            return states.masked_fill(~real, 0.0).sum(1) / lengths.unsqueeze(1)
        if pooling == "max":
            return states.masked_fill(~real, float("-inf")).amax(1)
        weights = self.score(states).masked_fill(~real, float("-inf")).softmax(1)  # (B, T, 1)
        return (weights * states.masked_fill(~real, 0.0)).sum(1)


def check_memory(vocab: int, embedding: int, hidden: int, layers: int, bidirectional: bool, cell: str) -> None:
    """Refuse sizes whose weights, gradients and two Adam moments cannot fit in free memory,
    before building them: a layer count of 10**13 would otherwise build layers until the
    kernel kills the process."""
    gates, directions = {"rnn": 1, "lstm": 4, "gru": 3}[cell], 2 if bidirectional else 1
    layer = lambda inputs: directions * gates * (hidden * (inputs + hidden) + 2 * hidden)  # noqa: E731
    params = vocab * embedding + layer(embedding) + (layers - 1) * layer(hidden * directions)
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return
    if params * 4 * 4 > free:
        raise UserError(f"the model would have {params:,} parameters, {params * 16 / 2**30:,.1f} GB with gradients and "
                        f"optimizer state, more than the {free / 2**30:.1f} GB free here; fix: lower "
                        f"--model.num_layers, --model.hidden_size, --model.embedding_dim or --data.max_vocab_size")
