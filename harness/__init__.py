"""tpdiff-harness: benchmark and ablation harness for TPDiff (arXiv 2503.09566)."""

__version__ = "0.1.0"
