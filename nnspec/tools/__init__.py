"""Tools built on specs and run directories, engine-free unless they start runs: ``nnspec diff``
(:mod:`.spec_diff`, :mod:`.run_diff`, :mod:`.diff_report`) and ``nnspec sweep`` (:mod:`.sweep_plan`,
:mod:`.sweep_runner`, :mod:`.sweep_results`); :mod:`.tables` renders their tables as text, Markdown or CSV."""
