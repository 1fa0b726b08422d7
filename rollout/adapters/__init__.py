"""Everything that talks to the outside: the Pulumi stack, cluster readback, the journal
(state store), webhooks, notifiers, Prometheus, the toolchain and local paths."""
