"""Video pipelines: the frame axis, tiny causal video VAEs and DiTs, token counts."""

from .dit import TinyVideoDiT
from .first_frame_condition import first_frame_mask, image_condition
from .frames import batch_to_frames, frames_to_batch
from .vae import TinyCausalVideoVAE

__all__ = [
    "TinyCausalVideoVAE",
    "TinyVideoDiT",
    "batch_to_frames",
    "first_frame_mask",
    "frames_to_batch",
    "image_condition",
]
