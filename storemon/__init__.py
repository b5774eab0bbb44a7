"""storemon: how long each restaurant was up and down during its business hours."""

__version__ = "0.1.0"
