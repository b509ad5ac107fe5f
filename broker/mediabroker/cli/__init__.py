from mediabroker.cli.main import main

__all__ = ["main"]
