"""The worker's HTTP side: views, routing to the owner of a key, health and metrics."""
