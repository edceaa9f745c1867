"""emkit.ops."""
