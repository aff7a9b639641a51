"""Benchmarks of genjax's train steps against PyTorch peers (``python -m benchmarks.run``)."""
