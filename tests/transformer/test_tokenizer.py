"""The BPE tokenizer trained on the book's pages: deterministic, lossless, and BPE's first merge counted by hand."""

import collections
import itertools
import subprocess
import sys

import pytest
import torch
from tokenizers import pre_tokenizers

from infralens.transformer import (
    BOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    book_corpus,
    book_tokenizer,
    encode_batch,
    train_bpe,
)
from infralens.transformer.tokenizer import book_root


def test_vocabulary_layout():
    tok = book_tokenizer()
    assert tok.get_vocab_size() == 2048
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2]
    byte_symbols = pre_tokenizers.ByteLevel.alphabet()
    assert sorted(tok.token_to_id(s) for s in byte_symbols) == list(range(3, 259))  # the 256 bytes come next


def test_first_merge_is_the_most_frequent_pair_counted_by_hand():
    """Independent referent: count adjacent symbol pairs of the pre-tokenized corpus in plain Python."""
    texts = book_corpus()
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False)
    pairs = collections.Counter()
    for text in texts:
        for word, _ in pre.pre_tokenize_str(text):
            pairs.update(itertools.pairwise(word))
    (a, b), _ = pairs.most_common(1)[0]
    tok = book_tokenizer()
    assert tok.id_to_token(259) == a + b


def test_round_trip_on_every_page_and_on_unseen_bytes():
    tok = book_tokenizer()
    for text in [*book_corpus(), "Schrödinger's 🙂 snorfblat"]:
        enc = tok.encode(text)
        assert enc.ids[0] == BOS_ID
        assert tok.decode(enc.ids) == text


def test_compresses_the_corpus_and_splits_unseen_words():
    tok = book_tokenizer()
    text = "\n".join(book_corpus())
    assert len(tok.encode(text).ids) < len(text.encode()) / 2.5  # well over two bytes per token
    assert tok.encode(" attention").tokens == ["<s>", "Ġattention"]
    assert len(tok.encode(" snorfblat").tokens) > 3  # not in the corpus: pieces


def test_training_is_deterministic_across_processes():
    code = (
        "import hashlib; from infralens.transformer import book_tokenizer as b; "
        "print(hashlib.sha256(b().to_str().encode()).hexdigest())"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "RAYON_NUM_THREADS": seed, "PATH": "", "PYTHONPATH": ":".join(sys.path)},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def test_each_call_returns_a_fresh_tokenizer():
    a = book_tokenizer()
    a.enable_padding(length=50)
    assert len(book_tokenizer().encode("the").ids) == 2


@pytest.mark.parametrize("side", ["left", "right"])
def test_encode_batch_pads_with_the_pad_id(side):
    tok = book_tokenizer()
    texts = ["the noise schedule", "the"]
    ids, mask = encode_batch(tok, texts, padding_side=side)
    lengths = [len(tok.encode(t).ids) for t in texts]
    assert ids.shape == mask.shape == (2, max(lengths))
    assert mask.sum(1).tolist() == lengths
    assert torch.equal(ids == PAD_ID, mask == 0)
    short = mask[1].tolist()
    assert short == ([0] * (max(lengths) - lengths[1]) + [1] * lengths[1])[:: 1 if side == "left" else -1]
    assert tok.padding is None  # the caller's tokenizer is untouched


def test_errors():
    with pytest.raises(ValueError, match=r"vocab_size must exceed 259 \(3 special tokens and 256 bytes\).*got 259"):
        train_bpe(["a b"], vocab_size=259)
    with pytest.raises(ValueError, match=r"vocab_size must be >= 1, e.g. vocab_size=2048; got 0"):
        book_tokenizer(0)
    with pytest.raises(ValueError, match=r"padding_side must be 'left' or 'right'.*got 'top'"):
        encode_batch(book_tokenizer(), ["a"], padding_side="top")
    with pytest.raises(ValueError, match=r"texts must be a non-empty list of strings.*got 'abc'"):
        encode_batch(book_tokenizer(), "abc")
    with pytest.raises(FileNotFoundError, match=r"no InfraLens checkout above"):
        book_root(book_root().parent)


def test_a_missing_tokenizers_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install tokenizers"):
        train_bpe(["a b"], vocab_size=300)


def test_a_checkout_gives_its_diffusion_pages_as_they_are_now():
    root = book_root()
    pages = sorted(p for t in ("diffuser", "diffsynth") for p in (root / "docs/tracks" / t).rglob("*.md"))
    assert book_corpus(root) == [p.read_text() for p in pages]


def test_the_shipped_corpus_is_the_pages_at_its_commit():
    """The snapshot is what git holds for those pages at the commit it names (so it can be rebuilt)."""
    import gzip
    import json
    import shutil
    import subprocess

    from infralens.transformer.tokenizer import CORPUS_FILE

    snapshot = json.loads(gzip.decompress(CORPUS_FILE.read_bytes()))
    root = book_root()
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs the git history of a clone")
    for page in snapshot["pages"]:
        at_commit = subprocess.run(
            ["git", "show", f"{snapshot['commit']}:{page['path']}"], cwd=root, capture_output=True, check=True
        ).stdout.decode()
        assert at_commit == page["text"], page["path"]
    assert [p["path"] for p in snapshot["pages"]] == sorted(p["path"] for p in snapshot["pages"])
    assert book_corpus() == [p["text"] for p in snapshot["pages"]]
