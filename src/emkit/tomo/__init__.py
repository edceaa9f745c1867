"""emkit.tomo."""
