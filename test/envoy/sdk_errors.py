"""Drives the official openai and anthropic Python SDKs against keypool behind a real Envoy (test/envoy/sdk-errors.test.ts).

Input (argv[1], JSON): base URL, keys and which cases to run. Output (stdout, JSON): per case, the exception class the
SDK raised, the HTTP status, the message the SDK exposes, how many HTTP attempts it made and how long it took.
"""
import json
import sys
import time

import anthropic
import openai

try:  # recent SDK releases ship on httpx2; older ones on httpx
    import httpx2 as httpx
except ImportError:
    import httpx


def attempt_counter():
    calls = {"n": 0}

    def on_request(_request):
        calls["n"] += 1

    return calls, httpx.Client(event_hooks={"request": [on_request]})


def run(sdk, base, key, max_retries):
    calls, http_client = attempt_counter()
    started = time.monotonic()
    try:
        if sdk == "openai":
            client = openai.OpenAI(base_url=f"{base}/openai/v1", api_key=key, max_retries=max_retries, http_client=http_client)
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        else:
            client = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=key, max_retries=max_retries, http_client=http_client)
            client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
        return {"raised": None, "attempts": calls["n"]}
    except (openai.APIStatusError, anthropic.APIStatusError) as error:
        body = error.body if isinstance(error.body, dict) else {}
        inner = body.get("error", body) if isinstance(body, dict) else {}
        return {
            "raised": type(error).__name__,
            "status": error.status_code,
            "text": str(error),
            "body_message": inner.get("message") if isinstance(inner, dict) else None,
            "body_type": inner.get("type") if isinstance(inner, dict) else None,
            "retry_after": error.response.headers.get("retry-after"),
            "attempts": calls["n"],
            "elapsed_s": time.monotonic() - started,
        }


def main():
    args = json.loads(sys.argv[1])
    results = {}
    for case in args["cases"]:
        results[case["name"]] = run(case["sdk"], args["base"], case["key"], case.get("max_retries", 0))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
