"""HSD Explorer: a Gradio app around a real hierarchical speculative decoding engine.

    python app.py            # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT respected)

Tabs: Generate, Compare, Learn, Optimise (``ui/tabs``); API endpoints ``/generate`` (streams),
``/compare``, ``/optimize``.  Settings come from environment variables (``ui.settings``).
"""
import os
import sys
import threading

from ui.settings import offline_defaults

offline_defaults()                       # before gradio is imported: nothing reaches the internet

from ui.demo import build_demo, launch_options  # noqa: E402
from ui.registry import Families  # noqa: E402
from ui.settings import Limits, default_torch_threads, preload_wanted, switch_interval_s  # noqa: E402


def main() -> None:
    import torch

    limits = Limits.from_env()
    sys.setswitchinterval(switch_interval_s())        # the decode thread must not wait behind the server's
    torch.set_num_threads(limits.torch_threads or default_torch_threads())   # one core left to the server
    families = Families(limits)
    demo = build_demo(limits, families)
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=4)
    if preload_wanted():                              # the server is up at once, the first click is fast
        threading.Thread(target=families.preload, daemon=True, name="hsd-preload").start()
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), **launch_options())


if __name__ == "__main__":
    main()
