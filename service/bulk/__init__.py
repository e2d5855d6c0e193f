"""Bulk jobs on Ray Data (`fusionserve batch`, docs/bulk.md): a corpus through the served bundle in map_batches
actors, each running the one-process server's own objects (Settings, Registry/LocalBackend, prepare_item, the
pipeline), answers written to Parquet, or OpenAI-Batch-style JSONL. Needs the `batch` extra (ray[data], pyarrow)."""
