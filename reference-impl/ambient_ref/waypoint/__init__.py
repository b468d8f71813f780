"""The waypoint: the L7 proxy that terminates HBONE tunnels and applies HTTP policy."""
