"""Parse a command line and run one subcommand: ``cli`` (``python -m project``: reads the
subcommand, then its parser), ``compare`` and ``compare_report`` (LSTM or GRU, measured),
``tune`` and ``study`` (Optuna). Nothing imports this package but ``project.__main__``."""
