"""This repository's own Pulumi program: the stack config's canary services, declared by the
`rollout.pulumi` package that any Python Pulumi program can use the same way."""

from rollout.pulumi.program import main

main()
