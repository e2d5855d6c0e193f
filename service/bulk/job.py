"""`fusionserve batch`: Ray up (local, or a cluster by address), the items read, the actors mapped, answers written.

Output: a path ending in .parquet (for --format openai, always its .jsonl) is one file, streamed from the driver
batch by batch as the actors finish them (ParquetWriter; never the whole result in memory); any other path is a
folder written by Ray Data's write_parquet from the workers (what a cluster wants: no driver hop)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_BATCH = 64


@dataclass
class BulkJob:
    model_dir: str
    model: str
    input: str
    output: str
    version: str | None = None
    task: str = "classify"
    format: str = "items"
    concurrency: int = 1
    batch_size: int = DEFAULT_BATCH
    ray_address: str | None = None
    num_gpus: float | None = None  # per actor; None: 1 when the cluster has GPUs
    settings: dict = field(default_factory=dict)  # Settings overrides beside model_dir (tests, tuning)

    def runner_settings(self) -> dict:
        return {"model_dir": os.path.abspath(self.model_dir) if "://" not in self.model_dir else self.model_dir,
                "models": [self.model]} | self.settings  # fmt: skip


def start_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
    else:  # a local Ray: the machine's CPUs, no dashboard (one less process competing with the actors)
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)


def actor_resources(job: BulkJob) -> dict:
    """Fractional CPUs per actor so Ray's read and write tasks still get a slot beside them (whole-CPU actors on a
    small machine leave none, and the job hangs); one GPU per actor when the cluster has GPUs."""
    import ray

    resources = ray.cluster_resources()
    cpus = max(float(resources.get("CPU", 1)), 1.0)
    gpus = job.num_gpus if job.num_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
    return {"num_cpus": min(1.0, cpus / (2 * job.concurrency)), "num_gpus": gpus}  # half the CPUs, at most


def answers(job: BulkJob):
    """The lazy Dataset of answers: read tasks → BundleRunner actors (map_batches, `concurrency` of them)."""
    from service.bulk.openai_batch import OpenAIBatchRunner
    from service.bulk.runner import BundleRunner
    from service.bulk.sources import read_items

    openai = job.format == "openai"
    items = read_items(job.input, "text" if openai else None)
    udf = OpenAIBatchRunner if openai else BundleRunner
    kwargs = dict(model=job.model, version=job.version, task=job.task, input_path=job.input,
                  settings=job.runner_settings())  # fmt: skip
    import ray.data

    return items.map_batches(
        udf, fn_constructor_kwargs=kwargs, batch_size=job.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=job.concurrency), **actor_resources(job),
    )  # fmt: skip


def run_job(job: BulkJob) -> dict:
    """Run it; returns a summary (rows, errors, seconds) for the CLI and the bench."""
    import time

    start_ray(job.ray_address)
    started = time.perf_counter()
    dataset = answers(job)
    if job.format == "openai":
        rows, errors = _write_lines(dataset, job.output)
    else:
        rows, errors = _write_parquet(dataset, job.output)
    return {"rows": rows, "errors": errors, "seconds": round(time.perf_counter() - started, 3), "output": job.output}


def _write_parquet(dataset, output: str) -> tuple[int, int]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not output.endswith(".parquet"):
        import pyarrow.dataset as pads

        dataset.write_parquet(output)
        written = pads.dataset(output, format="parquet")  # counted from the files (metadata, one column): no rerun
        return written.count_rows(), written.count_rows(filter=pc.field("error").is_valid())
    rows = errors = 0
    writer = None
    try:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            writer = writer or pq.ParquetWriter(output, batch.schema)
            writer.write_table(batch)
            rows, errors = rows + batch.num_rows, errors + int(pc.sum(pc.is_valid(batch["error"])).as_py() or 0)
    finally:
        if writer is not None:
            writer.close()
    return rows, errors


def _write_lines(dataset, output: str) -> tuple[int, int]:
    rows = errors = 0
    with open(output, "w", encoding="utf-8") as out:
        for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            for line in batch.column("line").to_pylist():
                out.write(line + "\n")
                rows += 1
                errors += '"status_code":200' not in line
    return rows, errors
