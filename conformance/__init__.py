"""The ambient-mode conformance suite: it judges an implementation through the wire alone."""
