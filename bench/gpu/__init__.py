"""The GPU benchmark (bench/gpu/run.sh): raw onnxruntime items/s per encoder against the server's throughput."""
