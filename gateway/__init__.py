"""The gRPC gateway that executes a routing plan (not built yet; see the issues)."""
