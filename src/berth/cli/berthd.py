from berth.daemon import main

__all__ = ["main"]
