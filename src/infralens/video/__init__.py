"""Video conditioning and the frame axis: first-frame image conditions, TI2V's fused first frame, frames as a batch."""

from .first_frame_condition import first_frame_mask, image_condition
from .frames import batch_to_frames, frames_to_batch
from .fused_first_frame import first_frame_timesteps, fused_first_frame_sample

__all__ = [
    "batch_to_frames",
    "first_frame_mask",
    "first_frame_timesteps",
    "frames_to_batch",
    "fused_first_frame_sample",
    "image_condition",
]
