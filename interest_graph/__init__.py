"""The top floor: the ``interest-graph`` command line, launching the components, and ops views
(metrics, status, end-to-end freshness). It imports the rooms below it; nothing imports it."""
