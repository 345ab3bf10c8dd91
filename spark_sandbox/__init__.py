"""The embedded Spark sandbox: real services on loopback and a reference Spark API."""
