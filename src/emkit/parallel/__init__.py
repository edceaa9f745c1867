"""emkit.parallel."""
