"""Model adapters of the worker: torch (this project's bundles in PyTorch) and hf (released checkpoints)."""
