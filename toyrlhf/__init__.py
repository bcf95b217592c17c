"""toyrlhf: a CPU-only simulator of LLM post-training, exact enough to check algorithms against ground truth."""

__version__ = "0.1.0"
