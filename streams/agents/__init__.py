"""Faust agents, one module per concern."""
