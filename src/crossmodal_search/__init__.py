"""crossmodal-search: crossmodal product search over Amazon Nova embeddings and S3 Vectors."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
