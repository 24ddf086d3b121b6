"""The seeds registry: technology offers of universities, KOSEN, labs and companies."""
