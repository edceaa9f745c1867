"""emkit.register."""
