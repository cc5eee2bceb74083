"""Many decodes at once over the same shared models: no cross-talk, and memory stays flat."""
import gc
import threading


from hsd.engine import Hierarchy
from hsd.family.tiny import tiny_family


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def test_concurrent_decodes_equal_the_same_requests_run_alone():
    models, tok = tiny_family(3, scale=3.0)
    h = Hierarchy(models, tokenizer=tok, buffers=(2, 3), rules="hsd")
    requests = [("def f(x):", s) for s in range(8)]
    alone = {seed: h.generate(p, max_new_tokens=24, seed=seed, stop_at_eos=False).token_ids
             for p, seed in requests}
    together, errors = {}, []

    def work(prompt, seed):
        try:
            together[seed] = h.generate(prompt, max_new_tokens=24, seed=seed, stop_at_eos=False).token_ids
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=r) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert together == alone
    assert len({tuple(v) for v in alone.values()}) > 1        # different seeds, different texts


def test_fifty_sequential_generations_keep_memory_flat():
    models, tok = tiny_family(3, scale=3.0)
    h = Hierarchy(models, tokenizer=tok, buffers=(3, 4), rules="block")
    h.generate("def f(x):", max_new_tokens=30, seed=0)
    gc.collect()
    level = _rss_mb()
    for seed in range(50):
        h.generate("def f(x):", max_new_tokens=30, seed=seed)
    gc.collect()
    assert _rss_mb() <= level * 1.10 + 5.0
