"""Containers: records, lifecycle, logs, exec, archive."""
