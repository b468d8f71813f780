"""Tests of the conformance suite's own code (fast, no cluster)."""
