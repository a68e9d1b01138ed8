"""CQL-SAC agents."""
