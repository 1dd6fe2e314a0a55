"""Benchmarking dwc against the libraries people use today (run on demand, never in tests)."""
