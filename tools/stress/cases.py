"""What the fixed matrix sends: the normal requests, the bad-input matrix (``bad_cases``), the
longest request the app accepts, and the throwaway models some cases need (a family of tiny
random Llamas, a model with a tokenizer no family shares)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tools.stress.client import GenerateApi, token_list


NORMAL_PROMPTS = ["def parse_args(argv):\n", "class Stack:\n    def push(self, item):\n",
                  "import os\n\n\ndef main():\n", "    for i in range(n):\n"]
@dataclass
class BadCase:
    name: str
    values: dict                        # GenerateApi.args keyword arguments
    words: tuple[str, ...]              # the error must mention one of these (case-insensitive)
    via: str = "client"                 # "client" (gradio_client), "rest" (plain REST API: values
                                        # gradio_client cannot encode), "raw" (a raw request body)
    raw_body: bytes | None = None
    sentence: bool = True               # the answer must be one sentence for a person


RANGE = ("minimum value", "maximum value")   # gradio's own slider bounds: "Value 0 is less than minimum value 1."
def family_folders(spec: str) -> list[str]:
    """The family's model folders (for the same-model-twice and incompatible-family cases): the
    spec itself when it lists folders, else what ``hsd.models`` resolves a family name to."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if parts and all(os.path.isabs(p) for p in parts):
        return parts
    try:
        from hsd.models import resolve_spec

        return [p for p in resolve_spec(spec) if os.path.isabs(p)]
    except Exception:
        return []


def bad_cases(api: GenerateApi, scratch: Path | None = None) -> list[BadCase]:
    """The issue's matrix.  Family-level cases accept either the load error or the app's refusal
    to load other models (a Space without HSD_ALLOW_CUSTOM_MODELS)."""
    names = api.names
    refused = "can be used here"
    first = names[0] if names else "x"
    stack = [first]
    fam_paths = family_folders(str(api.family))
    same_twice = ",".join([fam_paths[0]] * 2) if len(fam_paths) > 1 and os.path.isabs(fam_paths[0]) else None
    cases = [
        BadCase("empty prompt", {"prompt": ""}, ("empty",)),
        BadCase("whitespace-only prompt", {"prompt": "  \n\t  "}, ("empty",)),
        BadCase("100k-character prompt", {"prompt": "x" * 100_000}, ("at most",)),
        BadCase("prompt longer than the models' context", {"prompt": "x = 1\n" * 600}, ("at most", "tokens")),
        BadCase("control characters in the prompt", {"prompt": "def f():\x00\x07\x1b"}, ("control character",)),
        BadCase("lone surrogate in the prompt (REST: gradio_client cannot encode it)", {"prompt": "def f(\ud800):"},
                ("surrogate", "unicode"), via="rest"),
        BadCase("bytes that are not UTF-8 (raw request body)", {}, ("json", "utf", "decode", "parsing"), via="raw",
                raw_body=b'{"data": ["def f(\xff\xfe):"]}', sentence=False),
        BadCase("max new tokens 0", {"max_new_tokens": 0}, ("max new tokens",) + RANGE),
        BadCase("max new tokens negative", {"max_new_tokens": -5}, ("max new tokens",) + RANGE),
        BadCase("max new tokens huge", {"max_new_tokens": 10**9}, ("max new tokens",) + RANGE),
        BadCase("temperature negative", {"temperature": -1.0}, ("temperature",) + RANGE),
        BadCase("temperature NaN (REST: gradio_client refuses NaN)", {"temperature": float("nan")},
                ("temperature",), via="rest"),
        BadCase("temperature null (what a JavaScript client sends for NaN)", {"temperature": None},
                ("temperature",), via="rest"),
        BadCase("top-p 0", {"top_p": 0.0}, ("top-p",) + RANGE),
        BadCase("top-p 1.5", {"top_p": 1.5}, ("top-p",) + RANGE),
        BadCase("buffers empty (null)", {"stack": stack, "buffers": [None] * 8}, ("buffer",)),
        BadCase("buffer zero", {"stack": stack, "buffers": [0] * 8}, ("buffer",) + RANGE),
        BadCase("buffer 10^6", {"stack": stack, "buffers": [10**6] * 8}, ("buffer",) + RANGE),
        BadCase("more levels than models", {"stack": list(names) + ["no-such-model-1", "no-such-model-2"]},
                ("not a model of this family", "at most", "not in the list of choices")),
        BadCase("unknown rule", {"stack": stack, "rules": ["no-such-rule"] * 8}, ("unknown verification rule",)),
        BadCase("hub id while offline", {"family": "Qwen/Qwen2.5-0.5B", "stack": []}, ("offline", refused)),
        BadCase("local path outside the allowed folders", {"family": "/etc", "stack": []},
                ("config.json", "model folder", refused)),
        BadCase("a file as a model folder", {"family": "/etc/hostname", "stack": []},
                ("not a model folder", "no model folder", "could not be found", refused)),
    ]
    cases += [   # beyond the list: other values a script (or a JavaScript client) may send
        BadCase("stack null", {"stack": None}, ("stack", "model")),
        BadCase("seed as text", {"seed": "abc"}, ("seed",)),
    ]
    if same_twice:
        cases.append(BadCase("the same model twice (family spec)", {"family": same_twice, "stack": []},
                             ("distinct", refused)))
    if scratch is not None and fam_paths and os.path.isabs(fam_paths[-1]):
        odd = make_odd_model(scratch / "odd-tokenizer")
        cases.append(BadCase("an incompatible family (other tokenizer)",
                             {"family": f"{odd},{fam_paths[-1]}", "stack": []}, ("tokenizer", refused)))
    return cases


def normal_args(api: GenerateApi, new_tokens: int, seed: int = 0, prompt: str | None = None) -> list:
    return api.args(prompt=prompt or NORMAL_PROMPTS[seed % len(NORMAL_PROMPTS)], seed=seed,
                    max_new_tokens=new_tokens)


def make_odd_model(folder: Path) -> str:
    """A tiny random Llama with its own 5-character tokenizer: shares no vocabulary with any real
    family (the 'incompatible family' case).  Safetensors, saved once."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return str(folder)
    from hsd.family.tiny import tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer(list("abcd"))
    model = tiny_llama(7, vocab_size=len(tok), layers=2, max_positions=512)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def make_tiny_family(folder: Path) -> str:
    """``--family tiny``: three tiny random Llamas sharing a character tokenizer (code-like
    alphabet), saved as safetensors folders; the spec."""
    from hsd.family.tiny import WIDE_ALPHABET, save_tiny_family

    return save_tiny_family(folder, scale=8.0, alphabet=WIDE_ALPHABET, max_positions=512)


def long_args(api: GenerateApi, seed: int, n: int) -> list:
    return api.args(prompt=NORMAL_PROMPTS[0], seed=seed, max_new_tokens=n, buffers=[1] * 8)


def long_request(client, api: GenerateApi, seed: int, n: int | None = None):
    """Start the longest request the app accepts (the slider's maximum, halved while the app
    refuses it, e.g. when prompt + tokens exceed the model's context) and wait for its first
    streamed update: (job, max new tokens asked, tokens already streamed)."""
    n = n or api.maximum("max_new_tokens", 256)
    while True:
        job = client.submit(*long_args(api, seed, n), api_name=GenerateApi.ENDPOINT)
        deadline = time.monotonic() + 300
        while not job.outputs() and not job.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        if job.outputs() or n <= 8:
            return job, n, len(token_list(job.outputs()[-1])) if job.outputs() else 0
        n //= 2
