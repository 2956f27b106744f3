"""`decomviz bench`: localisation, faithfulness, part alignment, ablations and speed on PartsWorld."""
from .runner import SECTIONS, main, run_bench, to_markdown
from .sections import (ABLATIONS, FULL, QUICK, floor_seconds, make_methods, timeit)

__all__ = ["run_bench", "main", "to_markdown", "SECTIONS", "ABLATIONS", "FULL", "QUICK", "floor_seconds",
           "make_methods", "timeit"]
