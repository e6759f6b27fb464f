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

# The language model (pretrain): the per-token cross-entropy (val/loss) and its exponential.
VAL_PERPLEXITY = "val/perplexity"
SAMPLES = "samples/generated"  # samples.py: text the model writes, per validation

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

# validation_report.py: one image and two texts per validation and per test, f"{split}/...".
CONFUSION_MATRIX = "confusion_matrix"
PER_CLASS = "per_class"
MISCLASSIFIED = "misclassified"

# calibration.py: per validation and per test. ECE of the model's own probabilities, ECE after
# temperature scaling (the temperature fitted on validation), the temperature, and the
# reliability diagram (an image).
VAL_ECE = "val/ece"
VAL_ECE_CALIBRATED = "val/ece_calibrated"
VAL_LOSS_CALIBRATED = "val/loss_calibrated"  # the NLL after scaling (val/loss: before)
TEMPERATURE = "val/temperature"
TEST_ECE = "test/ece"
TEST_ECE_CALIBRATED = "test/ece_calibrated"
TEST_LOSS_CALIBRATED = "test/loss_calibrated"
RELIABILITY = "reliability"  # f"{split}/reliability"

# hparams.py: the HParams tab compares runs on these: the validation figures of the epoch the
# kept checkpoint comes from (best val/f1 so far, logged at every validation) and the test's.
BEST_VAL_ACC = "best_val/acc"
BEST_VAL_F1 = "best_val/f1"
HP_METRICS = (BEST_VAL_ACC, BEST_VAL_F1, TEST_ACC, TEST_F1)

# runs.py: the epoch-level train and validation figures go to the run's train/ and validation/
# sub-runs under one tag each, so that one TensorBoard chart holds both (as Keras does); the
# group name sorts first, so the Time Series tab opens on them.
CURVES = {
    TRAIN_LOSS: ("train", "Epoch/loss"), TRAIN_ACC: ("train", "Epoch/accuracy"), TRAIN_F1: ("train", "Epoch/macro_f1"),
    VAL_LOSS: ("validation", "Epoch/loss"), VAL_ACC: ("validation", "Epoch/accuracy"),
    VAL_F1: ("validation", "Epoch/macro_f1"),
}

# One entry per validation in metrics.json, and the best and final entries.
VALIDATION = (VAL_ACC, VAL_F1, VAL_LOSS, VAL_TOKENS_PER_S, ELAPSED_S, VAL_ECE, VAL_ECE_CALIBRATED,
              VAL_LOSS_CALIBRATED, TEMPERATURE)
LM_VALIDATION = (VAL_LOSS, VAL_PERPLEXITY, VAL_TOKENS_PER_S, ELAPSED_S)  # a pretrain run's
LANGUAGE_MODEL = (VAL_PERPLEXITY, SAMPLES)  # logged by pretrain runs only
TEST = (TEST_ACC, TEST_F1, TEST_LOSS, TEST_ECE, TEST_ECE_CALIBRATED, TEST_LOSS_CALIBRATED)

# Multi-label runs (classifier.py, calibration.py): acc is then the subset accuracy (every label
# of a text right) and f1 the macro-F1 at the tuned thresholds; micro-F1 beside them, and on test
# both F1s at the plain 0.5 threshold too. No temperature: no scaled ECE or NLL.
VAL_MICRO_F1 = "val/micro_f1"
TEST_MICRO_F1 = "test/micro_f1"
TEST_F1_AT_HALF = "test/f1_at_0.5"
TEST_MICRO_F1_AT_HALF = "test/micro_f1_at_0.5"
MULTI_LABEL = (VAL_MICRO_F1, TEST_MICRO_F1, TEST_F1_AT_HALF, TEST_MICRO_F1_AT_HALF)  # logged by multi-label runs only
MULTI_LABEL_VALIDATION = (VAL_ACC, VAL_F1, VAL_MICRO_F1, VAL_LOSS, VAL_TOKENS_PER_S, ELAPSED_S, VAL_ECE)
MULTI_LABEL_TEST = (TEST_ACC, TEST_F1, TEST_MICRO_F1, TEST_LOSS, TEST_ECE, TEST_F1_AT_HALF, TEST_MICRO_F1_AT_HALF)
