"""Server configuration: every knob is an env var with prefix FUSIONSERVE_ (pydantic-settings).

A bad value stops the start with a message naming the variable (see `load_settings`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.manifest import MODALITIES
from service.preprocess import video_plan
from service.url_policy import parse_entry

ENV_PREFIX = "FUSIONSERVE_"
SECRETS_DIR = Path("/run/secrets")  # where Docker and Compose mount secrets, one file per variable
SECRET_FIELDS = ("api_key", "admin_key")  # never echoed in an error
COMPONENTS = (*MODALITIES, "fusion")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # where bundles live and which to serve
    model_dir: Path = Path("models")
    models: list[str] = Field(default_factory=list, description="model names to serve; empty = all found")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # KServe V2 gRPC (GRPCInferenceService) on this port; off when unset
    grpc_port: int | None = Field(None, ge=1, le=65535)
    # live model management: rescan model_dir every this many seconds (0 = off)
    model_poll_s: float = Field(0.0, ge=0)
    # Triton's model control mode for the repository API (docs/model-management.md): "none" refuses load and
    # unload (403); "explicit" allows them with FUSIONSERVE_ADMIN_KEY, which a non-loopback host or an API key
    # requires (without one: only programs on this machine, api/model_control.py)
    model_control: Literal["none", "explicit"] = "none"

    # processes (docs/architecture.md "Processes"): 0 = one process does everything; N >= 1 = N front-end
    # processes (HTTP, gRPC, decoding, preprocessing) + engine processes (batchers, onnxruntime, fusion);
    # auto = one process on a CPU box, front-ends for the cores when a GPU is visible (service/supervisor/processes.py)
    workers: int | Literal["auto"] = "auto"
    engines: int | Literal["auto"] = "auto"  # in multi-process mode; auto = one per visible GPU, else one
    cuda_device_id: int = Field(0, ge=0, description="the GPU of this process's sessions (set per engine)")

    # onnxruntime
    providers: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int = Field(0, ge=0, description="0 = onnxruntime's default (all cores)")
    inter_op_threads: int = Field(1, ge=0)
    # CUDA execution provider options (service/engine/runtime.py); onnxruntime's own defaults unless set.
    # HEURISTIC skips cuDNN's benchmark of every convolution algorithm on the first batch of each new shape.
    cuda_cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "EXHAUSTIVE"
    cuda_arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = "kNextPowerOfTwo"
    cuda_mem_limit_mb: int = Field(0, ge=0, description="cap of the CUDA EP's memory arena per session; 0 = none")
    # run through an IO binding (inputs bound from host memory, outputs allocated by onnxruntime on the
    # provider and copied back once): auto = on the CUDA EP, where it saves a staging copy per tensor
    io_binding: Literal["auto", "on", "off"] = "auto"

    # dynamic batching (per component: image, text, audio, fusion)
    max_batch_size: int = Field(32, ge=1, le=4096)
    component_max_batch_size: dict[str, int] = Field(default_factory=dict)
    max_queue_delay_ms: float = Field(
        5.0, ge=0, le=10_000, description="longest a forming batch waits for imminent arrivals; a lone item never waits"
    )
    max_queued_items: int = Field(256, ge=1)
    # door admission (service/frontend/dataplane.py): refuse when the admitted work's expected wait exceeds this
    max_queue_wait_ms: float = Field(100.0, gt=0, le=600_000)
    text_token_budget: int = Field(8192, ge=1, description="max padded tokens (batch x longest) per text batch")
    # One 30 s clip: audio batching gains little per frame on CPU while the arena grows with the batch and keeps
    # it (the measurements: docs/design-choices.md, "Audio frame budget").
    audio_frame_budget: int = Field(3_000, ge=1, description="max padded 10 ms frames per audio batch")
    default_deadline_ms: float = Field(10_000, gt=0)
    # a retired version (unload, directory gone) waits this long for its admitted requests, then stops anyway
    # and those still holding it get 503; unset: the default deadline plus a second (its last batch)
    unload_drain_s: float | None = Field(None, ge=0)
    preprocess_threads: int = Field(2, ge=1)
    # nice value of onnxruntime's and the preprocessing threads (0 = as the event loop): busy compute
    # never delays HTTP work such as a refusal
    compute_nice: int = Field(10, ge=0, le=19)
    warmup_batch_sizes: list[int] = Field(default_factory=lambda: [1, 4])
    # also run each encoder's largest admissible batch at load, so the ORT arena is at its ceiling from the
    # start and RSS under load stays put (service/engine/warmup.py)
    warmup_largest_batch: bool = True

    # request limits
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    max_form_parts: int = Field(8, ge=1)
    max_field_bytes: int = Field(64 * 1024, ge=16)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_audio_seconds: float = Field(30.0, gt=0)
    max_text_chars: int = Field(4096, ge=1)
    # video (service/preprocess/video.py): a clip's length, one frame's pixels, the frames kept per request (the
    # memory a request holds is its kept frames), and the codecs decoded at all (FFmpeg names)
    max_video_seconds: float = Field(video_plan.MAX_VIDEO_SECONDS, gt=0)
    max_video_frame_pixels: int = Field(video_plan.MAX_FRAME_PIXELS, ge=1)
    max_video_frames: int = Field(256, ge=1)
    max_video_segments: int = Field(128, ge=1)
    video_codecs: list[str] = Field(default_factory=lambda: list(video_plan.VIDEO_CODECS))
    audio_codecs: list[str] = Field(default_factory=lambda: list(video_plan.AUDIO_CODECS))
    max_items_per_request: int = Field(32, ge=1)
    max_top_k: int = Field(100, ge=1)
    # zero-shot: candidate labels per request (each is a text through the text encoder, cached per version; half
    # the text queue, so a cold cache's labels and the inputs' texts fit MAX_QUEUED_ITEMS together);
    # rerank / score: documents per request (each an item through the batchers, as an input is)
    max_zero_shot_labels: int = Field(128, ge=1)
    max_rerank_documents: int = Field(100, ge=1)
    # request-body bytes one process holds at once, every protocol together (service/frontend/body_budget.py): reserved
    # before a body is buffered, so many large uploads at once get 503 + Retry-After instead of exhausting memory
    max_inflight_body_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    # open HTTP connections one process serves (uvicorn's limit_concurrency): past it, 503
    max_connections: int = Field(1024, ge=2)
    # what URLs may be fetched as inputs (OpenAI image_url; service/url_policy.py): `host` (https on 443),
    # `host:port`, `http://host[:port]` for plain http; empty = only data: URLs
    url_allow_hosts: list[str] = Field(default_factory=list)

    # security and lifecycle
    api_key: SecretStr | None = None
    # the repository API's load / unload credential, separate from the inference key (api/model_control.py)
    admin_key: SecretStr | None = None
    drain_timeout_s: float = Field(30.0, ge=0, description="SIGTERM to exit: grace + in-flight requests")
    drain_grace_s: float = Field(2.0, ge=0, description="after SIGTERM, keep accepting and answer 503 + close")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # "json": one JSON object a line with the request id and fields (service/logs.py, docs/request-ids.md)
    log_format: Literal["text", "json"] = "text"
    # one line per HTTP answer (method, path without the query, status, ms, bytes, client, request id, model):
    # on, as uvicorn's and nginx's are by default; off for a log volume a fleet's proxy already records
    access_log: bool = True

    @field_validator("url_allow_hosts")
    @classmethod
    def _allow_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_entry(entry)  # ValueError says what is wrong with the entry
        return value

    @field_validator("component_max_batch_size")
    @classmethod
    def _known_components(cls, value: dict[str, int]) -> dict[str, int]:
        for name, size in value.items():
            if name not in COMPONENTS:
                raise ValueError(f"unknown component {name!r}; expected one of {COMPONENTS}")
            if size < 1:
                raise ValueError(f"batch size for {name!r} must be >= 1")
        return value

    @field_validator("api_key", "admin_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value):
        # FUSIONSERVE_API_KEY="" (a blank line in a .env or compose file) must not mean "the key is empty"
        return None if value is None or str(value).strip() == "" else value

    @field_validator("admin_key")
    @classmethod
    def _admin_key_where_needed(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        api_key, host = info.data.get("api_key"), info.data.get("host", "")
        if value is not None and api_key is not None and value.get_secret_value() == api_key.get_secret_value():
            raise ValueError("must differ from FUSIONSERVE_API_KEY: loading and unloading take their own credential")
        if value is not None or info.data.get("model_control") != "explicit":
            return value
        if not is_loopback(host):
            raise ValueError(
                f"required with FUSIONSERVE_MODEL_CONTROL=explicit when FUSIONSERVE_HOST={host} is not a loopback "
                "address: without it anyone who reaches the port could load or unload models"
            )
        if api_key is not None:
            # a server locked with an API key is not a keyless developer box: as with TorchServe's token
            # authorization, changing what is served then takes its own key (docs/security.md)
            raise ValueError(
                "required with FUSIONSERVE_MODEL_CONTROL=explicit when FUSIONSERVE_API_KEY is set: the API key "
                "does not load or unload models, and no key at all would let every caller do so"
            )
        return value

    @field_validator("max_inflight_body_bytes")
    @classmethod
    def _budget_holds_one_upload(cls, value: int, info: ValidationInfo) -> int:
        upload = info.data.get("max_upload_bytes")  # absent when it failed its own validation
        if upload is not None and value < upload:
            raise ValueError(f"must be at least FUSIONSERVE_MAX_UPLOAD_BYTES ({upload}): no such body could be read")
        return value

    @field_validator("workers", "engines")
    @classmethod
    def _process_count(cls, value: int | str, info: ValidationInfo) -> int | str:
        least = 0 if info.field_name == "workers" else 1
        if isinstance(value, int) and not least <= value <= 256:
            raise ValueError(f"must be 'auto' or a number of processes from {least} to 256")
        return value

    @field_validator("warmup_batch_sizes")
    @classmethod
    def _positive_sizes(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError("warm-up batch sizes must be >= 1")
        return value

    @field_validator("drain_grace_s")
    @classmethod
    def _grace_within_drain(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("drain_timeout_s")  # absent when it failed its own validation
        if timeout is not None and value > timeout:
            raise ValueError(f"must not exceed FUSIONSERVE_DRAIN_TIMEOUT_S ({timeout:g}), which it is part of")
        return value

    def batch_size_for(self, component: str) -> int:
        return self.component_max_batch_size.get(component, self.max_batch_size)

    def unload_drain_seconds(self) -> float:
        return self.default_deadline_ms / 1000 + 1.0 if self.unload_drain_s is None else self.unload_drain_s


def is_loopback(host: str) -> bool:
    """Only this machine can connect: localhost or a loopback address (0.0.0.0 and :: are every address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class SettingsError(SystemExit):
    """Raised at start-up with one line per bad variable."""


def _shown(field: str, value: object) -> str:
    if field in SECRET_FIELDS:
        return "nothing" if value is None else "a value, not shown"
    return repr(value)


def describe_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "?"
        lines.append(f"{ENV_PREFIX}{field.upper()}: {item['msg']} (got {_shown(field, item.get('input'))})")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides) -> Settings:
    """Settings from the environment, then files in SECRETS_DIR when it exists (Docker and Compose secrets:
    /run/secrets/fusionserve_admin_key sets FUSIONSERVE_ADMIN_KEY), then `overrides`."""
    secrets = {"_secrets_dir": SECRETS_DIR} if SECRETS_DIR.is_dir() else {}
    try:
        return Settings(**secrets, **overrides)
    except ValidationError as error:
        raise SettingsError(describe_errors(error)) from None
