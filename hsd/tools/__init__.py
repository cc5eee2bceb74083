"""Tooling beside the engine: the ``hsd`` command (``cli``: every argument, no torch) and what its
commands run -- ``generate``, ``measure`` (profile), ``optimize``, ``validate``, ``bench/``, and
``examples`` (the Learn tab's canned traces).  The engine core never imports this package."""
