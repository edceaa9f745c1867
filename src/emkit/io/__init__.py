"""emkit.io."""
