"""The tiny GGUF fixture: a random-weight llama model of ~190 KB that llama.cpp really runs.

Tests that need the llama.cpp path (load, tokenize, chat template, seeded
sampling) use ``write_tiny_gguf`` instead of the 100 MB demo model. These tests
pin down what the fixture promises.
"""

from __future__ import annotations

import pytest

gguf = pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

from fixtures.tiny_gguf import tokenizer, write_tiny_gguf  # noqa: E402

CHATML_TURN = "<|im_start|>system\nhello<|im_end|>\n"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def load(path):
    return llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1, seed=1, verbose=False)


@pytest.fixture(scope="module")
def llm(model_path):
    return load(model_path)


def field(reader, key):
    return reader.fields[key].contents()


# --- the file ------------------------------------------------------------------


def test_the_file_is_a_few_hundred_kilobytes_at_most(model_path):
    assert model_path.stat().st_size < 300_000


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_weights(tmp_path):
    first = write_tiny_gguf(tmp_path / "a.gguf", seed=0).read_bytes()
    again = write_tiny_gguf(tmp_path / "b.gguf", seed=0).read_bytes()
    other = write_tiny_gguf(tmp_path / "c.gguf", seed=1).read_bytes()
    assert first == again
    assert first != other


def test_gguf_reader_sees_a_llama_model_with_our_vocabulary(model_path):
    reader = gguf.GGUFReader(model_path)
    assert field(reader, "general.architecture") == "llama"
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == "smollm"
    assert field(reader, "tokenizer.ggml.tokens") == list(tokenizer.tokens)
    assert field(reader, "tokenizer.ggml.eos_token_id") == tokenizer.id_of("<|im_end|>")
    assert field(reader, "tokenizer.ggml.add_bos_token") is False


# --- llama.cpp loads it --------------------------------------------------------


def test_llama_cpp_loads_it_with_the_vocabulary_we_wrote(llm):
    assert llm.n_vocab() == tokenizer.n_vocab
    assert llm.token_eos() == tokenizer.id_of("<|im_end|>")
    assert llm.token_bos() == tokenizer.bos_id
    assert llm.metadata["llama.context_length"] == "512"
    assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]


# --- tokenizing ----------------------------------------------------------------


def test_chatml_markers_are_single_tokens_when_special_is_on(llm):
    ids = llm.tokenize(CHATML_TURN.encode(), add_bos=False, special=True)

    assert ids[0] == tokenizer.id_of("<|im_start|>")
    assert ids[-2] == tokenizer.id_of("<|im_end|>")
    assert ids[-1] == tokenizer.byte_id(ord("\n"))
    assert llm.detokenize(ids, special=True) == CHATML_TURN.encode()


def test_chatml_markers_are_plain_text_when_special_is_off(llm):
    ids = llm.tokenize(CHATML_TURN.encode(), add_bos=False, special=False)

    assert not set(ids) & set(tokenizer.special_ids.values())
    assert llm.detokenize(ids) == CHATML_TURN.encode()


def test_no_bos_is_added_even_when_asked_for(llm):
    # tokenizer.ggml.add_bos_token is false, as in the demo model.
    assert llm.tokenize(b"hi", add_bos=True) == llm.tokenize(b"hi", add_bos=False)


def test_merges_join_bytes_into_longer_tokens(llm):
    assert llm.tokenize(b"SELECT", add_bos=False) == [tokenizer.id_of("SELECT")]
    assert llm.tokenize(b" the", add_bos=False) == [tokenizer.id_of("Ġthe")]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT name FROM users WHERE id = 3;",
        "tabs\tand\nnew lines\r\n  and  spaces ",
        "non-ASCII: héllo, Größe, 東京, 🦆",
        "",
    ],
)
def test_any_text_survives_a_tokenize_detokenize_round_trip(llm, text):
    ids = llm.tokenize(text.encode(), add_bos=False)
    assert llm.detokenize(ids) == text.encode()


# --- generating ----------------------------------------------------------------


def complete(llm, prompt, seed):
    result = llm.create_completion(
        prompt, max_tokens=16, temperature=0.8, seed=seed, stop=["<|im_end|>"]
    )
    return result["choices"][0]["text"]


def test_seeded_generation_returns_text_and_repeats_exactly(llm, model_path):
    prompt = CHATML_TURN + "<|im_start|>assistant\n"

    text = complete(llm, prompt, seed=3)

    assert isinstance(text, str)
    assert complete(llm, prompt, seed=3) == text
    assert complete(load(model_path), prompt, seed=3) == text


def test_the_chat_template_drives_chat_completion(llm):
    result = llm.create_chat_completion(
        messages=[{"role": "user", "content": "hi"}], max_tokens=4, seed=3
    )
    assert result["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(result["choices"][0]["message"]["content"], str)
