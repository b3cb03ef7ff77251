import sys

from cluster.proxy.main import main

sys.exit(main())
