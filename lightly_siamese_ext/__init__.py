"""lightly-siamese-ext: Siamese-network training for Lightly users."""

__version__ = "0.1.0"

__all__ = ["__version__"]
