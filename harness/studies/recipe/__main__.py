from harness.studies.recipe.cli import main

raise SystemExit(main())
