"""The needs registry: companies' technical problems and missing capabilities."""
