"""The seeds service consumes no events; it publishes ``seed.*`` through its outbox (see domain)."""
