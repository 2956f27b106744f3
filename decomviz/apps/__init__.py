"""Applications built on the library: the command line, the demo, training and the benchmark runner.

Nothing in the library imports this package; it may import anything in the library.
"""
