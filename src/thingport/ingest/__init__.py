"""The device side's application layer: ``DeviceIngest`` (use_case.py) runs authentication and the report
sequence once for every dialect; ``ports.py`` is the seam the dialects (``thingport.dialects``) speak through."""
