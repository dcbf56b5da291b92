"""Toy worlds with known concept hierarchies, shipped with the package for tests and benchmarks."""
