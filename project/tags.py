"""Every metric name a run records, in one place: the TensorBoard tags the callbacks log, the
``trainer.callback_metrics`` keys they read back, the keys of ``metrics.json`` (metrics_file.py)
and what ``compare`` reads from it. The per-split metrics are logged by model.py as
``f"{split}/{name}"`` (its MetricCollection prefix), which gives the names below."""

# Logged by the model each epoch (the loss also each step, as train/loss_step).
TRAIN_LOSS = "train/loss_epoch"
TRAIN_ACC = "train/acc"
TRAIN_F1 = "train/f1"
VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
VAL_F1 = "val/f1"  # what the best checkpoint is chosen by (cli.py: checkpoint.monitor)
TEST_LOSS = "test/loss"
TEST_ACC = "test/acc"
TEST_F1 = "test/f1"

# grad_norm.py: the total gradient norm before clipping, on logged steps.
GRAD_NORM = "train/grad_norm"

# throughput.py. Per training epoch, this process:
TRAIN_TOKENS_PER_S = "perf/train_tokens_per_s"
TRAIN_SAMPLES_PER_S = "perf/train_samples_per_s"
EPOCH_S = "perf/epoch_s"
PEAK_MEMORY_MB = "perf/peak_memory_mb"
MEMORY_GROWTH_MB = "perf/memory_growth_mb"
# Per validation:
VAL_TOKENS_PER_S = "perf/val_tokens_per_s"
ELAPSED_S = "perf/elapsed_s"  # seconds since fit started (a resumed run goes on counting)
# Once, at the end of training:
TRAIN_TOKENS_PER_S_MEDIAN = "perf/train_tokens_per_s_median"
TRAINABLE_PARAMS = "model/trainable_params"

# validation_report.py: one image and two texts per validation.
CONFUSION_MATRIX = "val/confusion_matrix"
PER_CLASS = "val/per_class"
MISCLASSIFIED = "val/misclassified"

# hparams.py: the HParams tab compares runs on these; each holds its last logged value.
HP_VAL_ACC = "hp/val_acc"
HP_VAL_F1 = "hp/val_f1"
HP_TEST_ACC = "hp/test_acc"
HP_TEST_F1 = "hp/test_f1"
HP_METRICS = (HP_VAL_ACC, HP_VAL_F1, HP_TEST_ACC, HP_TEST_F1)

# One entry per validation in metrics.json, and the best and final entries.
VALIDATION = (VAL_ACC, VAL_F1, VAL_LOSS, VAL_TOKENS_PER_S, ELAPSED_S)
TEST = (TEST_ACC, TEST_F1, TEST_LOSS)
