import sys

from plasticc_jax.cli import main

sys.exit(main())
