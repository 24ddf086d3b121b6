"""Tooling around the matchnet services: run the whole network locally, the CLI, the demo data."""

from matchnet.network import SERVICES, LocalNetwork, NetworkError, pick_free_ports

__all__ = ["SERVICES", "LocalNetwork", "NetworkError", "pick_free_ports"]
