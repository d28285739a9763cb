"""The streamstats gRPC service: named numeric streams with exact running median, top-k and bottom-k."""

__version__ = "0.1.0"
