"""Operator tools of the shared kernel: run by people against every service's topics, imported by no service."""
