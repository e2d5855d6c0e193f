"""Which version an export publishes, and publishing it whole (the steps are service/publish.py's, shared with
`fusionserve optimize`): the next free number unless `version` names one, an existing version refused unless
`--overwrite`, written and verified in a hidden staging directory, then renamed into place in one step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.publish import VersionExists, next_version, publish, refuse_existing, staged_version, valid_version
from training.errors import PublishError


def target_version(cfg, overwrite: bool) -> str:
    """cfg.version, or the next number free for the model (and its -int8 sibling when quantising); refused
    at once when it exists and `overwrite` is off, so a long build never fails at its last step."""
    model_dirs = [cfg.model_dir()] + ([cfg.model_dir("-int8")] if cfg.quantize else [])
    version = valid_version(cfg.version) if cfg.version else next_version(*model_dirs)  # "07" publishes 7
    try:
        for model_dir in model_dirs:
            refuse_existing(model_dir / version, overwrite)
    except VersionExists as error:
        raise PublishError(str(error)) from None
    return version


@contextmanager
def publishing(model_dir: Path, version: str, overwrite: bool) -> Iterator[Path]:
    """Yields the directory to write the version into; once the block ends without an error, the version is
    published as <model_dir>/<version>. A failure leaves no version and no staging files behind."""
    with staged_version(model_dir, model_dir.name, version, "export") as staged:
        yield staged
        try:
            publish(staged, model_dir / version, overwrite)
        except VersionExists as error:
            raise PublishError(str(error)) from None
