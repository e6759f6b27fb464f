"""One fit: ``fit`` (``run_fit`` and Lightning's CLI for fit / pretrain / validate / test), ``arguments``
(the command line's parser and checks), ``record`` (what the run measured, shared by the
callbacks), the callbacks (``checkpoints``, ``calibration``, ``validation_report``, ``hparams``,
``metrics_file``, ``throughput``, ``progress``, ``stopping``, ``grad_norm``, ``samples``), ``runs`` (run
folders and their curves) and ``model_card``."""
