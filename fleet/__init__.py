"""The domain: message schema and validation, geometry, fleet state and frame encoding.

Nothing in this package does I/O or imports a third-party library, so every process
(simulator, dashboard, matcher) can share it and its tests run in milliseconds.
"""
