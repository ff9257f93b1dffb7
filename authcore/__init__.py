"""authcore: the services' runtime, the code on the request path.

Settings, the error tree and its one HTTP edge, the Redis client and circuit breaker,
credential formats, sessions, tokens, the denylist and metrics. The services (auth,
replicas, gateway) import only this package; the measuring harness (`authbench`) imports
it too, never the reverse (tests/test_layers.py checks that from the imports).
"""
