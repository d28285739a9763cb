"""What operators see: Prometheus metrics, and log lines for failed calls and lifecycle events."""
