import json, sys, time
import llama_cpp
m = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=8192, verbose=False)
max_tokens = int(sys.argv[2])
prompts = json.loads(sys.argv[3])
def once(p):
    t0 = time.perf_counter()
    first = last = None
    k = 0
    for ch in m.create_chat_completion(messages=[{"role": "user", "content": p}],
                                       max_tokens=max_tokens, temperature=0.0,
                                       repeat_penalty=1.1, stream=True):
        if ch["choices"][0]["delta"].get("content") is not None:
            now = time.perf_counter()
            k += 1
            first = first or now
            last = now
    end = time.perf_counter()
    first = first or end
    last = last or end
    return {"tokens": k, "ttft_s": first - t0, "decode_s": last - first, "total_s": end - t0}
once(prompts[0])
print(json.dumps([once(p) for p in prompts[1:]]))
