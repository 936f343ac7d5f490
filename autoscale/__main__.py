import sys

from autoscale.loop import main

sys.exit(main())
