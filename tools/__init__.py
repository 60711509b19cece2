"""Tools that serve the project itself (wheelhouses for GPU nodes without a network)."""
