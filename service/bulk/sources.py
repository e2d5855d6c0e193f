"""Where the items come from: JSONL, CSV or Parquet, local or any URI pyarrow's filesystems read, as a Ray Dataset
(read by Ray's read tasks, never loaded whole on the driver); media paths are resolved against the input's folder."""

from __future__ import annotations

import posixpath

import pyarrow.fs as pafs

READERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def input_kind(path: str) -> str:
    for suffix, kind in READERS.items():
        if path.lower().endswith(suffix):
            return kind
    raise ValueError(f"--input {path!r}: unknown format; name a .jsonl, .csv or .parquet file (or a folder of them)")


def read_items(path: str, kind: str | None = None):
    """The items as a Ray Dataset; `kind` 'text' reads one string per line (the OpenAI batch input)."""
    import ray.data

    kind = kind or input_kind(path)
    if kind == "text":
        return ray.data.read_text(path)
    if kind == "csv":
        # media paths and text stay strings (pyarrow would read "1" as an int and an empty cell as null or "")
        import pyarrow.csv as pacsv

        options = pacsv.ConvertOptions(column_types={"id": "string", "text": "string"}, strings_can_be_null=True)
        return ray.data.read_csv(path, convert_options=options)
    return getattr(ray.data, f"read_{kind}")(path)


class MediaFiles:
    """Reads the files a row names, relative to the input's folder, on whatever filesystem the input lives."""

    def __init__(self, input_path: str):
        self.fs, base = pafs.FileSystem.from_uri(_absolute(input_path))
        folder = self.fs.get_file_info(base).type == pafs.FileType.Directory  # a folder of Parquet files
        self.root = base if folder else posixpath.dirname(base)

    def read(self, relative: str) -> bytes:
        path = relative if relative.startswith("/") else posixpath.join(self.root, relative)
        with self.fs.open_input_stream(path) as stream:
            return stream.read()


def _absolute(path: str) -> str:
    if "://" in path:
        return path
    import os

    return os.path.abspath(path)
