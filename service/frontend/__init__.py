"""The front-end process: HTTP and gRPC protocols, the data plane, preprocessing calls, the engine client."""
