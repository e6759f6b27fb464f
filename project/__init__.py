"""Recurrent (RNN / LSTM / GRU) text classifiers on any Hugging Face dataset, with Lightning."""
