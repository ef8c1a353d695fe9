"""Images: content-addressed store, names, archive formats."""
