import sys

from liquid_control.cli.main import main

sys.exit(main())
