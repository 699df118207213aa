"""Bayesian optimisation with a PFN surrogate; :mod:`priorfit.bo.problems` holds the test
problems of the benchmarks."""
