import sys

from tollgate_cli.main import main

sys.exit(main())
