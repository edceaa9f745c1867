"""emkit.sim."""
