from consensus.cli import main

raise SystemExit(main())
