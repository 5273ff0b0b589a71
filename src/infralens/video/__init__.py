"""Video pipelines: the frame axis, tiny causal video VAEs and DiTs, token counts."""

from .frames import batch_to_frames, frames_to_batch
from .dit import TinyVideoDiT
from .vae import TinyCausalVideoVAE

__all__ = ["TinyCausalVideoVAE", "TinyVideoDiT", "batch_to_frames", "frames_to_batch"]
