"""Argument checks shared by every package of the library.

Every public function validates its input here so that a bad argument gets one
kind of message everywhere: the argument's name, the rule it broke, and a value
that would have been valid. A suggested value comes from :func:`nearest_valid`,
which searches for values that pass the *whole* rule of the request, so a
suggestion is never refused in turn.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Mapping, Sequence

import torch

Scalar = float | int | torch.Tensor


def positive_int(name: str, value: object, *, example: int) -> int:
    """Return ``value`` if it is an ``int`` >= 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number >= 1, e.g. {name}={example}; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, e.g. {name}={example}; got {value}")
    return int(value)


def nearest_valid(value: int, ok: Callable[[int], bool], *, minimum: int = 1, limit: int = 4096) -> list[int]:
    """The valid values just below and just above ``value`` (one of them if the other does not exist).

    ``ok`` is the whole rule of the request, so every suggestion passes it.

    >>> nearest_valid(481, lambda h: h % 16 == 0)
    [480, 496]
    >>> nearest_valid(80, lambda f: (f - 1) % 4 == 0)
    [77, 81]
    """
    below = next((v for v in range(value - 1, max(minimum, value - limit) - 1, -1) if ok(v)), None)
    above = next((v for v in range(value + 1, value + limit + 1) if ok(v)), None)
    return [v for v in (below, above) if v is not None]


def nearest_text(value: int, ok: Callable[[int], bool], *, minimum: int = 1) -> str:
    """``"nearest valid: a or b"`` for an error message (see :func:`nearest_valid`).

    >>> nearest_text(50, lambda n: n % 16 == 0)
    'nearest valid: 48 or 64'
    """
    return "nearest valid: " + " or ".join(map(str, nearest_valid(value, ok, minimum=minimum)))


def multiple_of(name: str, value: object, step: int, *, why: str) -> int:
    """Return ``value`` if it is a whole number >= 1 and a multiple of ``step``, else raise ``ValueError``.

    >>> multiple_of("height", 481, 16, why="8 pixels per cell, 2 cells per patch")
    Traceback (most recent call last):
    ...
    ValueError: height=481 is not a multiple of 16 (8 pixels per cell, 2 cells per patch); nearest valid: 480 or 496
    """
    size = positive_int(name, value, example=step * 64)
    if size % step:
        raise ValueError(
            f"{name}={size} is not a multiple of {step} ({why}); {nearest_text(size, lambda v: v % step == 0)}"
        )
    return size


def same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` are tensors of one shape."""
    for name, t in ((name_a, a), (name_b, b)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if a.shape != b.shape:
        raise ValueError(
            f"{name_b} must have the shape of {name_a}: {name_a} is {tuple(a.shape)} "
            f"but {name_b} is {tuple(b.shape)}; e.g. {name_b} = torch.randn_like({name_a})"
        )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype coefficients are computed in: float32 or better.

    >>> compute_dtype(torch.bfloat16), compute_dtype(torch.float64)
    (torch.float32, torch.float64)
    """
    if not dtype.is_floating_point:
        raise ValueError(f"expected a floating-point tensor, e.g. torch.float32; got {dtype}")
    return torch.promote_types(dtype, torch.float32)


def per_sample(
    name: str,
    value: Scalar,
    like: torch.Tensor,
    *,
    low: float,
    high: float,
    example: float,
) -> torch.Tensor:
    """Turn a per-sample value into a tensor that broadcasts over ``like``.

    ``value`` is a Python number, a 0-d tensor or a ``(B,)`` tensor with one
    value per sample of ``like`` (whose first axis is the batch ``B``). The
    result has shape ``()`` or ``(B, 1, ..., 1)`` with ``like.ndim`` axes and is
    in :func:`compute_dtype` of ``like``, on ``like``'s device. Values outside
    ``[low, high]`` raise ``ValueError``.

    >>> x = torch.zeros(2, 4, 8, 8)
    >>> per_sample("alpha_bar_t", torch.tensor([0.1, 0.9]), x, low=0, high=1, example=0.5).shape
    torch.Size([2, 1, 1, 1])
    """
    dtype = compute_dtype(like.dtype)
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise ValueError(f"{name} must be a number or a tensor, e.g. {name}={example}; got {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        t = value.to(like.device)
    else:  # a Python number: build it in the compute dtype directly, never via float32
        t = torch.tensor(float(value), dtype=dtype, device=like.device)
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real, e.g. {name}={example}; got dtype {t.dtype}")
    t = t.to(torch.promote_types(t.dtype, dtype)) if t.is_floating_point() else t.to(dtype)
    if t.ndim > 1:
        raise ValueError(
            f"{name} must be a scalar or have shape (B,) = ({like.shape[0]},), one value per "
            f"sample; got shape {tuple(t.shape)}"
        )
    if t.ndim == 1:
        if like.ndim == 0 or t.shape[0] != like.shape[0]:
            batch = like.shape[0] if like.ndim else 1
            raise ValueError(
                f"{name} has {t.shape[0]} values but the batch has {batch} samples: give one "
                f"value per sample, shape ({batch},), or a single value such as {name}={example}"
            )
        t = t.reshape((-1,) + (1,) * (like.ndim - 1))
    if torch.isnan(t).any() or (t < low).any() or (t > high).any():
        bad = t[torch.isnan(t) | (t < low) | (t > high)].flatten()[0].item()
        raise ValueError(f"{name} must lie in [{low}, {high}], e.g. {name}={example}; got {bad}")
    return t.to(dtype)


def per_sample_floats(name: str, value: Scalar, like: torch.Tensor, **rule: float) -> float | list[float]:
    """A per-sample value as Python floats (double precision): one float, or one per sample.

    Same rules (``low``, ``high``, ``example``) and messages as :func:`per_sample`, but nothing is rounded to the
    tensor's dtype: the formulas turn these into coefficients in double precision
    and hand them to PyTorch as Python scalars, which its kernels apply in float32
    or better whatever the tensor's dtype.

    >>> x = torch.zeros(2, 4, 8, 8, dtype=torch.bfloat16)
    >>> ab = torch.tensor([0.1, 0.9], dtype=torch.float64)
    >>> per_sample_floats("alpha_bar_t", ab, x, low=0, high=1, example=0.5)
    [0.1, 0.9]
    >>> per_sample_floats("alpha_bar_t", 0.9999, x, low=0, high=1, example=0.5)
    0.9999
    """
    compute_dtype(like.dtype)  # a floating-point tensor, or a clear error
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        value = value.detach().to("cpu", torch.float64)
    # a small float64 stand-in with the batch axis and rank of ``like``: validation only
    shape = (like.shape[0],) + (1,) * (like.ndim - 1) if like.ndim else ()
    t = per_sample(name, value, torch.empty(shape, dtype=torch.float64), **rule)
    if t.ndim == 0:
        return t.item()
    # a float32 tensor such as alphas_cumprod[t] keeps its float32 values: widening is exact
    return t.flatten().tolist()


def exact_keys(
    block: Mapping, keys: Sequence[str], *, path: str, owner: str, why: str, examples: Mapping[str, object]
) -> None:
    """Refuse a key of ``block`` that ``keys`` lacks (suggesting the closest one) and a key of ``keys`` it lacks.

    Both messages name the key by its full path, ``path.key`` (``key`` at the top, ``path=""``); ``owner``
    names the block in the list of what it takes, ``why`` says why nothing may be left out, and ``examples``
    gives a valid value per key.

    >>> exact_keys({"sead": 0}, ("seed",), path="runtime", owner="runtime", why="write it", examples={"seed": 0})
    Traceback (most recent call last):
    ...
    ValueError: unknown key runtime.sead; did you mean runtime.seed? runtime takes: seed
    >>> exact_keys({}, ("seed",), path="runtime", owner="runtime", why="write it", examples={"seed": 0})
    Traceback (most recent call last):
    ...
    ValueError: runtime.seed is missing: write it; e.g. seed: 0
    """
    prefix = f"{path}." if path else ""
    for key in block:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            raise ValueError(f"unknown key {prefix}{key}; {hint}{owner} takes: {', '.join(keys)}")
    for key in keys:
        if key not in block:
            raise ValueError(f"{prefix}{key} is missing: {why}; e.g. {key}: {examples.get(key, '{...}')}")
