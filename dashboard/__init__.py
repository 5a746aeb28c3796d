"""The live fleet dashboard: Kafka consumer, fleet state, Socket.IO pushes and the HTTP API.

Importing this package imports nothing else, so ``dashboard/__main__.py`` can patch the standard
library (``dashboard.asyncmode``) before Flask, Socket.IO or kafka-python are loaded.
"""
