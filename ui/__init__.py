"""The Gradio app around the engine: the ONLY package that imports gradio, gradio_client or spaces.

- ``settings``  limits and environment variables;
- ``registry``  loaded families, profiles, plans, example prompts and traces (one cache);
- ``inputs``    raw UI/API values -> validated engine requests (no gradio);
- ``session``   engine events -> page updates: the GPU boundary, pacing, errors, trace files;
- ``views``     the figures of a trace or plan in the app's context;
- ``context``   what the tabs share, and ``bind`` for module-level callbacks;
- ``demo``      the Blocks; ``tabs/`` one module per tab.

The load and fault tester of the running app is a tool outside the app (``tools/stress``,
``hsd stress``).

``app.py`` is the entry point.
"""
