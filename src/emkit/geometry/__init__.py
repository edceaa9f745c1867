"""emkit.geometry."""
