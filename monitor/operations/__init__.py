"""The operations surfaces, in one place: /livez, /readyz, /health, /metrics, the one probe of a backend that they,
the dashboard and the sampler use, and the OpenAPI document of the public API."""
