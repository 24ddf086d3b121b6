"""The matcher: ranks seeds against needs and publishes each regional office's pairings."""
