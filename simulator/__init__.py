"""The driver simulator: a fleet of cars moving through a city, published to Kafka.

``motion``, ``status`` and ``fleet_model`` are pure (no clock, no I/O, one seeded RNG);
``producer`` paces the fleet against the clock and sends its fixes with kafka-python;
``cli`` turns flags and environment variables into both.
"""
