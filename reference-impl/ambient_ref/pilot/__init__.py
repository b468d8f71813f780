"""The control plane: configuration server and CA."""
