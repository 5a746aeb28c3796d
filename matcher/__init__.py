"""The ride matcher: assigns each ride request the nearest free driver, exactly once.

`index` (a spatial grid) and `matching` (reservations, waiting riders, answers) do no I/O;
`service` is the Kafka loop around them; `cli` is `python -m matcher`.
"""
