"""Trace this process for ``tools/mutate.py``'s coverage map when ``INFRALENS_MUTATE_TRACE`` is set (else nothing)."""

import os

if os.environ.get("INFRALENS_MUTATE_TRACE"):
    import mutation_tracer

    mutation_tracer.start_process_tracer()
