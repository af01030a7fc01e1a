"""The process around the device-side and management code: the servers, worker processes, the bounded HTTP
protocol, TLS, coordination between processes, the stores, and ``bootstrap.build``, the one place that
assembles them."""
