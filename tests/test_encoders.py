import itertools

import pytest
import torch
from torch import nn

from project.model.classifier import Pool, TextClassifier
from project.model.encoders import CELLS, Dropout, RecurrentEncoder, reverse_within_length

# Random weights and batches: conftest's autouse ``seeded`` fixture seeds torch before each test.
LENGTHS = torch.tensor([7, 3, 5, 1])


def random_batch(vocab: int = 50, extra_padding: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, vocab, (len(LENGTHS), int(LENGTHS.max()) + extra_padding))
    ids[torch.arange(ids.size(1)) >= LENGTHS.unsqueeze(1)] = 0
    return ids, LENGTHS


def test_reverse_within_length_keeps_padding_in_place() -> None:
    x = torch.arange(1, 6).repeat(2, 1).unsqueeze(-1)  # rows 1..5
    out = reverse_within_length(x, torch.tensor([5, 3])).squeeze(-1)
    assert out.tolist() == [[5, 4, 3, 2, 1], [3, 2, 1, 4, 5]]


@pytest.mark.parametrize("cell_type", sorted(CELLS))
@pytest.mark.parametrize("num_layers", [1, 2])
def test_matches_torch_bidirectional_module_on_unpadded_input(cell_type: str, num_layers: int) -> None:
    reference = CELLS[cell_type](6, 5, num_layers, batch_first=True, bidirectional=True)
    encoder = RecurrentEncoder(cell_type, 6, 5, num_layers, bidirectional=True)
    assert sum(p.numel() for p in encoder.parameters()) == sum(p.numel() for p in reference.parameters())
    with torch.no_grad():
        for layer, (forward, backward) in enumerate(encoder.layers):
            for name, param in forward.named_parameters():
                param.copy_(getattr(reference, name.replace("l0", f"l{layer}")))
            for name, param in backward.named_parameters():
                param.copy_(getattr(reference, name.replace("l0", f"l{layer}") + "_reverse"))
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()) + 3, 6)
    out = encoder(x, LENGTHS)
    assert out.shape == (len(LENGTHS), x.size(1), 10)
    for row, length in enumerate(LENGTHS.tolist()):
        expected = reference(x[row : row + 1, :length])[0][0]
        torch.testing.assert_close(out[row, :length], expected, atol=1e-5, rtol=0)


COMBINATIONS = list(
    itertools.product(sorted(CELLS), [False, True], [1, 2], ["last", "mean", "max", "attention"])
)


@pytest.mark.parametrize(("cell_type", "bidirectional", "num_layers", "pooling"), COMBINATIONS)
def test_every_combination_trains_a_step_and_ignores_padding(cell_type, bidirectional, num_layers, pooling) -> None:
    model = TextClassifier(
        vocab_size=50, label_names=["a", "b", "c"], cell_type=cell_type, embedding_dim=8, hidden_size=6,
        num_layers=num_layers, bidirectional=bidirectional, pooling=pooling,
    )
    ids, lengths = random_batch()
    loss = nn.functional.cross_entropy(model(ids, lengths), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()
    with torch.no_grad():
        logits = model(ids, lengths)
        padded_more = torch.nn.functional.pad(ids, (0, 9))  # 9 more pad columns
        assert logits.shape == (len(LENGTHS), 3) and torch.isfinite(logits).all()
        torch.testing.assert_close(model(padded_more, lengths), logits, atol=1e-5, rtol=0)
        for row, length in enumerate(lengths.tolist()):  # each text alone, with no padding
            alone = model(ids[row : row + 1, :length], lengths[row : row + 1])
            torch.testing.assert_close(alone[0], logits[row], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell_type", sorted(CELLS))
def test_one_training_step_updates_every_recurrent_weight(cell_type: str) -> None:
    model = TextClassifier(vocab_size=50, label_names=['a', 'b', 'c'], cell_type=cell_type, embedding_dim=8,
                           hidden_size=6, num_layers=2)
    ids, lengths = random_batch()
    loss = nn.functional.cross_entropy(model(ids, lengths), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name, param in model.encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell_type", sorted(CELLS))
def test_orthogonal_init_and_lstm_forget_bias(cell_type: str) -> None:
    hidden = 6
    model = TextClassifier(vocab_size=50, label_names=["a", "b"], cell_type=cell_type, hidden_size=hidden)
    for directions in model.encoder.layers:
        for rnn in directions:
            for gate in rnn.weight_hh_l0.detach().split(hidden):
                torch.testing.assert_close(gate @ gate.T, torch.eye(hidden), atol=1e-5, rtol=0)
            bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach()
            expected = torch.zeros_like(bias)
            if cell_type == "lstm":
                expected[hidden : 2 * hidden] = 1.0  # the forget gate
            assert torch.equal(bias, expected)
    torch_init = TextClassifier(vocab_size=50, label_names=["a", "b"], cell_type=cell_type, hidden_size=hidden,
                                init="torch")
    gate = torch_init.encoder.layers[0][0].weight_hh_l0.detach()[:hidden]
    assert not torch.allclose(gate @ gate.T, torch.eye(hidden), atol=1e-2)


def test_word_dropout_drops_whole_token_vectors_in_training_only() -> None:
    model = TextClassifier(vocab_size=50, label_names=["a", "b"], embedding_dropout=0.0, word_dropout=0.5)
    seen = {}
    model.encoder.register_forward_pre_hook(lambda module, args: seen.update(x=args[0].detach()))
    ids = torch.randint(1, 50, (8, 30))
    model.train()(ids, torch.full((8,), 30))
    zeroed = (seen["x"] == 0).all(-1)
    assert 0.3 < zeroed.float().mean() < 0.7  # whole vectors, about half of the tokens
    kept = ~zeroed
    torch.testing.assert_close(seen["x"][kept], 2 * model.embedding(ids)[kept].detach())  # rescaled
    model.eval()(ids, torch.full((8,), 30))
    assert not (seen["x"] == 0).all(-1).any()


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_unaligned_backward_states_pool_to_the_same_vector(pooling: str) -> None:
    encoder = RecurrentEncoder("lstm", 4, 5, num_layers=2)
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()) + 2, 4)
    aligned, unaligned = encoder(x, LENGTHS), encoder(x, LENGTHS, aligned=False)
    torch.testing.assert_close(unaligned[..., 5:], reverse_within_length(aligned[..., 5:], LENGTHS))
    pool = Pool(pooling, 10, bidirectional=True)
    torch.testing.assert_close(pool(unaligned, LENGTHS), pool(aligned, LENGTHS))


def test_dropout_drops_a_share_p_and_rescales_the_rest_in_training_only() -> None:
    dropout = Dropout(0.3)
    x = torch.ones(200_000, requires_grad=True)
    out = dropout(x)
    dropped = out == 0
    assert abs(dropped.float().mean().item() - 0.3) < 0.01
    torch.testing.assert_close(out[~dropped], torch.full_like(out[~dropped], 1 / 0.7))
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())  # the gradient goes through the same mask
    assert torch.equal(dropout.eval()(x), x)


def test_dropout_keeps_the_input_dtype() -> None:
    x = torch.ones(1000, dtype=torch.bfloat16)
    assert Dropout(0.5)(x).dtype == torch.bfloat16


# --- the CUDA path (cuDNN's fused kernel over a packed batch), run here on the CPU ---


@pytest.mark.parametrize(("cell_type", "bidirectional", "num_layers", "pooling"), COMBINATIONS)
def test_the_packed_path_gives_the_same_outputs_and_gradients(cell_type, bidirectional, num_layers, pooling) -> None:
    """On CUDA the encoder packs the batch and runs one fused multi-layer module with the same
    parameters (encoders.py); packing is exact on the CPU too, only slow there. Both paths,
    one model, one batch: the same logits and the same gradient for every parameter."""
    model = TextClassifier(
        vocab_size=50, label_names=["a", "b", "c"], cell_type=cell_type, embedding_dim=8, hidden_size=6,
        num_layers=num_layers, bidirectional=bidirectional, pooling=pooling, layer_dropout=0.5,
    ).eval()  # dropout off: its masks are drawn differently by the two paths
    ids, lengths = random_batch(extra_padding=2)
    results = []
    for packed in (False, True):
        model.encoder.packed = packed
        model.zero_grad()
        logits = model(ids, lengths)
        nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (padded, padded_grads), (packed, packed_grads) = results
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)
    assert packed_grads.keys() == padded_grads.keys() == {n for n, p in model.named_parameters() if p.requires_grad}
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_the_packed_path_is_chosen_on_cuda_only_and_keeps_no_weights_of_its_own() -> None:
    encoder = RecurrentEncoder("lstm", 8, 6, num_layers=2, bidirectional=True)
    # Its fused module is a template on the meta device, outside the state dict: one set of weights.
    assert all(not name.startswith("fused") for name in encoder.state_dict())
    assert sum(p.numel() for p in encoder.parameters()) == sum(
        p.numel() for p in nn.LSTM(8, 6, num_layers=2, bidirectional=True).parameters())
    x = torch.randn(4, 7, 8)
    assert encoder.packed is None and not x.is_cuda  # by device: here the padded path, which leaves
    out = encoder(x, LENGTHS)                         # its padding positions unmasked (not zero)
    assert out[1, 3:].abs().sum() > 0
    encoder.packed = True
    assert encoder(x, LENGTHS)[1, 3:].abs().sum() == 0  # pad_packed_sequence's zeros


# --- AWD-LSTM's regularisation and a language model's separate directions (issue 30) ---


@pytest.mark.parametrize("cell_type", sorted(CELLS))
@pytest.mark.parametrize(("bidirectional", "separate"), [(False, False), (True, False), (True, True)])
def test_weight_drop_draws_the_same_masks_for_both_paths(cell_type: str, bidirectional: bool, separate: bool) -> None:
    """DropConnect on the recurrent weights in training: from one seed, the padded path and the
    packed (cuDNN) path drop the same weights, so outputs and gradients agree; in evaluation the
    weights are whole."""
    encoder = RecurrentEncoder(cell_type, 6, 5, 2, bidirectional, weight_drop=0.5, separate_directions=separate)
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()) + 2, 6, requires_grad=True)
    results = []
    for packed in (False, True):
        encoder.packed = packed
        encoder.zero_grad()
        torch.manual_seed(3)
        out = encoder(x, LENGTHS)
        real = torch.arange(x.size(1)) < LENGTHS.unsqueeze(1)
        out[real].sum().backward()
        results.append((out[real].detach(), {n: p.grad.clone() for n, p in encoder.named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=0)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)
    torch.manual_seed(3)
    dropped = encoder(x, LENGTHS)
    encoder.weight_drop = 0.0
    assert not torch.allclose(dropped[real], encoder(x, LENGTHS)[real])  # the masks changed the output
    whole = encoder.eval()(x, LENGTHS)
    encoder.weight_drop = 0.5
    assert encoder.dropped_weights() == {}
    torch.testing.assert_close(encoder(x, LENGTHS), whole)


def test_weight_drop_drops_a_share_of_each_recurrent_matrix_and_rescales_the_rest() -> None:
    encoder = RecurrentEncoder("lstm", 6, 40, 1, True, weight_drop=0.3)
    for (i, d), weight in encoder.dropped_weights().items():
        own = encoder.layers[i][d].weight_hh_l0
        kept = weight != 0
        assert 0.6 < kept.float().mean() < 0.8
        torch.testing.assert_close(weight[kept], own[kept] / 0.7)


def test_locked_dropout_drops_the_same_units_at_every_step() -> None:
    dropout = Dropout(0.5, locked=True)
    out = dropout(torch.ones(4, 9, 16))
    assert torch.equal(out, out[:, :1].expand_as(out))  # one mask per text, for all its steps
    assert not torch.equal(out[0], out[1])  # each text its own
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(dropout.eval()(torch.ones(4, 9, 16)), torch.ones(4, 9, 16))


@pytest.mark.parametrize("cell_type", sorted(CELLS))
def test_separate_directions_never_let_a_state_see_the_token_it_predicts(cell_type: str) -> None:
    """A language model's forward state at t has read x[:t+1] only, its backward state x[t:]
    only, through every layer: changing token k changes no forward state before k and no backward
    state after it (a joint stack's second layer would leak both ways)."""
    encoder = RecurrentEncoder(cell_type, 6, 5, 3, True, separate_directions=True).eval()
    x = torch.randn(1, 9, 6)
    changed = x.clone()
    changed[0, 4] += 1.0
    lengths = torch.tensor([9])
    before, after = encoder(x, lengths), encoder(changed, lengths)
    torch.testing.assert_close(before[0, :4, :5], after[0, :4, :5])  # forward, before the change
    torch.testing.assert_close(before[0, 5:, 5:], after[0, 5:, 5:])  # backward, after it
    assert not torch.allclose(before[0, 4:, :5], after[0, 4:, :5])
    joint = RecurrentEncoder(cell_type, 6, 5, 3, True).eval()
    assert not torch.allclose(joint(x, lengths)[0, :4, :5], joint(changed, lengths)[0, :4, :5])


@pytest.mark.parametrize("cell_type", sorted(CELLS))
def test_separate_directions_take_the_packed_path_exactly(cell_type: str) -> None:
    encoder = RecurrentEncoder(cell_type, 6, 5, 2, True, separate_directions=True).eval()
    x = torch.randn(len(LENGTHS), int(LENGTHS.max()) + 2, 6)
    real = torch.arange(x.size(1)) < LENGTHS.unsqueeze(1)
    padded = encoder(x, LENGTHS)
    encoder.packed = True
    torch.testing.assert_close(encoder(x, LENGTHS)[real], padded[real], atol=1e-5, rtol=0)


def test_concat_pooling_is_last_max_and_mean_side_by_side() -> None:
    pool = Pool("concat", 10, bidirectional=True)
    states = torch.randn(len(LENGTHS), int(LENGTHS.max()), 10)
    out = pool(states, LENGTHS)
    assert pool.output_size == 30 and out.shape == (len(LENGTHS), 30)
    for part, kind in zip(out.split(10, dim=-1), ("last", "max", "mean"), strict=True):
        torch.testing.assert_close(part, Pool(kind, 10, bidirectional=True)(states, LENGTHS))
