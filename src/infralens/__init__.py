"""InfraLens: the library behind the handbook.

Every formula and shape rule that a page of the book states lives here, in a
module named after what it computes, with a doctest that runs it on real
tensors. The pages include this code; they never paste it.
"""

__version__ = "0.1.0"
