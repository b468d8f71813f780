"""The profile and feature model: what an implementation may claim, how tests group.

A leaf package: it imports nothing of the project, so the suite (``conformance``) and
the reports (``reports``) both use it without depending on each other.
"""
