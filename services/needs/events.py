"""The needs service consumes no events; it publishes ``need.*`` through its outbox (see domain)."""
