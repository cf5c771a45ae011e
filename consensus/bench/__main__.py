from consensus.bench import main

raise SystemExit(main())
