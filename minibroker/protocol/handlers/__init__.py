"""Request handlers and push encoders, one module per messaging model.

Each module holds plain functions; :mod:`minibroker.protocol.ops` wires them
to ops and push sources in one table.
"""
