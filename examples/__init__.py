"""Runnable examples; each one is exercised by a test so it cannot rot."""
