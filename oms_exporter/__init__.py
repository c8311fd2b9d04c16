"""Prometheus exporter for OceanBase Migration Service (OMS) project progress."""

__version__ = "0.1.0"
