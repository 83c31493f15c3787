"""Several chat nodes as one service: what they share through Redis (see ``docs/cluster.rst``)."""
