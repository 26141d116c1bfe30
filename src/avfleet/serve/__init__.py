"""Serving: the scoring graph, its Triton model repository, a local Triton server, the client."""
