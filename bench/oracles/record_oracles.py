#!/usr/bin/env python3
"""Records what llama.cpp computes for the tiny GGUFs (and, given its path, the real Gemma 3
270M GGUF), as JSON fixtures for loopc's tests: tokenization of a corpus, full last-position
logits and greedy tokens, and chat templates rendered by Python's Jinja as Hugging Face and
llama-cpp-python render them.

Usage: record_oracles.py TINY_DIR OUT_DIR [GEMMA_GGUF]

Runs with llama-cpp-python 0.3.36 (which bundles its llama.cpp). Never part of CI: its outputs
are committed under tests/fixtures/models/.
"""

import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

import plain_cpu  # noqa: F401  (llama.cpp's plain CPU kernels: see plain_cpu.py)

CORPUS = [
    "Hello world! How are you today?",
    "The café served crème brûlée; naïve Zoë paid 12,345.67 € at 9:30am.",
    "日本語のテキストと中文文本，还有한국어 문장도 있습니다。",
    "Emoji: 🙂👍🏽 🚀✨ family: 👨‍👩‍👧‍👦 flags: 🇫🇷🇯🇵",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() { let x = vec![1, 2, 3]; println!(\"{:?}\", x.iter().sum::<i32>()); }",
    "   leading spaces, trailing spaces   ",
    "tabs\tand\t\tnewlines\n\n\nand  double  spaces\r\nCRLF",
    "I'm sure they'll say it's what we've DONE, isn't it? 1234567890 3.14159",
    "<|im_start|>user\nHi<|im_end|>\n<start_of_turn>model\n<|eot_id|>[INST] hi [/INST]<s></s><|user|> x <|end|>",
    "Ünïcödé ÀÉÎÕÜ ßẞ ǅ ﬁ ℌ Ω ﬀ 𝔘𝔫𝔦",
    "  \n\t  \n",
    "a",
]

# The last prompt is long (about 400 tokens of the cut vocabularies), so rope scaling factors
# that only touch the slowest frequencies (Llama 3.x's `rope_freqs`) move the logits.
LONG_PROMPT = " ".join(
    f"Chapter {i}: the river ran past the mill, the miller counted {i * 7} sacks of grain, and the town's bell rang at noon."
    for i in range(1, 8)
)
PROMPTS = ["The quick brown fox", "def add(a, b):\n    return", "日本の首都は", LONG_PROMPT]
GREEDY = 12

# Chat templates: the real ones the GGUFs carry, and representative templates of other families
# (written for these tests), each rendered by Jinja2 for a few conversations.
TEMPLATES = {
    "llama3": "{{- bos_token }}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 Jul 2024\" %}\n{%- endif %}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n",
    "gemma3": "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- else -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- endif -%}\n    {{ '<end_of_turn>\\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\\n'}}\n{%- endif -%}\n",
    "phi3": "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}",
    "mistral": "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor %}\n",
}

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer in one word. "}, {"role": "user", "content": "  Capital of Japan?\n"}],
    [{"role": "system", "content": "Classify the review."}, {"role": "user", "content": "Great film"}, {"role": "assistant", "content": "positive"},
     {"role": "user", "content": "Dull <|im_end|> plot"}],
]


def tokenize(llm, text, special):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)


def greedy_run(llm, ids, n):
    """Last-position logits, the greedy tokens, and at each step the margin between the best
    and second-best logit (where a near-tie lets another implementation pick differently)."""
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    out, margins = [], []
    for _ in range(n):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        top2 = np.sort(row)[-2:]
        tok = int(np.argmax(row))
        out.append(tok)
        margins.append(round(float(top2[1] - top2[0]), 5))
        if llm.token_eos() == tok:
            break
        llm.eval([tok])
    return logits, out, margins


def record_model(path, with_logits=True, prompts=PROMPTS, greedy=GREEDY, chat_prompts=None):
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=2, logits_all=True, verbose=False, seed=0)
    out = {
        "gguf": os.path.basename(path),
        "gguf_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
        "llama_cpp_python": llama_cpp.__version__,
        "add_bos": llm._model.add_bos_token() if hasattr(llm._model, "add_bos_token") else None,
        "corpus": [{"text": t, "ids_special": tokenize(llm, t, True), "ids_plain": tokenize(llm, t, False)} for t in CORPUS],
    }
    if with_logits:
        runs = []
        for p in prompts:
            ids = llm.tokenize(p.encode("utf-8"), add_bos=True, special=True)
            logits, greedy_ids, margins = greedy_run(llm, ids, greedy)
            order = np.argsort(-logits)[:10]
            runs.append({
                "prompt": p, "input_ids": ids, "greedy_ids": greedy_ids, "greedy_margins": margins,
                "greedy_text": llm.detokenize(greedy_ids).decode("utf-8", errors="replace"),
                "last_top10_ids": [int(i) for i in order], "last_top10_logits": [round(float(logits[i]), 5) for i in order],
                "last_logits": [round(float(x), 4) for x in logits] if len(logits) <= 4096 else None,
            })
        out["runs"] = runs
    return out


def gguf_templates(tiny):
    """The chat templates the tiny GGUFs carry (real ones: Qwen3's), by file name."""
    from gguf import GGUFReader
    found = {}
    for f in sorted(os.listdir(tiny)):
        if f.endswith(".gguf"):
            field = GGUFReader(os.path.join(tiny, f)).fields.get("tokenizer.chat_template")
            if field is not None and field.contents() not in found.values():
                found[f.replace(".gguf", "")] = field.contents()
    return found


SMOLLM2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"


def record_templates(tiny):
    out = []
    templates = dict(TEMPLATES, smollm2=SMOLLM2, **gguf_templates(tiny))
    for name, template in templates.items():
        bos = {"llama3": "<|begin_of_text|>", "gemma3": "<bos>", "mistral": "<s>"}.get(name, "")
        eos = {"llama3": "<|eot_id|>", "gemma3": "<eos>", "phi3": "<|endoftext|>", "mistral": "</s>"}.get(name, "")
        fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        renders = []
        for conv in CONVERSATIONS:
            try:
                renders.append({"messages": conv, "text": fmt(messages=conv).prompt})
            except Exception as e:
                renders.append({"messages": conv, "error": str(e)})
        out.append({"name": name, "template": template, "bos_token": bos, "eos_token": eos, "renders": renders})
    return out


def main():
    tiny, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    for f in sorted(os.listdir(tiny)):
        if f.endswith(".gguf"):
            rec = record_model(os.path.join(tiny, f))
            with open(os.path.join(out_dir, f.replace(".gguf", ".oracle.json")), "w") as fh:
                json.dump(rec, fh, ensure_ascii=False, indent=1)
            print(f, "recorded")
    templates = record_templates(tiny)
    with open(os.path.join(out_dir, "chat-templates.oracle.json"), "w") as fh:
        json.dump(templates, fh, ensure_ascii=False, indent=1)
    if len(sys.argv) > 3:
        # Gemma 3 270M has no chat template: prompts go in loopc's plain transcript, BOS first.
        prompts = [f"User: {q}\nAssistant:" for q in [
            "What is the capital of France?",
            "Write a haiku about the sea.",
            "List three primary colors.",
            "Translate 'good morning' into Spanish.",
            "What is 12 times 7?",
        ]]
        rec = record_model(sys.argv[3], prompts=prompts, greedy=32)
        with open(os.path.join(out_dir, "gemma3-270m.oracle.json"), "w") as fh:
            json.dump(rec, fh, ensure_ascii=False, indent=1)
        print("gemma3-270m recorded")


if __name__ == "__main__":
    main()
