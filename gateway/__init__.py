"""The gateway: the one entry point. Reverse proxy and load balancer for auth and replicas."""
