"""The network and what a checkpoint holds: ``classifier`` (``TextClassifier``, the
LightningModule), ``encoders`` (RNN / LSTM / GRU, exact on padded batches), ``vectors``
(pretrained word vectors) and ``checkpoint_format`` (the format version, reading any version)."""

from project.model.classifier import TextClassifier

__all__ = ["TextClassifier"]
