"""Code shared by every Claret service: configuration, logging, errors, database, payload store, server."""
