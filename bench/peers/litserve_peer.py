"""Peer 2: LitServe with its own batching (LitAPI max_batch_size / batch_timeout), one CPU inference worker,
defaults otherwise. decode_request preprocesses each item in the worker, predict runs one batch (one ORT call
per modality present), encode_response returns fusionserve's classify shape. Own venv ($BENCH_VENVS/litserve)."""

from __future__ import annotations

import litserve as ls
from peer_common import Model, parse_args


class ClassifyAPI(ls.LitAPI):
    def __init__(self, bundle, threads: int, **batching):
        super().__init__(api_path="/v1/classify", **batching)
        self.bundle, self.threads = bundle, threads

    def setup(self, device):
        self.model = Model(self.bundle, self.threads)

    def decode_request(self, request):
        return self.model.prepare(request["inputs"][0])  # one item per request

    def batch(self, inputs):
        return inputs  # a list of (modality, arrays): predict groups it by modality

    def predict(self, batch):
        return self.model.predict_mixed(batch)

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        return {"results": [self.model.respond(output)]}


if __name__ == "__main__":
    args = parse_args(__doc__.splitlines()[0])
    batching = {"max_batch_size": args.max_batch_size, "batch_timeout": args.batch_timeout_ms / 1000}
    server = ls.LitServer(ClassifyAPI(args.bundle, args.threads, **batching), accelerator="cpu", workers_per_device=1)
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)
