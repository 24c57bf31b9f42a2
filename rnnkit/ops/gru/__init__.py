"""GRU ops: ``naive`` is the specification; fast backends sit beside it."""
