"""Planning maths beside the engine, plain Python over plain data (no models):

- ``profile``     ``Profile``: forward cost by block length and pairwise acceptance (JSON);
- ``latency``     the expected-latency model of any hierarchy (our derivation) and its simulation;
- ``optimize``    the GSP optimiser (``optimal_hierarchy``) and plans for fixed hierarchies;
- ``contenders``  the ONE picker of hierarchies to run side by side (validate, bench, the app);
- ``exactness``   exact output distributions of every rule on tiny vocabularies (the lab).

Measuring a profile on real models is ``hsd.tools.measure``.  The engine core never imports this.
"""
