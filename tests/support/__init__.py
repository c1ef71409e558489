"""Shared test doubles and helpers (fakes, simulated TensorRT, servers, viewers, data trees)."""
