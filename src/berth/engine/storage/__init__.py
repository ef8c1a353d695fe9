"""Storage: safe layer unpacking and snapshots (overlayfs, vfs)."""
