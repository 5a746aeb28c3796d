"""The zone processor: enter, exit and dwell events of drivers in the zones of the ``zones`` topic, exactly once."""
