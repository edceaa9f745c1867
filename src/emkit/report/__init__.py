"""emkit.report."""
