"""The app's load and fault tester (``hsd stress``, ``python -m tools.stress``): a tool that drives
a running ``app.py`` over HTTP, never part of the app.

- ``server``  start ``app.py`` on a free loopback port and wait for it (``AppServer``), process figures;
- ``client``  requests through gradio_client or the REST API, classified (``Outcome``, ``Tally``);
- ``cases``   what the fixed matrix sends (normal requests, the bad-input matrix, throwaway models);
- ``checks``  the fixed matrix's checks and ``run_stress``;
- ``report``  the fixed matrix's table and counts;
- ``fuzz``, ``soak``, ``faults``  the other modes;
- ``cli``     the command line.

It imports ``hsd`` for its errors and the tiny-model builders, never ``ui``, ``visual`` or the app.
"""
