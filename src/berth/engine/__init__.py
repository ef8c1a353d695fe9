"""berth engine: images, storage and the spec generator (see DESIGN.md)."""
