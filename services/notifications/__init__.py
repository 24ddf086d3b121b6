"""The notifications service: signed webhooks of proposed pairings to offices and partner portals."""
