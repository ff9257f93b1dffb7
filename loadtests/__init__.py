"""Locust scenarios (`locustfile.py`) and load shapes (`shapes/`) for authbench.

These modules run inside Locust's gevent world: they import nothing from the services
(aiohttp, redis.asyncio), only Locust and the standard library.
"""
