"""What a team shares: the record store (records, history, sources, leases, sessions, audit) and
its accounts. Nothing here reaches a stage, the model or the sources."""
