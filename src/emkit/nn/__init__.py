"""emkit.nn."""
