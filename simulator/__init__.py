"""The driver simulator: a fleet of cars moving through a city, published to Kafka.

``motion``, ``status``, ``rides`` and ``fleet_model`` are pure (no clock, no I/O, seeded RNGs);
``producer`` paces the fleet against the clock and sends its fixes with kafka-python;
``dispatch`` sends ride requests and turns the matcher's answers into rides;
``cli`` turns flags and environment variables into all of them.
"""
