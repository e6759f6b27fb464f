"""``python -m project fit | validate | test``: Lightning's own CLI over the model and the
DataModule, with the data's vocabulary size and class count linked into the model.
``python -m project predict`` takes raw text and a checkpoint alone (predict.py);
``python -m project compare`` runs ``fit`` per cell type and seed and reports (compare.py)."""

import sys
import warnings

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from project.checks import DataError
from project.dashboard import Dashboard
from project.data import TextDataModule
from project.model import TextClassifier


class ProjectCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Lightning's predict needs the training data config; ours needs the checkpoint only.
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Known only once the data is loaded and the tokenizer trained, so linked on instantiate.
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.label_names", "model.label_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(Dashboard, "dashboard")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the best checkpoint on the test split (when there is one).",
        )
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/f1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch={epoch}-val_f1={val/f1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                "trainer.max_epochs": 10,
                # The DataModule's length-bucketed sampler splits batches across ranks itself.
                "trainer.use_distributed_sampler": False,
            }
        )

    def after_fit(self) -> None:
        if not self.config.fit.test_after_fit:
            return
        if "test" not in self.datamodule.dataset:
            rank_zero_info("This data has no test split: skipping the test after fit.")
            return
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best")


def main(args: list[str] | None = None) -> ProjectCLI:
    """Run the CLI. Bad data ends with one line on stderr and exit code 2, as bad flags do."""
    # Raised inside Lightning 2.6 on every step with torch >= 2.10; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    given = sys.argv[1:] if args is None else args
    if given[:1] == ["predict"]:
        from project.predict import main as predict

        return predict(given[1:])
    if given[:1] == ["compare"]:
        from project.compare import main as compare

        return compare(given[1:])
    try:
        return ProjectCLI(
            TextClassifier,
            TextDataModule,
            seed_everything_default=42,
            auto_configure_optimizers=False,  # one way to set the optimizer: the model's own knobs
            args=args,
        )
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
