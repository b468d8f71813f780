"""The waypoint: terminates HBONE, applies HTTP policy, routing and telemetry."""
