"""The `berth` CLI's library: it talks to berthd over the Engine API only
(api.py) and imports nothing of berth but berth.errors."""
