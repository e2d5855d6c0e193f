"""Datasets for training: the user's JSONL manifest, the tridigits demo builder, the frozen-feature cache."""
