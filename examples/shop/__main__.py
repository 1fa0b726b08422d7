"""What `pulumi up` runs. `rollout run --program shop:main` runs the same function."""

from shop import main

main()
