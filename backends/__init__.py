"""Backend workers and their runtimes (not built yet; see the issues)."""
