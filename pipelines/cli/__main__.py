from callqa.pipelines.cli.main import main

raise SystemExit(main())
