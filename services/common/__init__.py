"""Infrastructure shared by the services: settings, logging, Kafka and health adapters.

A library, not a service: it imports `schemas` and third-party packages, never a service.
"""
