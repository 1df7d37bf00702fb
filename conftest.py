"""Skip collecting the framework adapters (and their docs' doctests) when the
framework is not installed: ``import scanad`` itself needs neither."""

from __future__ import annotations

import importlib.util

collect_ignore = [path for path, module in (("scanad/torch.py", "torch"),
                                            ("docs/torch.md", "torch"),
                                            ("scanad/jax.py", "jax"),
                                            ("docs/jax.md", "jax"),
                                            ("scanad/dask.py", "dask"),
                                            ("docs/dask.md", "dask"))
                  if importlib.util.find_spec(module) is None]
