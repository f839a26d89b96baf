"""Single-stream decode speed of a GGUF file in llama.cpp (``llama-cpp-python``), for inference_bench.py.

Runs in a virtual environment of its own that holds llama-cpp-python (it compiles llama.cpp at install time,
so it is not one of the project's requirements); needs nothing else (standard library + llama_cpp):

    python3.11 -m venv /work/llamavenv
    nice -n 19 /work/llamavenv/bin/pip install llama-cpp-python==0.3.36     # builds llama.cpp (long on 2 cores)
    /work/llamavenv/bin/python benchmarks/llamacpp_decode.py FILE.gguf '[1, 2, 3]' 64 3 2

Arguments: the GGUF file, the prompt's token ids (JSON, as the transformers tokenizer renders the chat, so the
same prompt as the other rows), new tokens, repeats, threads. Prints one JSON line: the median time to first
token (prompt evaluated, first token picked) and the median decode tokens/s after it (greedy, end of sequence
ignored so every run decodes the same number of tokens), and tokens per CPU-second of this process.
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def main() -> int:
    from llama_cpp import Llama

    path, ids_json, max_new, repeats, threads = sys.argv[1:6]
    prompt = json.loads(ids_json)
    max_new, repeats, threads = int(max_new), int(repeats), int(threads)
    llm = Llama(model_path=path, n_ctx=max(512, len(prompt) + max_new + 8), n_threads=threads,
                n_threads_batch=threads, n_batch=512, verbose=False)

    def run(n: int) -> tuple[float, float, int]:
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        token = llm.sample(temp=0.0)
        first = time.perf_counter()
        made = 1
        while made < n:
            llm.eval([token])
            token = llm.sample(temp=0.0)
            made += 1
        end = time.perf_counter()
        return first - t0, (made - 1) / (end - first) if made > 1 else 0.0, made

    run(4)  # warm-up
    c0 = time.process_time()
    runs = [run(max_new) for _ in range(repeats)]
    cpu = time.process_time() - c0
    print(json.dumps({"ttft": statistics.median(r[0] for r in runs), "decode": statistics.median(r[1] for r in runs),
                      "tokens": runs[0][2], "per_cpu": sum(r[2] for r in runs) / cpu if cpu else 0.0,
                      "llama_cpp": __import__("llama_cpp").__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
