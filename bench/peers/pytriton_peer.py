"""Peer 3: PyTriton (Triton Inference Server + its dynamic batcher, max queue delay 5 ms, max batch 32).
One Triton model per modality ("<name>_text", "<name>_image": KServe v2 BYTES input, probabilities out);
the bound Python callable preprocesses each item of the batch Triton hands it, then runs one ORT call.
Needs LD_LIBRARY_PATH with the interpreter's libpython (the backend stub links it; bench/peers/launch.py
sets it). Own venv ($BENCH_VENVS/pytriton)."""

from __future__ import annotations

import numpy as np
from peer_common import Model, parse_args
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def infer_func(model: Model, modality: str):
    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        rows = inputs[modality][:, 0]  # [B] of bytes: UTF-8 text, or a base64 image
        prepared = [model.prepare({modality: row.decode() if modality == "text" else row}) for row in rows]
        probabilities = model.predict(modality, [arrays for _, arrays in prepared])
        return {"probabilities": probabilities.astype(np.float32)}

    return infer


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    model = Model(args.bundle, args.threads)
    name = model.manifest["name"]
    config = TritonConfig(
        http_address=args.host, http_port=args.port, allow_grpc=False, allow_metrics=False, log_verbose=0
    )
    batcher = DynamicBatcher(max_queue_delay_microseconds=int(args.batch_timeout_ms * 1000))
    with Triton(config=config) as triton:
        for modality in ("text", "image"):
            triton.bind(
                model_name=f"{name}_{modality}",
                infer_func=infer_func(model, modality),
                inputs=[Tensor(name=modality, dtype=bytes, shape=(1,))],
                outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(len(model.labels),))],
                config=ModelConfig(max_batch_size=args.max_batch_size, batcher=batcher),
                strict=True,
            )
        triton.serve()


if __name__ == "__main__":
    main()
