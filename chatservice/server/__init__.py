"""The network side: the per-connection protocol and the factory that builds it."""
