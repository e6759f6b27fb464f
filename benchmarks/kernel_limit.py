"""The limit: the bare recurrent layer (``torch.nn.LSTM``/``GRU``/``RNN``, bidirectional as the
model, its fused padded kernel) forward + backward on random input of exactly the shapes of the
training batches, against the project's ``fit`` on those batches, side by side in one process.

    python benchmarks/kernel_limit.py                  # SST-2 shapes (short) and BBC News (long)
    python benchmarks/kernel_limit.py --shapes bbc --repeats 5

Both rates are real (non-padding) tokens per second, median over steps after 10 warm-up steps.
``fit / limit`` is the share of the layer's own speed that training keeps after everything
else a step does: embedding, dropout, pooling, loss, optimizer, data and Lightning. Each repeat
also prints ``model / limit``: the same model and fused AdamW in a plain loop with no framework
and no data loading, the most that any training loop around this model could reach.
"""

import argparse
import os
import statistics
import sys
import time

import torch
from train_throughput import ROOT, median_rate, plain_loop, side_by_side

from project.model.encoders import CELLS


def kernel(cli: object, batches: list[dict[str, torch.Tensor]]) -> list[float]:
    hp = cli.model.hparams
    layer = CELLS[hp.cell_type](hp.embedding_dim, hp.hidden_size, num_layers=hp.num_layers,
                                bidirectional=hp.bidirectional, batch_first=True)
    rates = []
    for batch in batches:
        x = torch.randn(*batch["input_ids"].shape, hp.embedding_dim, requires_grad=True)
        started = time.perf_counter()
        layer(x)[0].sum().backward()
        rates.append(float(batch["lengths"].sum()) / (time.perf_counter() - started))
    model = median_rate(plain_loop(cli, batches, fused=True))
    CEILINGS.append(model / median_rate(rates))
    print(f"  model alone (plain loop, fused AdamW) {model:,.0f} tokens/s, model / limit {CEILINGS[-1]:.2f}")
    return rates


CEILINGS: list[float] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="sst2,bbc", help="comma-separated: sst2 (needs ../shared), bbc")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]
    os.chdir(ROOT)
    for shape in args.shapes.split(","):
        CEILINGS.clear()
        side_by_side([shape], args.repeats, "limit", kernel)
        print(f"{shape} median: model / limit {statistics.median(CEILINGS):.2f}")

if __name__ == "__main__":
    main()
