"""Test-wide settings: offline, no analytics, one torch thread (tests are many small ops; two
threads only contend), a session-wide artifacts folder for screenshots, and a session-wide
folder for the GGUF files the llama.cpp tests export."""
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _own_gguf_cache(tmp_path_factory):
    """GGUF twins the tests export (``forward="llamacpp"``) go to the session's temporary folder,
    not the user's ~/.cache/hsd."""
    before = os.environ.get("HSD_CACHE_DIR")
    os.environ["HSD_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "hsd-cache")
    yield
    if before is None:
        os.environ.pop("HSD_CACHE_DIR", None)
    else:
        os.environ["HSD_CACHE_DIR"] = before
