"""Video pipelines: the frame axis, tiny causal video VAEs and DiTs, token counts."""

from .dit import TinyVideoDiT
from .frames import batch_to_frames, frames_to_batch
from .vae import TinyCausalVideoVAE

__all__ = ["TinyCausalVideoVAE", "TinyVideoDiT", "batch_to_frames", "frames_to_batch"]
