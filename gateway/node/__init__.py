"""A node: one machine with its own supervisor and sampler. What every app needs to know about nodes lives here, below
the apps that use it: the node's name, the link to a node's supervisor, the typed state of a managed model, and what
the node's sampler measures for the others to read (energy facts, the admission state and its names)."""
