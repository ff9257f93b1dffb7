"""The resource service: N replicas that validate every request's credential."""
