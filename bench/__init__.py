"""jetwork benchmarks (`make bench`, `python -m bench`). Not part of the installed package."""
