"""thingport: a self-hostable IoT device-access server for devices that report over HTTPS."""

__version__ = "0.1.0"
