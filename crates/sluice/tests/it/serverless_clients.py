"""The two clients users call serverless endpoints with, unmodified, against a Sluice endpoint.

Run by crates/sluice/tests/it/serverless.rs with CHAT_URL, CHAT_KEY, EMB_URL, EMB_KEY in the
environment. Prints one JSON object: the usage each call reported, for the Rust side to compare
with the stored usage records, and the embeddings it got.
"""

import json
import os

from azure.ai.inference import ChatCompletionsClient, EmbeddingsClient
from azure.ai.inference.models import SystemMessage, UserMessage
from azure.core.credentials import AzureKeyCredential
from openai import OpenAI

chat_url, chat_key = os.environ["CHAT_URL"], os.environ["CHAT_KEY"]
emb_url, emb_key = os.environ["EMB_URL"], os.environ["EMB_KEY"]
out = {"usage": []}


def record(usage):
    out["usage"].append({"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens})


# openai: chat, streamed chat, embeddings (the SDK asks for base64 embeddings by default).
oa = OpenAI(base_url=chat_url + "/v1", api_key=chat_key)
r = oa.chat.completions.create(
    model="SmolLM2-135M-Instruct",
    messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}],
    max_tokens=12,
    temperature=0,
    seed=7,
)
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant"
assert r.choices[0].finish_reason in ("stop", "length")
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
record(r.usage)
out["openai_text"] = r.choices[0].message.content

stream = oa.chat.completions.create(
    model="SmolLM2-135M-Instruct",
    messages=[{"role": "user", "content": "Count to five."}],
    max_tokens=10,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
pieces, usage, finish = [], None, None
for chunk in stream:
    assert chunk.object == "chat.completion.chunk", chunk
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        finish = c.finish_reason or finish
assert usage is not None and finish in ("stop", "length"), (usage, finish)
record(usage)
out["openai_stream_text"] = "".join(pieces)

oe = OpenAI(base_url=emb_url, api_key=emb_key)
e = oe.embeddings.create(model="all-MiniLM-L6-v2", input=["A man is eating food.", "A man is eating pasta."])
assert len(e.data) == 2 and len(e.data[0].embedding) == 384
out["openai_embeddings"] = [d.embedding for d in e.data]
out["embedding_usage"] = [e.usage.prompt_tokens]

# azure-ai-inference: the same, with its strict SSE parser and both auth headers.
cc = ChatCompletionsClient(endpoint=chat_url, credential=AzureKeyCredential(chat_key))
info = cc.get_model_info()
assert info.model_type in ("chat_completion", "chat-completion"), info
r = cc.complete(
    messages=[SystemMessage(content="You are terse."), UserMessage(content="Name a colour.")],
    max_tokens=12,
    temperature=0,
    seed=7,
)
assert r.choices[0].finish_reason in ("stop", "length")
record(r.usage)
out["azure_text"] = r.choices[0].message.content

pieces, usage = [], None
for update in cc.complete(messages=[UserMessage(content="Count to five.")], max_tokens=10, temperature=0, stream=True):
    if update.usage is not None:
        usage = update.usage
    for c in update.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
assert usage is not None
record(usage)
out["azure_stream_text"] = "".join(pieces)

ec = EmbeddingsClient(endpoint=emb_url, credential=AzureKeyCredential(emb_key))
e = ec.embed(input=["A man is eating food."])
assert len(e.data) == 1 and len(e.data[0].embedding) == 384
out["azure_embedding"] = e.data[0].embedding
out["embedding_usage"].append(e.usage.prompt_tokens)

# Errors map onto the SDKs' exceptions.
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError  # noqa: E402

try:
    ChatCompletionsClient(endpoint=chat_url, credential=AzureKeyCredential("wrong-key")).complete(
        messages=[UserMessage(content="hi")]
    )
    raise AssertionError("a wrong key was accepted")
except ClientAuthenticationError:
    pass
try:
    cc.complete(messages=[UserMessage(content="hi")], response_format="json_object")
    raise AssertionError("json_object was accepted")
except HttpResponseError as err:
    assert err.status_code == 422, err

print(json.dumps(out))
