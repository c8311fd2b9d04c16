"""The upstream: one client interface over OMS's three progress APIs."""
