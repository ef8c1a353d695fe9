"""Small helpers for tests that drive berthd and the private dockerd (the
`dockerd` fixture of conftest.py) with the same requests."""
import json


def api(d, method, path, body=None):
    """-> (status, the body parsed as JSON, or the raw bytes)."""
    status, _, data = d.api(method, path, body)
    try:
        return status, json.loads(data) if data.strip() else None
    except ValueError:
        return status, data
